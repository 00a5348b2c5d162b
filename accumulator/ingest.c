/*
 * The ROUTER socket pollers talk to, and the group commit. Two threads:
 * the loop's (this socket, normalising each body as it arrives, acks and
 * notices) and the store's (every statement, one transaction at a time).
 * A message goes, in arrival order, loop -> todo -> store -> done -> loop.
 * When the store is idle a lone body is applied at once; while it
 * commits, bodies queue in todo, and the next batch takes all of them
 * (up to batch_max and batch_bytes): batches are sized by what arrived,
 * never by a timer, and the loop's parsing overlaps Postgres's work.
 * Acks go back after COMMIT, then the notices (DESIGN.md contracts 1-3:
 * one writer, positions in commit order, notices after COMMIT; a lone
 * body's notices go before its ack, done_cb), except a body's typing,
 * which goes out as soon as it is parsed (contract 3's exception for
 * typing, notify_typing_early).
 * PROTO_POLL_STATE goes through the store in order, between batches.
 * An initial sync of more than SYNCV3_ACC_WINDOW_ROOMS rooms is preceded
 * by a window item, alone in its transaction like a poll state, that
 * commits its most recently active rooms first (docs/DESIGN.md, "The
 * first window first"); the sync item then stores the rest with the since.
 * Such a body gets only a light pass on arrival (normalise_light); the
 * store's thread normalises the window's rooms, then the whole body for
 * the rest once the window is handed back (fill_prepare).
 */
#include <sys/queue.h>

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <zmq.h>

#include "accumulator.h"
#include "mem.h"
#include "util.h"
#include "zmq_ev.h"

/* Ack latency histogram: 1 ms buckets below LAT_FINE ms, then 10 ms
 * buckets up to LAT_MAX_MS; later acks fall into the last one. */
#define LAT_FINE 1000
#define LAT_MAX_MS 10000
#define LAT_NBUCKETS (LAT_FINE + (LAT_MAX_MS - LAT_FINE) / 10 + 1)

/* pub_run's turn: this long at most, the clock read every PUB_CHECK */
#define PUB_SLICE_US 5000
#define PUB_CHECK 64

#define LAG_TICK_MS 50
#define LAG_LOG_MS 100 /* stalls logged at debug */

enum item_kind {
	ITEM_SYNC,
	ITEM_POLL,
	ITEM_WINDOW, /* the first rooms of the ITEM_SYNC after it */
};

struct item {
	TAILQ_ENTRY(item) entry;
	enum item_kind kind;
	struct proto_msg msg;
	const void *route;
	size_t route_len;
	struct store_msg sm;        /* ITEM_SYNC */
	struct acc_changes ch;      /* its body, normalised on arrival */
	struct proto_poll_state ps; /* ITEM_POLL */
	struct item *fill;          /* ITEM_WINDOW: the item it hurries */
	struct acc_changes rest;    /* ITEM_SYNC with sm.is_fill: a view */
	struct acc_changes light;   /* ITEM_WINDOW: normalise_light's */
	bool is_deferred; /* ITEM_SYNC: normalised when taken (fill_prepare) */
	bool is_published; /* a lone body's notices went before its ack */
	bool *win_out;    /* its window left room i of light to it */
	size_t win_n;     /* light's rooms */
	long long recv_ms;
	size_t body_len; /* counted in ingest.inflight_bytes */
	/* set by the store's thread */
	bool is_committed;
	int64_t pos;
	int64_t lsn; /* WAL position after its commit */
};
TAILQ_HEAD(item_q, item);

struct ingest {
	struct event_base *base;
	void *sock;
	struct zmq_ev *ze;
	struct event *ev_done, *ev_cleanup, *ev_stats;
	const struct acc_config *cfg;
	struct store *st; /* the store thread's only */
	struct notify *nt;
	bool stopping;
	bool is_demote_told;
	void (*on_demote)(void *);
	void *demote_arg;
	uint64_t seq;
	size_t ninflight; /* handed to the store, not yet back */
	size_t inflight_bytes; /* their bodies */
	unsigned long long bad_msgs, acked, nacked;
	long long lat_max_ms, lat_sum_ms;
	unsigned long long lat_n;
	unsigned *lat_hist; /* LAT_NBUCKETS, since the last stats */
	/* the metrics' (ingest_counts): bodies answered, what committed */
	unsigned long long applied, replayed, rejected, events, to_device;
	unsigned long long state_rows;
	/* committed, acked, their notices not all out yet (pub_run) */
	struct item_q pub;
	size_t pub_next; /* the head's next notice */
	struct event *ev_pub;
	unsigned long long pub_slices, frees_detached;
	/* how late lag_cb's tick runs: the loop held by one step that long */
	struct event *ev_lag;
	long long lag_last_us, lag_max_ms;

