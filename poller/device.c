/*
 * device.c: the devices this poller holds and each one's state machine
 * (WAITING -> POLLING -> ACK_WAIT -> POLLING ..., with BACKOFF on errors).
 * Driven by sync.c (a request finished), publish.c (an ack arrived),
 * lease.c (claimed, lost, token replaced) and each device's own evtimer
 * (backoff over, ack overdue). The since only ever advances on an ack.
 *
 * Sibling devices (docs/DESIGN.md): a device whose user has another
 * device synced and polled asks its first sync without rooms, then polls
 * normally; once acked it waits sibling_wait_ms for a sibling to catch up
 * (the accumulator decides, lease.c's is_synced tells) and otherwise
 * refills: one full initial sync stored beside its since. A catch-up
 * notice (device_catchup) restarts a sibling's long-poll at once so that
 * its next body, sent with the catch-up's position, shows the accumulator
 * a poll that started after the new device's first commit.
 */
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "map.h"
#include "poller.h"
#include "util.h"

/* The device table's key: user and device id, length-prefixed. */
static char *
dev_key(const char *user_id, const char *device_id)
{
	return map_key3(user_id, device_id, NULL);
}

static void reap(struct poller *);

void
device_init(struct poller *p)
{
	TAILQ_INIT(&p->devices);
	TAILQ_INIT(&p->waiting);
	TAILQ_INIT(&p->dead);
	map_init(&p->table);
}

void
device_shutdown(struct poller *p)
{
	struct device *d;

	while ((d = TAILQ_FIRST(&p->devices)) != NULL)
		device_drop(d);
	reap(p);
	map_free(&p->table, NULL);
}

struct device *
device_find(struct poller *p, const char *user_id, const char *device_id)
{
	char *key = dev_key(user_id, device_id);
	struct device *d = map_get(&p->table, key);

	free(key);
	return d;
}

static void timer_cb(evutil_socket_t, short, void *);
static void cover_cb(evutil_socket_t, short, void *);

/* Takes ownership of token. */
struct device *
device_add(struct poller *p, const char *user_id, const char *device_id,
           char *token, const char *since, const char *fp)
{
	struct device *d = xcalloc(1, sizeof(*d));

	d->p = p;
	d->user_id = xstrdup(user_id);
	d->device_id = xstrdup(device_id);
	d->token = token;
	d->since = xstrdup(since);
	snprintf(d->fp, sizeof(d->fp), "%s", fp);
	d->cycle = DEV_BACKOFF;
	d->timer = evtimer_new(p->base, timer_cb, d);
	d->cover_ev = evtimer_new(p->base, cover_cb, d);
	d->req_first = "";
	d->key = dev_key(user_id, device_id);
	map_put(&p->table, d->key, d);
	TAILQ_INSERT_TAIL(&p->devices, d, entry);
	p->ndevices++;
	return d;
}

static void
table_remove(struct device *d)
{
	struct poller *p = d->p;

	map_del(&p->table, d->key);
	TAILQ_REMOVE(&p->devices, d, entry);
	p->ndevices--;
}

/*
 * The current request will not be acked (failed, refused, aborted): a
 * catch-up it carried goes with the next one; a sibling-first or refill
 * request is asked again because its flags stay set.
 */
static void
req_forget(struct device *d)
{
	if (d->req_catchup > d->catchup)
		d->catchup = d->req_catchup;
	d->req_catchup = 0;
	d->req_first = "";
}

/*
 * A large body's buffer is a mapping of its own and goes back to the
 * kernel with it; its tree's memory is trimmed by the thread that frees
 * the tree (policy.c, scan_release), off the loop.
 */
static void
body_free(struct device *d)
{
	sync_body_free(d);
	free(d->next_batch);
	d->next_batch = NULL;
}

static void
start_waiting(struct poller *p)
{
	struct device *d;

	while (p->initial_inflight < p->cfg.max_initial &&
	       (d = TAILQ_FIRST(&p->waiting)) != NULL) {
		TAILQ_REMOVE(&p->waiting, d, waitq);
		d->cycle = DEV_BACKOFF;
		device_start(d);
	}
}

