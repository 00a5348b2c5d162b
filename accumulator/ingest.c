/*
 * The ROUTER socket pollers talk to. Each PROTO_SYNC_RAW is queued, then
 * applied in group commits: one transaction takes up to batch_max queued
 * messages from the head of the queue, bounded by bytes and by
 * batch_delay_ms so no ack waits long; the store keeps a device's since
 * chain in order within a batch. Acks go back after COMMIT, then the
 * notices. PROTO_POLL_STATE is recorded at once.
 */
#include <sys/queue.h>

#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include <zmq.h>

#include "accumulator.h"
#include "util.h"
#include "zmq_ev.h"

struct item {
	TAILQ_ENTRY(item) entry;
	struct proto_msg msg;
	const void *route;
	size_t route_len;
	struct store_msg sm;
	long long recv_ms;
};
TAILQ_HEAD(item_q, item);

struct ingest {
	struct event_base *base;
	void *sock;
	struct zmq_ev *ze;
	struct event *ev_batch, *ev_cleanup, *ev_stats, *ev_retry;
	const struct acc_config *cfg;
	struct store *st;
	struct notify *nt;
	struct item_q queue;
	size_t nqueued;
	bool stopping;
	uint64_t seq;
	unsigned long long bad_msgs, acked, nacked;
	long long lat_max_ms, lat_sum_ms;
	unsigned long long lat_n;
};

static void
item_free(struct item *it)
{
	store_msg_reset(&it->sm);
	proto_msg_close(&it->msg);
	free(it);
}

static void
send_ack(struct ingest *in, struct item *it)
{
	struct proto_sync_ack a = {it->sm.user_id ? it->sm.user_id : "",
	    it->sm.device_id ? it->sm.device_id : "", it->sm.ok,
	    it->sm.since ? it->sm.since : "",
	    it->sm.ok ? "" : (it->sm.error ? it->sm.error : "error")};
	long long lat = now_ms() - it->recv_ms;

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
	in->lat_sum_ms += lat;
	in->lat_n++;
	if (lat > in->lat_max_ms)
		in->lat_max_ms = lat;
}

static bool
batch_full(struct ingest *in, size_t n, size_t bytes, long long start)
{
	return n >= (size_t)in->cfg->batch_max ||
	    bytes >= (size_t)in->cfg->batch_bytes ||
	    now_ms() - start >= in->cfg->batch_delay_ms;
}

/*
 * Hands the head of the queue to the store, in arrival order, until the
 * batch is full: the batch is the first n items of the queue, and the
 * store alone assembles it (a device's second message in it waits there
 * for the first, see store_apply).
 */
static size_t
batch_fill(struct ingest *in)
{
	struct item *it;
	long long start = now_ms();
	size_t n = 0, bytes = 0;

	TAILQ_FOREACH(it, &in->queue, entry) {
		if (n > 0 && batch_full(in, n, bytes, start))
			break;
		store_apply(in->st, &it->sm);
		n++;
		bytes += it->sm.body_len;
	}
	return n;
}

/*
 * One batch: the queue's head goes to the store in one transaction, then
 * every message of it is acked (a failed commit turns acks into nacks)
 * and, once the acks are out, its notices are published and it is freed.
 * Items that arrive meanwhile join the queue's tail for the next batch.
 */
static void
batch_cb(evutil_socket_t fd, short what, void *arg)
{
	struct ingest *in = arg;
	struct item *it;
	bool committed;
	size_t n, i;

	(void)fd;
	(void)what;
	if (TAILQ_EMPTY(&in->queue))
		goto done;
	if (store_batch_begin(in->st) == -1) {
		struct timeval one = {1, 0};
		log_warnx("ingest: cannot start a batch; retrying in 1s");
		evtimer_add(in->ev_retry, &one);
		return;
	}
	n = batch_fill(in);
	committed = store_batch_commit(in->st) == 0;
	i = 0;
	TAILQ_FOREACH(it, &in->queue, entry) {
		if (i++ == n)
			break;
		if (!committed && it->sm.ok) {
			it->sm.ok = false;
			it->sm.error = "db error";
		}
		send_ack(in, it);
	}
	zmq_ev_kick(in->ze);
	for (i = 0; i < n && (it = TAILQ_FIRST(&in->queue)) != NULL; i++) {
		TAILQ_REMOVE(&in->queue, it, entry);
		in->nqueued--;
		if (committed)
			notify_send_list(in->nt, &it->sm.notices);
		item_free(it);
	}
	notify_set_pos(in->nt, store_pos(in->st));
	log_debug("ingest: batch of %zu %s at position %" PRId64, n,
	    committed ? "committed" : "failed", store_pos(in->st));
done:
	if (!TAILQ_EMPTY(&in->queue))
		event_active(in->ev_batch, EV_TIMEOUT, 0);
	else if (in->stopping)
		event_base_loopexit(in->base, NULL);
}