	pthread_t worker;
	int wake[2];        /* store -> loop: done has items */
	pthread_mutex_t mu; /* guards the fields below */
	pthread_cond_t cv;  /* todo, cleanup or quit changed */
	struct item_q todo, done;
	bool is_quitting, is_cleanup_due;
	bool is_demoted;          /* the store is no longer the writer */
	struct store_stats stats; /* the store's, after its last batch */
	struct metric_hist batch_size, commit_secs; /* of every batch */
	/* since the last stats line: what sizes the batches took and how
	 * long their commits were, beside the ack latency they cause */
	unsigned long long iv_batches, iv_bodies;
	long long iv_commit_ms, iv_commit_max_ms, iv_durable_us;
	size_t iv_batch_max;
};

/* Batches hold at most SYNCV3_ACC_BATCH_MAX (default 64) messages. */
const double ingest_batch_le[] = {1, 2, 4, 8, 16, 32, 64, 128, 256, 1024};
const size_t ingest_batch_nle =
    sizeof(ingest_batch_le) / sizeof(ingest_batch_le[0]);
const double ingest_commit_le[] = {0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1,
                                   0.25,  0.5,    1,     2.5,  5,     10};
const size_t ingest_commit_nle =
    sizeof(ingest_commit_le) / sizeof(ingest_commit_le[0]);

static void queue_hold(struct ingest *in);

static void
item_free(struct item *it)
{
	if (it->kind == ITEM_WINDOW) {
		store_view_free(&it->ch); /* picked from light */
		normalise_free(&it->light);
	} else if (it->sm.pre != NULL)
		normalise_free(&it->ch);
	store_view_free(&it->rest);
	free(it->win_out);
	store_msg_reset(&it->sm);
	proto_msg_close(&it->msg);
	free(it);
}

static void
item_free_cb(void *arg)
{
	item_free(arg);
}

static void
lat_add(struct ingest *in, long long lat)
{
	size_t b;

	if (lat < 0)
		lat = 0;
	b = lat < LAT_FINE ? (size_t)lat
	                   : LAT_FINE + (size_t)(lat - LAT_FINE) / 10;
	in->lat_hist[b < LAT_NBUCKETS ? b : LAT_NBUCKETS - 1]++;
	in->lat_sum_ms += lat;
	in->lat_n++;
	if (lat > in->lat_max_ms)
		in->lat_max_ms = lat;
}

static void
send_ack(struct ingest *in, struct item *it)
{
	struct proto_sync_ack a = {
	    it->sm.user_id ? it->sm.user_id : "",
	    it->sm.device_id ? it->sm.device_id : "", it->sm.ok,
	    it->sm.since ? it->sm.since : "",
	    it->sm.ok ? "" : (it->sm.error ? it->sm.error : "error")};

	if (proto_send_sync_ack(in->sock, it->route, it->route_len, ++in->seq,
	                        &a) != PROTO_OK)
		log_warnx_rl("ingest: ack to %s/%s lost: %s", a.user_id,
		             a.device_id, zmq_strerror(errno));
	if (it->sm.ok)
		in->acked++;
	else {
		in->nacked++;
		log_debug("ingest: nack %s/%s: %s (since \"%s\")", a.user_id,
		          a.device_id, a.error, a.since);
	}
	lat_add(in, now_ms() - it->recv_ms);
}

/* --- the store's thread ----------------------------------------------- */

/*
 * Moves the head of todo into b: everything queued, in arrival order,
 * up to batch_max messages or batch_bytes of bodies; a poll state at the
 * head goes alone, one later on ends the batch. Called with mu held.
 */
static enum item_kind
batch_take(struct ingest *in, struct item_q *b)
{
	struct item *it;
	size_t n = 0, bytes = 0;

	while ((it = TAILQ_FIRST(&in->todo)) != NULL) {
		if (n > 0 &&
		    (it->kind != ITEM_SYNC || n >= (size_t)in->cfg->batch_max ||
		     bytes >= (size_t)in->cfg->batch_bytes))
			break;
		TAILQ_REMOVE(&in->todo, it, entry);
		TAILQ_INSERT_TAIL(b, it, entry);
		if (it->kind != ITEM_SYNC)
			return it->kind;
		n++;
		bytes += it->sm.body_len;
	}
	return ITEM_SYNC;
}

/* A flag the mutex guards (is_quitting, is_demoted), read under it. */
static bool
locked_flag(struct ingest *in, const bool *flag)
{
	bool q;

	pthread_mutex_lock(&in->mu);
	q = *flag;
	pthread_mutex_unlock(&in->mu);
	return q;
}

static bool
worker_quitting(struct ingest *in)
{
	return locked_flag(in, &in->is_quitting);
}

/*
 * One batch in one transaction; the store assembles it (a device's
 * second message in it waits there for the first, see store_apply) and
 * writes each outcome into the items. A failed commit leaves every item
 * uncommitted, which the loop turns into nacks.
 */