/* An initial sync finished (whatever its outcome): let the next one go. */
void
device_release_slot(struct device *d)
{
	if (!d->is_initial_slot)
		return;
	d->is_initial_slot = false;
	d->p->initial_inflight--;
	if (!d->p->is_stopping)
		start_waiting(d->p);
}

/*
 * Starts the device's next request, unless it is an initial sync and the
 * homeserver already has max_initial of those from us: then it queues.
 */
void
device_start(struct device *d)
{
	struct poller *p = d->p;

	if (d->cycle == DEV_STOPPED || d->cycle == DEV_WAITING ||
	    d->cycle == DEV_POLLING || p->is_stopping)
		return;
	/* Past our liveness deadline: the next renewal decides (lease.c). */
	if (!p->owner.may_poll(p))
		return;
	if (d->is_releasing) {
		/* Between two polls: hand over without overlapping requests. */
		p->owner.release(d);
		return;
	}
	evtimer_del(d->timer);
	if (d->since[0] == '\0' && !d->is_initial_slot) {
		if (p->initial_inflight >= p->cfg.max_initial) {
			d->cycle = DEV_WAITING;
			TAILQ_INSERT_TAIL(&p->waiting, d, waitq);
			return;
		}
		d->is_initial_slot = true;
		p->initial_inflight++;
	}
	if (sync_start(d, device_on_response) == -1) {
		device_release_slot(d);
		d->attempt++;
		snprintf(d->error, sizeof(d->error), "cannot start request");
		device_backoff(
		    d, policy_backoff_ms(d->attempt,
		                         (uint32_t)p->cfg.backoff_base_ms,
		                         (uint32_t)p->cfg.backoff_cap_ms,
		                         rand_u32(UINT32_MAX)));
		return;
	}
	d->cycle = DEV_POLLING;
}

void
device_backoff(struct device *d, long long delay_ms)
{
	struct timeval tv = {delay_ms / 1000, (delay_ms % 1000) * 1000};

	d->cycle = DEV_BACKOFF;
	metric_inc(d->p->m_backoffs);
	d->retry_at_ms = wall_ms() + delay_ms;
	evtimer_add(d->timer, &tv);
}

static void
arm_ack_timer(struct device *d)
{
	struct poller *p = d->p;
	long long ms = p->cfg.ack_timeout_ms;

	/* A big initial sync takes the accumulator a while to store. */
	ms += (long long)(d->body_len >> 20) * 1000;
	for (int i = 0; i < d->send_attempt && ms < p->cfg.backoff_cap_ms; i++)
		ms *= 2;
	if (ms > p->cfg.backoff_cap_ms && d->send_attempt > 0)
		ms = p->cfg.backoff_cap_ms;
	struct timeval tv = {ms / 1000, (ms % 1000) * 1000};
	evtimer_add(d->timer, &tv);
}

/* Reports a poll state change to Postgres (batched) and the accumulator. */
void
device_set_ps(struct device *d, enum dev_state ps, const char *error)
{
	if (d->ps == ps)
		return;
	d->ps = ps;
	if (error != NULL && error != d->error)
		snprintf(d->error, sizeof(d->error), "%s", error);
	if (ps == DEV_STATE_POLLING)
		d->error[0] = '\0';
	if (ps == DEV_STATE_POLLING || ps == DEV_STATE_BACKOFF)
		device_mark_dirty(d);
	if (ps != DEV_STATE_IDLE)
		publish_poll_state(d);
	log_debug("device %s/%s: %s%s%s", d->user_id, d->device_id,
	          dev_state_name(ps), d->error[0] ? ": " : "", d->error);
}