static void
on_poll_state(struct ingest *in, struct proto_msg *msg)
{
	struct proto_poll_state ps;

	if (proto_recv_poll_state(msg, &ps) != PROTO_OK) {
		in->bad_msgs++;
		log_warnx_rl("ingest: bad poll state message");
		return;
	}
	if (store_poll_state(in->st, &ps) != 1)
		return;		/* failed, or about a token the device no longer has */
	notify_send(in->nt, &(struct proto_notice){
	    .type = PROTO_NOTICE_DEVICE, .pos = store_pos(in->st),
	    .user_id = ps.user_id, .device_id = ps.device_id,
	    .state = ps.state});
}

/*
 * One message from a poller. A poll state is recorded at once; a sync
 * body is queued for the next batch, its store_msg borrowing from the
 * message it came in, which the item owns until it is acked; anything
 * else is answered with a nack so the poller does not wait for nothing.
 */
static void
read_cb(void *sock, void *arg)
{
	struct ingest *in = arg;
	struct item *it = xcalloc(1, sizeof(*it));
	struct proto_sync_raw raw;
	int rc;

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
		on_poll_state(in, &it->msg);
		item_free(it);
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
	it->sm.user_id = raw.user_id;
	it->sm.device_id = raw.device_id;
	it->sm.since_in = raw.since_in;
	it->sm.next_batch = raw.next_batch;
	it->sm.body = raw.body;
	it->sm.body_len = raw.body_len;
	TAILQ_INSERT_TAIL(&in->queue, it, entry);
	in->nqueued++;
	event_active(in->ev_batch, EV_TIMEOUT, 0);
}

static void
cleanup_cb(evutil_socket_t fd, short what, void *arg)
{
	struct ingest *in = arg;

	(void)fd;
	(void)what;
	if (store_cleanup(in->st, in->cfg->horizon_secs) < 0)
		log_warnx("ingest: cleanup failed");
}

static void
stats_cb(evutil_socket_t fd, short what, void *arg)
{
	struct ingest *in = arg;
	const struct store_stats *s = store_stats(in->st);

	(void)fd;
	(void)what;
	if (in->lat_n == 0)
		return;
	log_info("ingest: acks %llu nacks %llu events %llu bad events %llu "
	    "bad bodies %llu batches %llu queued %zu ack latency avg %lldms "
	    "max %lldms pos %" PRId64, in->acked, in->nacked, s->events,
	    s->bad_events, s->bad_bodies, s->batches, in->nqueued,
	    in->lat_sum_ms / (long long)in->lat_n, in->lat_max_ms,
	    store_pos(in->st));
	in->lat_sum_ms = in->lat_max_ms = 0;
	in->lat_n = 0;
}

/*
 * Binds the ROUTER for pollers and arms the batch, retry, cleanup and
 * stats events; st and nt stay the caller's and must outlive the ingest.
 */
struct ingest *
ingest_new(struct event_base *base, void *zctx, const struct acc_config *cfg,
    struct store *st, struct notify *nt)
{
	struct ingest *in = xcalloc(1, sizeof(*in));
	struct timeval cl = {cfg->cleanup_secs, 0}, ten = {10, 0};

	in->base = base;
	in->cfg = cfg;
	in->st = st;
	in->nt = nt;
	TAILQ_INIT(&in->queue);
	if ((in->sock = zmq_ev_socket(zctx, ZMQ_ROUTER, cfg->ingest, 1,
	    (long long)PROTO_PAYLOAD_MAX + PROTO_META_MAX + 1024)) == NULL) {
		free(in);
		return NULL;
	}
	in->ev_batch = event_new(base, -1, 0, batch_cb, in);
	in->ev_retry = evtimer_new(base, batch_cb, in);
	in->ev_cleanup = event_new(base, -1, EV_PERSIST, cleanup_cb, in);
	in->ev_stats = event_new(base, -1, EV_PERSIST, stats_cb, in);
	event_add(in->ev_cleanup, &cl);
	event_add(in->ev_stats, &ten);
	in->ze = zmq_ev_new(base, in->sock, (int)cfg->batch_max, read_cb, in);
	log_info("ingest: listening on %s", cfg->ingest);
	return in;
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
	log_info("ingest: stopping with %zu queued", in->nqueued);
	event_active(in->ev_batch, EV_TIMEOUT, 0);
}

void
ingest_free(struct ingest *in)
{
	struct item *it;

	if (in == NULL)
		return;
	while ((it = TAILQ_FIRST(&in->queue)) != NULL) {
		TAILQ_REMOVE(&in->queue, it, entry);
		item_free(it);
	}
	zmq_ev_free(in->ze);
	event_free(in->ev_batch);
	event_free(in->ev_retry);
	event_free(in->ev_cleanup);
	event_free(in->ev_stats);
	zmq_close(in->sock);
	free(in);
}