static void
worker_batch(struct ingest *in, struct item_q *b)
{
	struct item *it;
	bool committed;
	long long t0 = now_ms(), ms, us0 = store_stats(in->st)->commit_us;
	size_t n = 0;

	while (store_batch_begin(in->st) == -1) {
		if (store_is_demoted(in->st) || worker_quitting(in))
			return;
		log_warnx("ingest: cannot start a batch; retrying in 1s");
		nanosleep(&(struct timespec){1, 0}, NULL);
	}
	TAILQ_FOREACH(it, b, entry)
		store_apply(in->st, &it->sm);
	committed = store_batch_commit(in->st) == 0;
	TAILQ_FOREACH(it, b, entry) {
		it->is_committed = committed;
		it->pos = store_pos(in->st);
		it->lsn = store_lsn(in->st);
		n++;
	}
	ms = now_ms() - t0;
	/* read by the loop's ingest_counts and stats_cb, hence the lock */
	pthread_mutex_lock(&in->mu);
	metric_hist_observe(&in->batch_size, ingest_batch_le, ingest_batch_nle,
	                    (double)n);
	metric_hist_observe(&in->commit_secs, ingest_commit_le,
	                    ingest_commit_nle, (double)ms / 1000.0);
	in->iv_batches++;
	in->iv_bodies += n;
	in->iv_commit_ms += ms;
	in->iv_durable_us += store_stats(in->st)->commit_us - us0;
	if (ms > in->iv_commit_max_ms)
		in->iv_commit_max_ms = ms;
	if (n > in->iv_batch_max)
		in->iv_batch_max = n;
	pthread_mutex_unlock(&in->mu);
	log_debug("ingest: batch %s at position %" PRId64,
	          committed ? "committed" : "failed", store_pos(in->st));
}

/*
 * A window: chosen from the light pass, its rooms normalised in full and
 * committed in a transaction of their own, and its fill told which rooms
 * are left to it (under mu: the fill is still queued). If it cannot be
 * done, the fill stores everything as it would have.
 */
static void
worker_window(struct ingest *in, struct item *it)
{
	struct item *f = it->fill;
	struct acc_changes rest;
	bool *out;
	size_t j = 0;

	it->is_committed = store_window(in->st, &it->sm, &it->light, &it->ch,
	                                &rest, (size_t)in->cfg->window_rooms);
	it->pos = store_pos(in->st);
	if (!it->is_committed)
		return;
	/* rest is light's rooms in order, minus the window's */
	out = xcalloc(it->light.nrooms + 1, sizeof(*out));
	for (size_t i = 0; i < it->light.nrooms && j < rest.nrooms; i++)
		if (rest.rooms[j].room_id == it->light.rooms[i].room_id) {
			out[i] = true;
			j++;
		}
	pthread_mutex_lock(&in->mu);
	f->win_out = out;
	f->win_n = it->light.nrooms;
	f->sm.is_fill = true;
	pthread_mutex_unlock(&in->mu);
	log_debug("ingest: %s/%s: %zu rooms first, %zu behind, %lld ms after "
	          "arrival",
	          it->sm.user_id, it->sm.device_id, it->ch.nrooms, rest.nrooms,
	          now_ms() - it->recv_ms);
	store_view_free(&rest);
}

/*
 * The fill of a window, normalised here rather than on arrival: the
 * window's notice then goes out while this thread parses the rest,
 * instead of waiting behind the loop's parse of the whole body. Its
 * rooms are light's in the same order (the same walk of the same body),
 * so the window's choice applies by index; a body whose count differs,
 * or whose window did not commit, is stored whole (contract 6).
 */
static void
fill_prepare(struct item *it)
{
	struct acc_changes *c = &it->ch, *r = &it->rest;
	long long t0 = now_ms();

	it->is_deferred = false;
	it->sm.pre_rc = normalise(it->sm.body, it->sm.body_len, it->sm.user_id,
	                          c, &it->sm.pre_err);
	it->sm.pre = c;
	log_debug("ingest: %s/%s: fill of %zu bytes normalised in %lld ms",
	          it->sm.user_id, it->sm.device_id, it->sm.body_len,
	          now_ms() - t0);
	if (it->sm.pre_rc != 0 || it->win_out == NULL || c->nrooms != it->win_n)
		return;
	*r = *c;
	r->rooms = xcalloc(c->nrooms + 1, sizeof(*r->rooms));
	r->nrooms = 0;
	for (size_t i = 0; i < c->nrooms; i++)
		if (it->win_out[i])
			r->rooms[r->nrooms++] = c->rooms[i];
	r->caprooms = r->nrooms;
	it->sm.pre = r;
}

static void
worker_poll(struct ingest *in, struct item *it)
{
	/* 1: recorded; 0: about a token the device no longer has */
	it->is_committed = store_poll_state(in->st, &it->ps) == 1;
	it->pos = store_pos(in->st);
	it->lsn = store_lsn(in->st);
}