static void
fail(struct device *d, const struct verdict_info *vi)
{
	struct poller *p = d->p;
	long long ms;

	p->stats.polls_failed++;
	req_forget(d);
	body_free(d);
	if (vi->verdict == V_RATELIMIT && vi->retry_ms >= 0)
		ms = vi->retry_ms;
	else
		ms = policy_backoff_ms(
		    ++d->attempt, (uint32_t)p->cfg.backoff_base_ms,
		    (uint32_t)p->cfg.backoff_cap_ms, rand_u32(UINT32_MAX));
	log_warnx_rl("device %s/%s: %s; retry in %lld ms", d->user_id,
	             d->device_id, vi->error, ms);
	device_backoff(d, ms);
	/* Report each new kind of error, not every retry of the same one. */
	if (d->ps == DEV_STATE_BACKOFF && strcmp(d->error, vi->error) == 0)
		return;
	d->ps = DEV_STATE_NEW;
	device_set_ps(d, DEV_STATE_BACKOFF, vi->error);
}

/* Stops a device whose token the homeserver rejected (contract 5). */
static void
expire(struct device *d, const char *error)
{
	struct poller *p = d->p;

	log_info("device %s/%s: token rejected (%s); polling stopped",
	         d->user_id, d->device_id, error);
	device_set_ps(d, DEV_STATE_EXPIRED, error);
	if (p->owner.stop(d, DEV_STATE_EXPIRED, error) == -1)
		log_warnx("device %s/%s: cannot record expiry; the lease "
		          "will lapse",
		          d->user_id, d->device_id);
	device_drop(d);
}

/*
 * Upstream answered at once with nothing new and the same next_batch:
 * nothing to hand on, so wait (longer each time in a row) before asking
 * again rather than spinning. The device is healthy; its state stays.
 */
static void
unchanged(struct device *d)
{
	struct poller *p = d->p;
	long long ms;

	body_free(d);
	ms = policy_unchanged_ms(++d->unchanged_attempt,
	                         (uint32_t)p->cfg.backoff_base_ms,
	                         (uint32_t)p->cfg.backoff_cap_ms,
	                         p->cfg.poll_timeout_ms, rand_u32(UINT32_MAX));
	log_debug("device %s/%s: upstream answered at once without moving "
	          "(%d in a row); next poll in %lld ms",
	          d->user_id, d->device_id, d->unchanged_attempt, ms);
	device_backoff(d, ms);
}

/* A request finished; vi->next_batch is taken over. */
void
device_on_response(struct device *d, struct verdict_info *vi)
{
	struct poller *p = d->p;

	device_release_slot(d);
	switch (vi->verdict) {
	case V_OK:
		/* a catch-up or refill is sent even when nothing moved */
		if (d->req_catchup == 0 && d->req_first[0] == '\0' &&
		    policy_is_unchanged(d->since, vi,
		                        now_ms() - d->req_start_ms,
		                        p->cfg.poll_timeout_ms)) {
			unchanged(d);
			return;
		}
		d->unchanged_attempt = 0;
		d->next_batch = vi->next_batch;
		vi->next_batch = NULL;
		if (strcmp(d->req_first, "refill") == 0) {
			/* stored beside the since, which stays */
			free(d->next_batch);
			d->next_batch = xstrdup(d->since);
		}
		d->cycle = DEV_ACK_WAIT;
		d->send_attempt = 0;
		if (publish_sync_raw(d, d->since) == -1)
			log_warnx_rl("device %s/%s: accumulator unreachable; "
			             "will resend",
			             d->user_id, d->device_id);
		arm_ack_timer(d);
		return;
	case V_EXPIRED:
		expire(d, vi->error);
		return;
	case V_RATELIMIT:
	case V_RETRY:
		fail(d, vi);
		return;
	}
}

/* What an acked sibling-first or refill body changes for the device. */
static void
ack_first(struct device *d)
{
	if (strcmp(d->req_first, "sibling") == 0) {
		d->is_sibling_first = false;
		device_cover_wait(d);
	} else if (strcmp(d->req_first, "refill") == 0) {
		d->is_refill_due = false;
		log_info("device %s/%s: refilled: no sibling caught up",
		         d->user_id, d->device_id);
	}
	d->req_first = "";
	d->req_catchup = 0;
}

/* Ends d's request in flight (its answer is not wanted) and starts anew. */
static void
restart(struct device *d)
{
	sync_abort(d);
	req_forget(d);
	d->cycle = DEV_BACKOFF;
	device_start(d);
}