static void *
worker_main(void *arg)
{
	struct ingest *in = arg;
	struct item_q b;

	pthread_mutex_lock(&in->mu);
	for (;;) {
		/* demoted: nothing more is written, whatever queues */
		while (!in->is_quitting &&
		       (in->is_demoted ||
		        (!in->is_cleanup_due && TAILQ_EMPTY(&in->todo))))
			pthread_cond_wait(&in->cv, &in->mu);
		if (in->is_quitting)
			break;
		if (in->is_cleanup_due) {
			in->is_cleanup_due = false;
			pthread_mutex_unlock(&in->mu);
			if (store_cleanup(in->st, in->cfg->horizon_secs) < 0)
				log_warnx("ingest: cleanup failed");
			pthread_mutex_lock(&in->mu);
			if ((in->is_demoted = store_is_demoted(in->st)) &&
			    write(in->wake[1], "", 1) == -1 && errno != EAGAIN)
				log_warn("ingest: wake");
			continue;
		}
		TAILQ_INIT(&b);
		enum item_kind k = batch_take(in, &b);
		pthread_mutex_unlock(&in->mu);
		if (k == ITEM_POLL)
			worker_poll(in, TAILQ_FIRST(&b));
		else if (k == ITEM_WINDOW)
			worker_window(in, TAILQ_FIRST(&b));
		else {
			struct item *it;
			TAILQ_FOREACH(it, &b, entry)
			if (it->is_deferred)
				fill_prepare(it);
			worker_batch(in, &b);
		}
		pthread_mutex_lock(&in->mu);
		in->stats = *store_stats(in->st);
		in->is_demoted = store_is_demoted(in->st);
		TAILQ_CONCAT(&in->done, &b, entry);
		if (write(in->wake[1], "", 1) == -1 && errno != EAGAIN)
			log_warn("ingest: wake");
	}
	pthread_mutex_unlock(&in->mu);
	return NULL;
}

/* --- the loop's thread ------------------------------------------------ */

static void
done_sync(struct ingest *in, struct item *it)
{
	if (!it->is_committed && it->sm.ok) {
		it->sm.ok = false;
		it->sm.error = "db error";
	}
	if (!it->sm.ok)
		in->rejected++;
	else if (it->sm.is_replay)
		in->replayed++;
	else {
		in->applied++;
		in->events += it->sm.nevents;
		in->state_rows += it->sm.nstate_rows;
		if (it->sm.pre != NULL)
			in->to_device += it->sm.pre->nto_device;
	}
	send_ack(in, it);
}

static void
done_poll(struct ingest *in, struct item *it)
{
	if (!it->is_committed)
		return;
	notify_send(in->nt,
	            &(struct proto_notice){.type = PROTO_NOTICE_DEVICE,
	                                   .pos = it->pos,
	                                   .user_id = it->ps.user_id,
	                                   .device_id = it->ps.device_id,
	                                   .state = it->ps.state});
}

/*
 * Another accumulator is the writer: what the store hands back uncommitted
 * gets no answer from us (a nack would send the pollers to Postgres and a
 * backoff); they resend it to the new writer as soon as they see our
 * socket close (publish.c). Our owner tears us down.
 */
static void
demoted(struct ingest *in)
{
	if (in->is_demote_told)
		return;
	in->is_demote_told = true;
	log_warnx("ingest: no longer the writer; dropping %zu queued",
	          in->ninflight);
	in->on_demote(in->demote_arg);
}

/*
 * Frees an item whose notices are out: a large body's (its frame, its
 * change set, the trim after them) on a thread of its own, as the poller
 * does its trees (mem.h), so the loop goes back to reading and acking.
 */
static void
item_release(struct ingest *in, struct item *it)
{
	/* a window holds its fill's light pass: of every room of the body */
	size_t len =
	    it->kind == ITEM_WINDOW ? it->fill->body_len : it->body_len;

	if (len < MEM_TRIM_BYTES) {
		item_free(it);
		return;
	}
	if (mem_free_detached(item_free_cb, it, len))
		in->frees_detached++;
}

/* Nothing read is left to answer or publish: a stopping loop may end. */
static void
drained_exit(struct ingest *in)
{
	if (in->stopping && in->ninflight == 0 && TAILQ_EMPTY(&in->pub))
		event_base_loopexit(in->base, NULL);
}

/*
 * The next slice, after the loop has polled its sockets and run its
 * timers: an event made active from a callback would run in the same
 * pass, before any of them, and the slices would hold the loop as one.
 */
static void
pub_later(struct ingest *in)
{
	struct timeval now = {0, 0};

	event_add(in->ev_pub, &now);
}

/*
 * Publishes the notices of what committed, in commit order, and frees
 * each item after its last one. A 10,000-room body has tens of thousands
 * of notices; sent in one go they held the loop for seconds, and with it
 * every other poller's body and ack and the liveness renewal (active.c).
 * So at most PUB_SLICE_US is spent per loop turn unless is_all (a
 * demoted writer, torn down next); the rest waits for ev_pub, and a
 * later batch's notices queue behind, while its acks go out at once.
 */