/*
 * Past our liveness deadline (lease.c): every request in flight ends, so
 * none overlaps another poller's should our row have expired. The devices,
 * and a body waiting for its ack, stay: a renewal that finds the row still
 * live means nobody could take them, and device_resume_all goes on.
 */
void
device_pause_all(struct poller *p)
{
	struct device *d;

	TAILQ_FOREACH(d, &p->devices, entry)
	{
		if (d->cycle != DEV_POLLING)
			continue;
		sync_abort(d);
		req_forget(d);
		d->cycle = DEV_BACKOFF;
	}
}

/* Liveness renewed in time after all: start what the pause refused. */
void
device_resume_all(struct poller *p)
{
	struct device *d;

	TAILQ_FOREACH(d, &p->devices, entry)
	{
		if (d->cycle == DEV_BACKOFF && !evtimer_pending(d->timer, NULL))
			device_start(d);
	}
}

/*
 * How soon d, a device of the user, shows the accumulator a poll that
 * started after the catch-up notice for pos (lower is sooner), or
 * CATCHUP_NONE when it cannot witness: no since yet (a first sync in
 * flight), or waiting to be covered itself (cover_ev pending, a refill
 * due), which the accumulator would not count.
 */
enum catchup_rank {
	CATCHUP_INFLIGHT, /* its request in flight already started after */
	CATCHUP_RESTART,  /* parked in a long-poll: restarted now */
	CATCHUP_ACK,      /* its next request follows an ack */
	CATCHUP_TIMER,    /* its next request waits for a timer */
	CATCHUP_NONE,
};

static enum catchup_rank
catchup_rank(struct device *d, int64_t pos)
{
	if (d->since[0] == '\0' || d->is_refill_due ||
	    evtimer_pending(d->cover_ev, NULL))
		return CATCHUP_NONE;
	if (d->cycle == DEV_POLLING && d->req_first[0] == '\0')
		return d->req_catchup >= pos ? CATCHUP_INFLIGHT
		                             : CATCHUP_RESTART;
	if (d->cycle == DEV_ACK_WAIT)
		return CATCHUP_ACK;
	return d->cycle == DEV_STOPPED ? CATCHUP_NONE : CATCHUP_TIMER;
}

/* d's next request carries pos; one parked in a long-poll starts now. */
static void
catchup_carry(struct device *d, int64_t pos)
{
	if (pos > d->catchup)
		d->catchup = pos;
	if (d->cycle == DEV_POLLING && d->req_catchup < pos &&
	    d->req_first[0] == '\0')
		restart(d);
}

/*
 * PROTO_PG_CATCHUP_CHANNEL: a device of user_id stored its first sync
 * without rooms at cover position pos and waits for a poll of a sibling
 * that starts after that commit. One witness is enough, so one device of
 * the user we hold, the one that can answer soonest (catchup_rank),
 * carries pos in its next request; one waiting in a long-poll is
 * restarted now (same since, so nothing upstream is dropped: contract 1),
 * and sync.c gives that request a zero timeout. Restarting every sibling
 * cost one upstream sync each, served one after another: 0.5 s with 7
 * siblings of 10,000 rooms (issue #13). When none of ours can witness
 * (each one waits itself, as far as we know), every device with a since
 * carries pos as before and the accumulator picks the witnesses.
 */
void
device_catchup(struct poller *p, const char *user_id, int64_t pos)
{
	struct device *d, *best = NULL;
	enum catchup_rank r, best_r = CATCHUP_NONE;

	TAILQ_FOREACH(d, &p->devices, entry)
	{
		if (strcmp(d->user_id, user_id) != 0)
			continue;
		if ((r = catchup_rank(d, pos)) < best_r) {
			best = d;
			best_r = r;
		}
	}
	if (best != NULL) {
		/* one in flight carries a later catch-up, which covers pos */
		if (best_r != CATCHUP_INFLIGHT)
			catchup_carry(best, pos);
		return;
	}
	TAILQ_FOREACH(d, &p->devices, entry)
	{
		if (strcmp(d->user_id, user_id) == 0 && d->since[0] != '\0')
			catchup_carry(d, pos);
	}
}

/* After a sibling-first sync: refill unless a sibling catches up. */
void
device_cover_wait(struct device *d)
{
	long long ms = d->p->cfg.sibling_wait_ms;
	struct timeval tv = {ms / 1000, (ms % 1000) * 1000};

	evtimer_add(d->cover_ev, &tv);
}

static void
cover_cb(evutil_socket_t fd, short what, void *arg)
{
	struct device *d = arg;
	int rc;

	(void)fd;
	(void)what;
	if (d->cycle == DEV_STOPPED || d->since[0] == '\0')
		return;
	if ((rc = d->p->owner.is_synced(d)) == 1)
		return;
	if (rc == -1) {
		device_cover_wait(d); /* ask again later */
		return;
	}
	log_info("device %s/%s: no sibling caught up in %lld ms; refilling",
	         d->user_id, d->device_id, d->p->cfg.sibling_wait_ms);
	d->is_refill_due = true;
	if (d->cycle == DEV_POLLING)
		restart(d);
}

/*
 * The accumulator answered a PROTO_SYNC_RAW (contract 1). Only an ack
 * naming the pending next_batch advances the since; an ack about an older
 * message is ignored, and a nack reloads the committed since from
 * Postgres (the owner's reload_since) and polls again after a backoff.
 */
void
device_on_ack(struct device *d, bool ok, const char *since, const char *error)
{
	struct poller *p = d->p;
	enum ack_action a;

	if (d->cycle != DEV_ACK_WAIT || d->next_batch == NULL) {
		log_debug("device %s/%s: stale ack ignored", d->user_id,
		          d->device_id);
		return;
	}
	a = policy_ack(d->since, d->next_batch, ok, since, error);
	switch (a) {
	case ACK_STALE:
		log_debug("device %s/%s: ack for an older message ignored",
		          d->user_id, d->device_id);
		return;
	case ACK_ADVANCE:
		p->stats.acks++;
		p->stats.polls_ok++;
		evtimer_del(d->timer);
		ack_first(d);
		free(d->since);
		d->since = d->next_batch;
		d->next_batch = NULL;
		body_free(d);
		d->attempt = 0;
		device_set_ps(d, DEV_STATE_POLLING, NULL);
		d->cycle = DEV_BACKOFF;
		device_start(d);
		return;
	case ACK_RELOAD:
		p->stats.nacks++;
		evtimer_del(d->timer);
		req_forget(d);
		body_free(d);
		log_warnx_rl("device %s/%s: nack (%s, committed since \"%s\"); "
		             "reloading since",
		             d->user_id, d->device_id, error ? error : "",
		             since ? since : "");
		if (p->owner.reload_since(d) == -1 && since != NULL) {
			free(d->since);
			d->since = xstrdup(since);
		}
		device_backoff(
		    d, policy_backoff_ms(++d->attempt,
		                         (uint32_t)p->cfg.backoff_base_ms,
		                         (uint32_t)p->cfg.backoff_cap_ms,
		                         rand_u32(UINT32_MAX)));
		return;
	}
}

/* No ack in time: resend the same message (idempotent), never poll on. */
void
device_ack_timeout(struct device *d)
{
	struct poller *p = d->p;

	d->send_attempt++;
	p->stats.resends++;
	log_warnx_rl("device %s/%s: no ack from the accumulator; resending "
	             "(attempt %d)",
	             d->user_id, d->device_id, d->send_attempt);
	if (publish_sync_raw(d, d->since) == -1)
		log_debug("device %s/%s: resend failed", d->user_id,
		          d->device_id);
	arm_ack_timer(d);
}

/* publish.c: an ack arrived; it is about a device we hold, or stale. */
void
device_ack_received(struct poller *p, const struct proto_sync_ack *ack)
{
	struct device *d = device_find(p, ack->user_id, ack->device_id);

	if (d == NULL) {
		log_debug("ingest: ack for %s/%s, not ours", ack->user_id,
		          ack->device_id);
		return;
	}
	device_on_ack(d, ack->ok, ack->since, ack->error);
}