static void
pub_run(struct ingest *in, bool is_all)
{
	struct item *it;
	long long t0 = now_us();
	size_t sent = 0;

	while ((it = TAILQ_FIRST(&in->pub)) != NULL) {
		const struct notice_list *l = &it->sm.notices;

		if (in->pub_next == 0) {
			if (it->is_committed)
				notify_set_lsn(in->nt, it->lsn);
			if (it->kind == ITEM_POLL)
				done_poll(in, it);
		}
		if (it->kind != ITEM_POLL && it->is_committed &&
		    !it->is_published) {
			for (; in->pub_next < l->n; in->pub_next++, sent++) {
				if (!is_all &&
				    sent % PUB_CHECK == PUB_CHECK - 1 &&
				    now_us() - t0 >= PUB_SLICE_US) {
					in->pub_slices++;
					pub_later(in);
					return;
				}
				notify_send(in->nt, &l->v[in->pub_next]);
			}
		}
		in->pub_next = 0;
		TAILQ_REMOVE(&in->pub, it, entry);
		notify_set_pos(in->nt, it->pos);
		if (it->kind == ITEM_WINDOW && it->is_committed)
			log_debug("ingest: %s/%s: window notices out, %lld ms "
			          "after arrival",
			          it->sm.user_id, it->sm.device_id,
			          now_ms() - it->recv_ms);
		item_release(in, it);
	}
	drained_exit(in);
}

static void
pub_cb(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	pub_run(arg, false);
}

/*
 * What the store finished, in commit order: every message is acked (a
 * failed commit turns acks into nacks, unless we are no longer the
 * writer), then, once the acks are out, the notices of what committed
 * are published (pub_run, after any earlier batch's) and the items are
 * freed.
 */
static void
done_cb(evutil_socket_t fd, short what, void *arg)
{
	struct ingest *in = arg;
	struct item_q q;
	struct item *it, *lone;
	char buf[64];
	long long t0 = now_us(), t_ack;
	bool is_demoted;

	(void)what;
	while (read(fd, buf, sizeof(buf)) > 0)
		;
	TAILQ_INIT(&q);
	pthread_mutex_lock(&in->mu);
	TAILQ_CONCAT(&q, &in->done, entry);
	is_demoted = in->is_demoted;
	pthread_mutex_unlock(&in->mu);
	/*
	 * A lone body (a quiet moment) publishes before its ack: the ack
	 * wakes the poller, and upstream behind it, which then take the CPU
	 * from this loop while the notice that wakes the client waits (about
	 * 0.5 ms of a to-device message's 3, strace). Contract 3 only asks
	 * that notices follow the COMMIT; a batch of many keeps its acks
	 * first, so pollers never wait behind its notices, and so does a
	 * body of many notices or one behind an earlier batch's.
	 */
	lone = TAILQ_FIRST(&q);
	if (lone != NULL &&
	    (TAILQ_NEXT(lone, entry) != NULL || lone->kind != ITEM_SYNC ||
	     !lone->is_committed || !TAILQ_EMPTY(&in->pub) ||
	     lone->sm.notices.n > PUB_CHECK))
		lone = NULL;
	if (lone != NULL) {
		notify_set_lsn(in->nt, lone->lsn);
		notify_send_list(in->nt, &lone->sm.notices);
		lone->is_published = true;
	}
	TAILQ_FOREACH(it, &q, entry) {
		if (it->kind == ITEM_SYNC && (it->is_committed || !is_demoted))
			done_sync(in, it);
		in->ninflight--;
		in->inflight_bytes -= it->body_len;
	}
	t_ack = now_us();
	/* behind a slice still to go, ev_pub is due and keeps the order */
	if (TAILQ_EMPTY(&in->pub)) {
		TAILQ_CONCAT(&in->pub, &q, entry);
		pub_run(in, is_demoted);
	} else
		TAILQ_CONCAT(&in->pub, &q, entry);
	if (now_us() - t0 >= LAG_LOG_MS * 1000)
		log_debug("ingest: done: acks %lld ms, then %lld ms",
		          (t_ack - t0) / 1000, (now_us() - t_ack) / 1000);
	if (is_demoted) {
		demoted(in);
		return;
	}
	queue_hold(in);
	zmq_ev_kick(in->ze);
	drained_exit(in);
}

/*
 * Bounds what is read ahead of the store: parsed bodies cost several
 * times their size, so reading stops at four batches' worth (messages or
 * bytes) and resumes as batches come back. Pollers then wait in ZeroMQ's
 * queues and for their acks, as contract 1 has them do anyway.
 */
static void
queue_hold(struct ingest *in)
{
	bool is_full = in->ninflight >= 4 * (size_t)in->cfg->batch_max ||
	    in->inflight_bytes >= 4 * (size_t)in->cfg->batch_bytes;

	/* stopping: ingest_stop freed the watcher, nothing is read anyway */
	if (in->ze != NULL)
		zmq_ev_hold(in->ze, is_full);
}

static void
queue_item(struct ingest *in, struct item *it)
{
	in->ninflight++;
	in->inflight_bytes += it->body_len;
	pthread_mutex_lock(&in->mu);
	TAILQ_INSERT_TAIL(&in->todo, it, entry);
	pthread_cond_signal(&in->cv);
	pthread_mutex_unlock(&in->mu);
}

/*
 * The window item of an initial sync item (worker_window), queued first,
 * when the light pass finds more rooms than a window; false if not.
 */
static bool
queue_window(struct ingest *in, struct item *f,
             const struct proto_sync_raw *raw)
{
	struct acc_changes light;
	struct item *w;
	long long t0 = now_ms(), wall = wall_ms();

	if (normalise_light(raw->body, raw->body_len, raw->user_id, &light) ==
	        -1 ||
	    light.nrooms <= (size_t)in->cfg->window_rooms) {
		normalise_free(&light);
		return false;
	}
	/* a cold login's stages, lined up by tests/bench/bench_cold.sh */
	log_debug("ingest: %s/%s: light pass of %zu rooms in %lld ms, %lld ms "
	          "after the poller sent it",
	          raw->user_id, raw->device_id, light.nrooms, now_ms() - t0,
	          wall - (long long)f->msg.hdr.sent_ms);
	w = xcalloc(1, sizeof(*w));
	w->light = light;
	w->kind = ITEM_WINDOW;
	w->fill = f;
	w->recv_ms = f->recv_ms;
	w->sm.user_id = f->sm.user_id;
	w->sm.device_id = f->sm.device_id;
	w->sm.since_in = f->sm.since_in;
	w->sm.next_batch = f->sm.next_batch;
	w->sm.first = "window";
	queue_item(in, w);
	return true;
}

/* Has the store found another accumulator to be the writer? */
static bool
ingest_is_demoted(struct ingest *in)
{
	return in->is_demote_told || locked_flag(in, &in->is_demoted);
}

/*
 * A sync body: normalised here, so the next batch's parsing runs while
 * the store's thread waits for Postgres on the current one. Its typing
 * goes out at once, from the writer only (a demoted one's notices would
 * reach the apis beside the new writer's), and not for an initial sync
 * or a catch-up (nobody waits on the rooms of a device not yet synced).
 */
static void
queue_sync(struct ingest *in, struct item *it, const struct proto_sync_raw *raw)
{
	it->kind = ITEM_SYNC;
	it->sm.user_id = raw->user_id;
	it->sm.device_id = raw->device_id;
	it->sm.since_in = raw->since_in;
	it->sm.next_batch = raw->next_batch;
	it->sm.body = raw->body;
	it->sm.body_len = raw->body_len;
	it->sm.first = raw->first;
	it->sm.catchup = raw->catchup;
	it->body_len = raw->body_len;
	if (in->cfg->window_rooms > 0 && raw->since_in[0] == '\0' &&
	    raw->first[0] == '\0' && queue_window(in, it, raw)) {
		it->is_deferred = true; /* the store's thread normalises it */
		queue_item(in, it);
		queue_hold(in);
		return;
	}
	it->sm.pre_rc = normalise(raw->body, raw->body_len, raw->user_id,
	                          &it->ch, &it->sm.pre_err);
	it->sm.pre = &it->ch;
	if (it->sm.pre_rc == 0 && raw->since_in[0] != '\0' &&
	    raw->first[0] == '\0' && !ingest_is_demoted(in))
		notify_typing_early(in->nt, &it->ch);
	queue_item(in, it);
	queue_hold(in);
}

/*
 * A batch that committed while the loop reads is answered before the
 * next body is parsed: zmq_ev reads up to batch_max messages per turn,
 * each normalised here, and its acks would otherwise wait for all of
 * them (on a busy loop, longer than the commit took), and with them the
 * pollers' next polls. Not once demoted: done_cb tells the owner.
 */
static void
answer_done(struct ingest *in)
{
	bool is_due;

	pthread_mutex_lock(&in->mu);
	is_due = !TAILQ_EMPTY(&in->done) && !in->is_demoted;
	pthread_mutex_unlock(&in->mu);
	if (is_due)
		done_cb(in->wake[0], EV_READ, in);
}

/*
 * One message from a poller. A sync body or a poll state is queued for
 * the store, borrowing from the message it came in, which the item owns
 * until it is done; anything else is answered with a nack so the poller
 * does not wait for nothing.
 */