/*
 * publish.c: the accumulator (re)appeared. Whatever it had not
 * acknowledged may be gone with its previous process, so send each
 * pending body again now.
 */
void
device_resend_pending(struct poller *p)
{
	struct device *d;
	size_t n = 0;

	TAILQ_FOREACH(d, &p->devices, entry)
	{
		if (d->cycle != DEV_ACK_WAIT || d->next_batch == NULL)
			continue;
		evtimer_del(d->timer);
		d->send_attempt = 0;
		device_ack_timeout(d);
		n++;
	}
	if (n > 0)
		log_info("ingest: accumulator connected; resent %zu pending "
		         "bodies",
		         n);
}

/* Queues d's poll state for lease.c's next batched flush. */
void
device_mark_dirty(struct device *d)
{
	if (d->is_dirty)
		return;
	d->is_dirty = true;
	TAILQ_INSERT_TAIL(&d->p->dirty, d, dirtyq);
}

static void
timer_cb(evutil_socket_t fd, short what, void *arg)
{
	struct device *d = arg;

	(void)fd;
	(void)what;
	switch (d->cycle) {
	case DEV_BACKOFF:
		device_start(d);
		break;
	case DEV_ACK_WAIT:
		device_ack_timeout(d);
		break;
	default:
		break;
	}
}

/*
 * Another token for the same device (contract 5): poll with it from now
 * on. A body waiting for its ack stays valid and is left alone.
 */
void
device_replace_token(struct device *d, char *token, const char *fp,
                     const char *since)
{
	free(d->token);
	d->token = token;
	snprintf(d->fp, sizeof(d->fp), "%s", fp);
	curl_slist_free_all(d->headers);
	d->headers = NULL;
	d->attempt = 0;
	if (d->cycle == DEV_ACK_WAIT || d->cycle == DEV_WAITING)
		return;
	if (d->cycle == DEV_POLLING) {
		sync_abort(d);
		req_forget(d);
		device_release_slot(d);
	}
	free(d->since);
	d->since = xstrdup(since);
	d->cycle = DEV_BACKOFF;
	device_start(d);
}

static void
device_free(struct device *d)
{
	sync_easy_free(d);
	event_free(d->timer);
	event_free(d->cover_ev);
	body_free(d);
	free(d->key);
	free(d->user_id);
	free(d->device_id);
	if (d->token != NULL)
		memset(d->token, 0, strlen(d->token));
	free(d->token);
	free(d->since);
	free(d);
}

/* Frees the devices dropped since the last round, outside any callback. */
static void
reap(struct poller *p)
{
	struct device *d;

	while ((d = TAILQ_FIRST(&p->dead)) != NULL) {
		TAILQ_REMOVE(&p->dead, d, entry);
		device_free(d);
	}
	p->is_reap_armed = false;
}

static void
reap_cb(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	reap(arg);
}

/*
 * Stops everything the device does (its request, timers, slot, lease
 * bookkeeping, table entry) so that nothing can reach it again, then
 * frees it from a fresh loop round: device_drop runs inside curl's done
 * callback (expiry) and libpq-driven lease callbacks, which may still
 * hold d or its easy handle when we return to them.
 */
void
device_drop(struct device *d)
{
	struct poller *p;

	if (d == NULL)
		return;
	p = d->p;
	if (d->cycle == DEV_WAITING)
		TAILQ_REMOVE(&p->waiting, d, waitq);
	d->cycle = DEV_STOPPED;
	if (d->is_releasing)
		p->nreleasing--;
	sync_abort(d);
	evtimer_del(d->timer);
	evtimer_del(d->cover_ev);
	device_release_slot(d);
	if (d->is_dirty) {
		d->is_dirty = false;
		TAILQ_REMOVE(&p->dirty, d, dirtyq);
	}
	table_remove(d);
	TAILQ_INSERT_TAIL(&p->dead, d, entry);
	if (!p->is_reap_armed &&
	    event_base_once(p->base, -1, EV_TIMEOUT, reap_cb, p, NULL) == 0)
		p->is_reap_armed = true;
	else if (!p->is_reap_armed)
		reap(p); /* cannot defer: no callback of ours is pending */
}