static void
read_cb(void *sock, void *arg)
{
	struct ingest *in = arg;
	struct item *it;
	struct proto_sync_raw raw;
	int rc;

	answer_done(in);
	it = xcalloc(1, sizeof(*it));
	if ((rc = proto_recv(sock, true, &it->msg)) != PROTO_OK) {
		if (!(rc == PROTO_EIO && errno == EAGAIN)) {
			in->bad_msgs++;
			log_warnx_rl("ingest: bad message: %s",
			             proto_strerror(rc));
		}
		item_free(it);
		return;
	}
	it->route = zmq_msg_data(&it->msg.frames[0]);
	it->route_len = zmq_msg_size(&it->msg.frames[0]);
	it->recv_ms = now_ms();
	if (it->msg.hdr.type == PROTO_POLL_STATE) {
		if (proto_recv_poll_state(&it->msg, &it->ps) != PROTO_OK) {
			in->bad_msgs++;
			log_warnx_rl("ingest: bad poll state message");
			item_free(it);
			return;
		}
		it->kind = ITEM_POLL;
		queue_item(in, it);
		return;
	}
	if (proto_recv_sync_raw(&it->msg, &raw) != PROTO_OK) {
		in->bad_msgs++;
		log_warnx_rl("ingest: unexpected %s message",
		             proto_type_name(it->msg.hdr.type));
		it->sm.error = "bad message";
		send_ack(in, it);
		item_free(it);
		return;
	}
	queue_sync(in, it, &raw);
}

static void
cleanup_cb(evutil_socket_t fd, short what, void *arg)
{
	struct ingest *in = arg;

	(void)fd;
	(void)what;
	pthread_mutex_lock(&in->mu);
	in->is_cleanup_due = true;
	pthread_cond_signal(&in->cv);
	pthread_mutex_unlock(&in->mu);
}

/* The ack latency below which a share q of the interval's acks fell. */
static long long
lat_pct(const struct ingest *in, double q)
{
	unsigned long long want = (unsigned long long)(q * (double)in->lat_n);
	unsigned long long seen = 0;

	for (size_t b = 0; b < LAT_NBUCKETS; b++) {
		seen += in->lat_hist[b];
		if (seen > want)
			return b < LAT_FINE
			           ? (long long)b
			           : LAT_FINE + (long long)(b - LAT_FINE) * 10;
	}
	return in->lat_max_ms;
}

static void
stats_cb(evutil_socket_t fd, short what, void *arg)
{
	struct ingest *in = arg;
	struct store_stats s;
	unsigned long long nb, nbodies;
	long long cms, cmax, dus;
	size_t bmax;

	(void)fd;
	(void)what;
	/* also while nothing is acked but bodies wait: a stuck commit */
	if (in->lat_n == 0 && in->ninflight == 0)
		return;
	pthread_mutex_lock(&in->mu);
	s = in->stats;
	nb = in->iv_batches;
	nbodies = in->iv_bodies;
	cms = in->iv_commit_ms;
	cmax = in->iv_commit_max_ms;
	dus = in->iv_durable_us;
	bmax = in->iv_batch_max;
	in->iv_batches = in->iv_bodies = 0;
	in->iv_commit_ms = in->iv_commit_max_ms = in->iv_durable_us = 0;
	in->iv_batch_max = 0;
	pthread_mutex_unlock(&in->mu);
	log_info(
	    "ingest: acks %llu nacks %llu events %llu bad events %llu "
	    "bad bodies %llu batches %llu queued %zu ack latency avg %lldms "
	    "p50 %lldms p95 %lldms p99 %lldms max %lldms n %llu; "
	    "commits %llu bodies %llu max %zu commit avg %.1fms "
	    "max %lldms of which COMMIT avg %.1fms",
	    in->acked, in->nacked, s.events, s.bad_events, s.bad_bodies,
	    s.batches, in->ninflight,
	    in->lat_n ? in->lat_sum_ms / (long long)in->lat_n : 0,
	    lat_pct(in, 0.50), lat_pct(in, 0.95), lat_pct(in, 0.99),
	    in->lat_max_ms, in->lat_n, nb, nbodies, bmax,
	    nb ? (double)cms / (double)nb : 0.0, cmax,
	    nb ? (double)dus / 1000.0 / (double)nb : 0.0);
	memset(in->lat_hist, 0, LAT_NBUCKETS * sizeof(*in->lat_hist));
	in->lat_sum_ms = in->lat_max_ms = 0;
	in->lat_n = 0;
}

/* How late this tick ran: the loop was held that long by something. */
static void
lag_cb(evutil_socket_t fd, short what, void *arg)
{
	struct ingest *in = arg;
	long long late_ms;

	(void)fd;
	(void)what;
	late_ms = lag_tick(&in->lag_last_us, &in->lag_max_ms, LAG_TICK_MS);
	if (late_ms >= LAG_LOG_MS)
		log_debug("ingest: loop stalled %lld ms (longest %lld ms)",
		          late_ms, in->lag_max_ms);
}

static void
wake_init(struct ingest *in)
{
	if (pipe(in->wake) == -1)
		fatal("ingest: pipe");
	for (int i = 0; i < 2; i++) {
		if (fcntl(in->wake[i], F_SETFL, O_NONBLOCK) == -1 ||
		    fcntl(in->wake[i], F_SETFD, FD_CLOEXEC) == -1)
			fatal("ingest: fcntl");
	}
}

/*
 * Binds the ROUTER for pollers, starts the store's thread and arms the
 * done, cleanup and stats events; st and nt stay the caller's and must
 * outlive the ingest, and st is used by the store's thread alone from
 * now until ingest_free. on_demote(demote_arg) is called from the loop,
 * once, when the store finds another accumulator became the writer.
 */
struct ingest *
ingest_new(struct event_base *base, void *zctx, const struct acc_config *cfg,
           struct store *st, struct notify *nt, void (*on_demote)(void *),
           void *demote_arg)
{
	struct ingest *in = xcalloc(1, sizeof(*in));
	struct timeval cl = {cfg->cleanup_secs, 0},
	               stats = {cfg->stats_secs, 0},
	               lag = {0, LAG_TICK_MS * 1000};

	in->base = base;
	in->cfg = cfg;
	in->st = st;
	in->nt = nt;
	in->on_demote = on_demote;
	in->demote_arg = demote_arg;
	in->stats = *store_stats(st);
	in->lat_hist = xcalloc(LAT_NBUCKETS, sizeof(*in->lat_hist));
	TAILQ_INIT(&in->todo);
	TAILQ_INIT(&in->done);
	TAILQ_INIT(&in->pub);
	if ((in->sock = zmq_ev_socket(zctx, ZMQ_ROUTER, cfg->ingest, 1,
	                              (long long)PROTO_PAYLOAD_MAX +
	                                  PROTO_META_MAX + 1024)) == NULL) {
		free(in->lat_hist);
		free(in);
		return NULL;
	}
	wake_init(in);
	pthread_mutex_init(&in->mu, NULL);
	pthread_cond_init(&in->cv, NULL);
	if (pthread_create(&in->worker, NULL, worker_main, in) != 0)
		fatalx("ingest: cannot start the store's thread");
	in->ev_done =
	    event_new(base, in->wake[0], EV_READ | EV_PERSIST, done_cb, in);
	in->ev_cleanup = event_new(base, -1, EV_PERSIST, cleanup_cb, in);
	in->ev_stats = event_new(base, -1, EV_PERSIST, stats_cb, in);
	event_add(in->ev_done, NULL);
	event_add(in->ev_cleanup, &cl);
	event_add(in->ev_stats, &stats);
	in->ev_pub = event_new(base, -1, 0, pub_cb, in);
	in->ev_lag = event_new(base, -1, EV_PERSIST, lag_cb, in);
	event_add(in->ev_lag, &lag);
	in->ze = zmq_ev_new(base, in->sock, (int)cfg->batch_max, read_cb, in);
	log_info("ingest: listening on %s", cfg->ingest);
	return in;
}

/*
 * The loop's counters are its own; what the store's thread counts is
 * copied under the lock it hands batches back with (no atomics: the
 * store thread's counters change once per batch, not per event, and a
 * scrape reads them a few times a minute).
 */
void
ingest_counts(struct ingest *in, struct ingest_counts *out)
{
	out->applied = in->applied;
	out->replayed = in->replayed;
	out->rejected = in->rejected;
	out->events = in->events;
	out->to_device = in->to_device;
	out->state_rows = in->state_rows;
	out->bad_msgs = in->bad_msgs;
	out->queued = in->ninflight;
	out->loop_stall_max_ms = in->lag_max_ms;
	out->pub_slices = in->pub_slices;
	out->frees_detached = in->frees_detached;
	pthread_mutex_lock(&in->mu);
	out->st = in->stats;
	out->batch_size = in->batch_size;
	out->commit_secs = in->commit_secs;
	pthread_mutex_unlock(&in->mu);
}

bool
ingest_is_stopping(const struct ingest *in)
{
	return in->stopping;
}

/* SIGTERM: read nothing more, finish and ack what is queued, then exit. */
void
ingest_stop(struct ingest *in)
{
	if (in->stopping)
		return;
	in->stopping = true;
	zmq_ev_free(in->ze);
	in->ze = NULL;
	log_info("ingest: stopping with %zu queued", in->ninflight);
	drained_exit(in);
}

static void
queue_free(struct item_q *q)
{
	struct item *it;

	while ((it = TAILQ_FIRST(q)) != NULL) {
		TAILQ_REMOVE(q, it, entry);
		item_free(it);
	}
}

/* Stops the store's thread after its current batch; what is still
 * queued is dropped unacked (pollers resend it). */
void
ingest_free(struct ingest *in)
{
	if (in == NULL)
		return;
	pthread_mutex_lock(&in->mu);
	in->is_quitting = true;
	pthread_cond_signal(&in->cv);
	pthread_mutex_unlock(&in->mu);
	pthread_join(in->worker, NULL);
	queue_free(&in->todo);
	queue_free(&in->done);
	queue_free(&in->pub);
	pthread_mutex_destroy(&in->mu);
	pthread_cond_destroy(&in->cv);
	zmq_ev_free(in->ze);
	event_free(in->ev_done);
	event_free(in->ev_cleanup);
	event_free(in->ev_stats);
	event_free(in->ev_lag);
	event_free(in->ev_pub);
	close(in->wake[0]);
	close(in->wake[1]);
	zmq_close(in->sock);
	free(in->lat_hist);
	free(in);
}
