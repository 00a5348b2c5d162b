/*
 * ss_req.c: a sliding sync request (both endpoints) as one state machine,
 * in one state of enum ss_state (ss.h) at a time: auth (auth.c) -> the
 * pos, body and extensions checked -> the connection loaded or created
 * (ss_conn.c) -> held while the device's initial sync is not stored ->
 * rounds (ss_rooms.c; a new connection of a device not held is created
 * during the first round's lists): with a pos and nothing new, the request
 * waits for a notice concerning the connection (longpoll.c), its timeout, or
 * the client hanging up -> the response saved as the connection's unconfirmed
 * one -> written in the request's dialect (ss_proto.c). The request is a
 * struct sreq too (r->ss points here), so auth, the waiter registry and
 * the references are the ones the v3 path uses.
 */
#include <sys/queue.h>

#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/http.h>

#include "crypto.h"
#include "json_util.h"
#include "pg.h"
#include "pg_lit.h"
#include "proto.h"
#include "ss.h"
#include "ss_ext.h"
#include "util.h"

static void ss_step(struct ss_req *s, int ev);
static void done_cb(void *arg, int status, const char *errcode,
                    const char *msg);
static void round_start(struct ss_req *s);
static void device_check(struct ss_req *s);
static void initial_hold(struct ss_req *s);
static void sticky_merge(struct ss_req *s);

enum {
	EV_DONE,  /* what the state waited for completed */
	EV_WAKE,  /* longpoll.c: a notice concerns the connection */
	EV_TIMER, /* the long-poll or initial-sync deadline */
};

static const char *const state_names[] = {
    [SS_ST_AUTH] = "auth",       [SS_ST_CONN] = "conn",
    [SS_ST_DEVICE] = "device",   [SS_ST_ROUND] = "round",
    [SS_ST_WAITING] = "waiting", [SS_ST_SAVE] = "save",
    [SS_ST_DONE] = "done",
};

const char *
ss_state_name(enum ss_state st)
{
	if ((unsigned)st >= sizeof(state_names) / sizeof(state_names[0]))
		return "?";
	return state_names[st];
}

/*
 * No extension configured, none on before: no extension has news of its
 * own (their blob is "{}" then, ss_ext.c).
 */
static bool
is_ext_none(const struct ss_req *s)
{
	return json_object_object_length(s->ext) == 0 &&
	       (s->conn.ext_state == NULL ||
	        strcmp(s->conn.ext_state, "{}") == 0);
}

static void
ss_free(struct ss_req *s)
{
	ss_rooms_clear(s);
	map_free(&s->scope, NULL);
	ss_request_free(&s->q);
	ss_conn_free(&s->conn);
	json_object_put(s->subs);
	json_object_put(s->ext);
	free(s);
}

/* Ends our part in the request (answered or the client gone). */
static void
ss_finish(struct ss_req *s)
{
	struct sreq *r = s->r;

	if (s->state == SS_ST_DONE)
		return;
	s->state = SS_ST_DONE;
	r->state = SYNC_REPLIED; /* late completions see it and drop */
	if (r->timer != NULL)
		evtimer_del(r->timer);
	if (r->probe != NULL) {
		event_free(r->probe);
		r->probe = NULL;
	}
	lp_unwait(s->api, r);
	if (!r->is_gone && r->evcon != NULL)
		http_conn_closecb(s->api, r->evcon, NULL, NULL);
	r->ss = NULL;
	ss_free(s);
	sreq_unref(r);
}

static void
ss_fail(struct ss_req *s, int status, const char *errcode, const char *msg)
{
	struct sreq *r = s->r;

	if (s->state == SS_ST_DONE)
		return;
	s->api->stats.errors++;
	if (!r->is_gone)
		http_error_sreq(r, status, errcode, msg);
	ss_finish(s);
}

static void
ss_reply(struct ss_req *s, const struct ss_pos *pos)
{
	struct sreq *r = s->r;
	struct evbuffer *b;

	if (r->is_gone) {
		ss_finish(s);
		return;
	}
	ss_pos_format(pos, s->api->cfg.secret, r->user_id, r->device_id,
	              s->resp.pos);
	if (s->ext_ctx.out != NULL && evbuffer_get_length(s->ext_ctx.out) > 0) {
		s->resp.extensions = s->ext_ctx.out;
		s->ext_ctx.out = NULL;
	}
	b = evbuffer_new();
	ss_write(s->q.dialect, &s->q, &s->resp, b);
	evhttp_add_header(evhttp_request_get_output_headers(r->req),
	                  "Content-Type", "application/json");
	evhttp_send_reply(r->req, 200, "OK", b);
	evbuffer_free(b);
	ss_hop(s, PROM_SS_WRITE);
	if (r->woken_ms != 0) {
		s->api->stats.lat[s->api->stats.nlat++ % 4096] =
		    (double)(now_ms() - r->woken_ms);
		prom_wake(s->api, now_ms() - r->woken_ms);
	}
	ss_finish(s);
}

/*
 * Times the steps of a round a notice woke (none of a first round or one
 * at the timeout: hop_us is 0 then), so the api tells where a message's
 * way to a long-polling connection goes (tests/bench/bench_ss_e2e.sh).
 */
void
ss_hop(struct ss_req *s, enum prom_ss_hop h)
{
	long long t;

	if (s->hop_us == 0)
		return;
	t = now_us();
	prom_ss_hop(s->api, h, t - s->hop_us);
	s->hop_us = h == PROM_SS_IDLE || h == PROM_SS_WRITE ? 0 : t;
}

static void
close_cb(struct evhttp_connection *evcon, void *arg)
{
	struct ss_req *s = arg;

	(void)evcon;
	log_debug("ss: client went away (%s)", ss_state_name(s->state));
	s->r->is_gone = true;
	s->r->req = NULL;
	ss_finish(s);
}

static void
probe_gone(struct sreq *r)
{
	if (r->ss != NULL)
		ss_finish(r->ss);
}

static void
timer_cb(evutil_socket_t fd, short what, void *arg)
{
	struct ss_req *s = arg;

	(void)fd;
	(void)what;
	s->r->is_timed_out = true;
	if (s->state == SS_ST_WAITING || s->state == SS_ST_DEVICE)
		ss_step(s, EV_TIMER);
}

static void
timer_at(struct ss_req *s, long long at_ms)
{
	sreq_timer_at(s->r, at_ms, timer_cb, s);
}

static void
wake_cb(void *arg)
{
	struct ss_req *s = ((struct sreq *)arg)->ss;

	if (s != NULL)
		ss_step(s, EV_WAKE);
}

/*
 * What the connection waits for: the user's rooms (any room they are
 * joined to, their memberships: longpoll.c's room-list interest) and what
 * the extensions name.
 */
static void
interest_set(struct ss_req *s)
{
	struct sreq *r = s->r;

	r->ss_wake = ss_ext_wake(s->ext);
	r->p.has_list = true;
	r->p.has_to_device = (r->ss_wake & SS_WAKE_TO_DEVICE) != 0;
}

/*
 * The rooms the round just done had in its windows and subscriptions:
 * while the connection waits, a change that concerns only rooms it shows
 * (its user's unread counts) wakes it only for these. The next round
 * starts from the same lists and subscriptions.
 */
static void
scope_keep(struct ss_req *s)
{
	map_free(&s->scope, NULL);
	map_init(&s->scope);
	for (int i = 0; i < s->nrooms; i++)
		map_put_i64(&s->scope, s->rooms[i].id, 1);
}

/*
 * Waits from s->at for a notice, or answers at the timeout; -1 (nothing
 * done) when too many requests wait.
 */
static int
wait_from(struct ss_req *s)
{
	struct sreq *r = s->r;

	r->wait_from = s->at;
	interest_set(s);
	if (lp_wait(s->api, r, wake_cb, r) == -1)
		return -1;
	/* a wake-up runs from the loop, after this */
	s->state = SS_ST_WAITING;
	ss_rooms_clear(s);
	if (r->is_waiting)
		timer_at(s, r->deadline_ms);
	return 0;
}

/* Nothing new: wait for a notice, or answer at the timeout. */
static void
wait_start(struct ss_req *s)
{
	const struct ss_pos same = {s->conn.id, s->conn.gen};

	scope_keep(s);
	if (wait_from(s) == -1) {
		/* answer now, as the v3 path does: another round would spin */
		log_warnx_rl("ss: too many waiting requests");
		ss_reply(s, &same);
	}
}

/*
 * Whether the extensions of a request that continues l have nothing a
 * round would find at once: the same extensions as then (none, or the
 * same configs: the keys and the sticky merge compared them), and
 * to_device, when on, acknowledging all l sent (its since is l's
 * next_batch) with no more than one page pending then. Everything else
 * they send (to-device messages, device lists and key counts, account
 * data, typing, receipts) comes with a notice after l's position, which
 * longpoll.c replays. The acknowledgement itself waits for the round
 * that answers (a wake-up or the timeout): a message is deleted a little
 * later, never sent twice, as the retried since keeps it anyway.
 */
static bool
ext_may_wait(const struct ss_req *s, const struct ss_last *l)
{
	struct ss_ext_cfg x;

	if (is_ext_none(s))
		return !l->is_ext;
	if (!l->is_ext || l->is_td_full)
		return false;
	ss_ext_cfg_load(s->ext, &x);
	return !x.x[SX_TO_DEVICE].is_on ||
	       (l->td_next >= 0 && x.td_since == l->td_next);
}

/*
 * A request that continues the response this api saved last on its
 * connection, the same request but for its pos (struct ss_last), would
 * run a round that only finds what the notices since that response say:
 * it waits from that response's position at once (longpoll.c replays the
 * notices it missed) instead of reading its lists first, and at the
 * timeout with nothing notified answers the same pos and counts without
 * a round either. With extensions (ext_may_wait) the timeout still runs
 * the round: its answer carries what they always say (key counts, the
 * to_device next_batch). 0, or -1: run a round.
 */
static int
wait_early(struct ss_req *s)
{
	struct sreq *r = s->r;
	const struct ss_last *l;

	if (s->q.key == NULL || s->q.pos == NULL || r->timeout_ms == 0 ||
	    !(r->is_initial_done || s->api->cfg.initial_wait_ms == 0) ||
	    s->is_sticky_changed || (l = ss_conn_last(s->conn.id)) == NULL ||
	    l->gen != s->conn.gen || l->at != s->conn.pos ||
	    strcmp(l->key, s->q.key) != 0 || !ext_may_wait(s, l))
		return -1;
	map_free(&s->scope, NULL);
	map_init(&s->scope);
	for (int i = 0; i < l->nrooms; i++)
		map_put_i64(&s->scope, l->rooms[i], 1);
	s->at = s->conn.pos;
	if (wait_from(s) == -1)
		return -1;
	s->is_early = true;
	ss_conn_last_counts(l, &s->resp);
	return 0;
}

/* The round's outcome: save and answer, or wait for something new. */
static void
round_done(struct ss_req *s)
{
	struct sreq *r = s->r;
	const struct ss_pos same = {s->conn.id, s->conn.gen};
	bool is_state;

	if (s->is_window_short) {
		/* the window lacks what this round needs: wait for the rest */
		ss_rooms_clear(s);
		initial_hold(s);
		return;
	}
	is_state = s->ext_ctx.new_state != NULL &&
	           (s->conn.ext_state == NULL ||
	            strcmp(s->ext_ctx.new_state, s->conn.ext_state) != 0);

	if (s->has_data || s->is_sticky_changed || is_state || s->conn.is_new) {
		s->state = SS_ST_SAVE;
		ss_conn_save(s, done_cb, r);
		return;
	}
	if (r->is_timed_out || r->timeout_ms == 0 ||
	    now_ms() >= r->deadline_ms || s->api->is_stopping) {
		ss_reply(s, &same); /* nothing changed: the same pos */
		return;
	}
	ss_hop(s, PROM_SS_IDLE);
	wait_start(s);
}

static void
round_start(struct ss_req *s)
{
	s->state = SS_ST_ROUND;
	s->r->rounds++;
	ss_rooms_run(s, false, done_cb, s->r);
}

/*
 * A request without pos whose device is not held (device_check would
 * start the round at once): the connection is created during the
 * round's first step, not before it (ss_rooms_run). What it starts with
 * is known: no subscriptions, no extension configs.
 */
static bool
round_start_new(struct ss_req *s)
{
	struct sreq *r = s->r;

	if (s->q.pos != NULL ||
	    !(r->is_initial_done || s->api->cfg.initial_wait_ms == 0))
		return false;
	s->conn.subs = json_object_new_object();
	s->conn.ext = json_object_new_object();
	sticky_merge(s);
	s->state = SS_ST_ROUND;
	r->rounds++;
	ss_rooms_run(s, true, done_cb, r);
	return true;
}

/* Whether a list has any filter. */
static bool
is_filtered(const struct ss_filters *f)
{
	return f->is_dm != SS_UNSET || f->is_invite != SS_UNSET ||
	       f->is_encrypted != SS_UNSET || f->has_spaces ||
	       f->has_room_types || f->has_not_room_types || f->has_tags ||
	       f->has_not_tags;
}

/*
 * Whether a request could be answered from the window of an initial sync
 * still being stored (docs/DESIGN.md, "The first window first"): each
 * list has ranges (a list of all rooms needs them all) and no filter (its
 * count would need the rooms of the rest). The round checks the rest
 * (ss_rooms.c window_list_fits).
 */
static bool
window_may_fit(const struct ss_req *s)
{
	for (int i = 0; i < s->q.nlists; i++)
		if (s->q.lists[i].nranges == 0 || is_filtered(&s->q.lists[i].f))
			return false;
	return true;
}

/* Hold until the poller's initial sync is stored (bounded). */
static void
initial_hold(struct ss_req *s)
{
	struct sreq *r = s->r;

	s->state = SS_ST_DEVICE;
	if (r->device_notices_at != s->api->device_notices) {
		/* one may be this device's initial sync, already walked past */
		device_check(s);
		return;
	}
	r->is_initial_wait = true;
	if (lp_wait(s->api, r, wake_cb, r) == -1) {
		r->is_initial_wait = false;
		s->is_window = false;
		round_start(s);
		return;
	}
	if (r->timer == NULL || !evtimer_pending(r->timer, NULL))
		timer_at(s, r->start_ms + s->api->cfg.initial_wait_ms);
}

static void device_check(struct ss_req *);

/* auth_rejected: 401, or a newer token than the one refused goes on. */
static void
rejected_cb(void *arg, int status, const char *errcode, const char *msg)
{
	struct sreq *r = arg;
	struct ss_req *s = r->ss;

	if (s == NULL)
		return;
	if (status != 0) {
		ss_fail(s, status, errcode, msg);
		return;
	}
	r->is_revoked = false;
	s->is_early = false;
	device_check(s);
}

/*
 * The homeserver refused the device's token: auth.c says whether it was
 * this one, and softly; wake-ups and timers are ignored meanwhile
 * (SS_ST_AUTH).
 */
static void
token_rejected(struct ss_req *s)
{
	s->state = SS_ST_AUTH;
	auth_rejected(s->api, s->r, rejected_cb, s->r);
}

static void
device_cb(PGresult *res, void *arg)
{
	struct sreq *r = arg;
	struct ss_req *s = r->ss;

	if (sreq_replied(r) || s == NULL)
		goto out;
	if (res == NULL || PQntuples(res) != 1) {
		ss_fail(s, res ? 401 : 503,
		        res ? "M_UNKNOWN_TOKEN" : "M_UNKNOWN",
		        res ? "unknown device" : "database unavailable");
		goto out;
	}
	if (dev_state_parse(PQgetvalue(res, 0, 1)) == DEV_STATE_EXPIRED) {
		token_rejected(s);
		goto out;
	}
	s->is_window = false;
	if (PQgetvalue(res, 0, 0)[0] == 't') {
		r->is_initial_done = true;
		auth_forget(s->api, r->user_id, r->device_id, false);
		round_start(s);
		goto out;
	}
	if (strtoll(PQgetvalue(res, 0, 2), NULL, 10) > 0 &&
	    !PQgetisnull(res, 0, 3) && window_may_fit(s)) {
		s->is_window = true;
		s->window_cut = strtoll(PQgetvalue(res, 0, 3), NULL, 10);
		round_start(s);
		goto out;
	}
	initial_hold(s);
out:
	sreq_unref(r);
}

/* The device gate of the v3 path: hold a device not synced yet. */
static void
device_check(struct ss_req *s)
{
	struct sreq *r = s->r;
	const char *p[2];

	s->state = SS_ST_DEVICE;
	if (r->is_initial_done || s->api->cfg.initial_wait_ms == 0) {
		s->is_window = false;
		round_start(s);
		return;
	}
	r->wait_from = s->api->cur_pos;
	r->device_notices_at = s->api->device_notices;
	p[0] = r->user_id;
	p[1] = r->device_id;
	sreq_ref(r);
	sql_query(s->api, Q_DEVICE_STATE, p, device_cb, r);
}

static bool
json_same(struct json_object *a, struct json_object *b)
{
	return json_object_equal(a, b) != 0;
}

/*
 * Whether room_subscriptions is the client's complete set rather than
 * additions: it re-sends a room already subscribed. matrix-rust-sdk sends
 * its whole set on every request and closes a room by leaving it out (it
 * has no unsubscribe_rooms); matrix-js-sdk sends a new subscription once
 * and re-sends all of them only to change their config, which a complete
 * set also serves. A set that names no stored room (js-sdk's next room)
 * adds to the stored ones.
 */
static bool
subs_is_complete(struct json_object *stored, struct json_object *given)
{
	struct json_object_iterator it, end;

	if (given == NULL)
		return false;
	end = json_object_iter_end(given);
	for (it = json_object_iter_begin(given);
	     !json_object_iter_equal(&it, &end); json_object_iter_next(&it))
		if (json_object_object_get_ex(
		        stored, json_object_iter_peek_name(&it), NULL))
			return true;
	return false;
}

/*
 * The sticky subscriptions after this request: the stored ones (none if
 * this request's are the complete set), this request's replacing per room
 * and moved last (the most recently given), minus unsubscribe_rooms;
 * beyond SS_MAX_STICKY_SUBS the least recently given go, so a connection
 * cannot pile up rooms that every round (each long-poll wake-up) reads
 * and every save writes back.
 */
static struct json_object *
subs_merge(struct json_object *stored, struct json_object *given,
           char *const *unsub, int nunsub)
{
	struct json_object *all = json_object_new_object(), *kept, *v;
	int drop;

	if (!subs_is_complete(stored, given)) {
		json_object_object_foreach(stored, id, cfg)
		    json_object_object_add(all, id, json_object_get(cfg));
	}
	if (given != NULL) {
		json_object_object_foreach(given, nid, ncfg)
		{
			json_object_object_del(all, nid);
			json_object_object_add(all, nid, json_object_get(ncfg));
		}
	}
	for (int i = 0; i < nunsub; i++)
		if (json_object_object_get_ex(all, unsub[i], &v))
			json_object_object_del(all, unsub[i]);
	drop = json_object_object_length(all) - SS_MAX_STICKY_SUBS;
	if (drop <= 0)
		return all;
	kept = json_object_new_object();
	json_object_object_foreach(all, kid, kcfg)
	{
		if (drop-- > 0)
			continue;
		json_object_object_add(kept, kid, json_object_get(kcfg));
	}
	json_object_put(all);
	return kept;
}

/*
 * The sticky parts after this request: subscriptions (subs_merge) and
 * extension configs (merged field by field).
 */
static void
sticky_merge(struct ss_req *s)
{
	s->subs =
	    subs_merge(s->conn.subs, s->q.subs_json, s->q.unsub, s->q.nunsub);
	s->ext = json_object_new_object();
	ss_ext_merge(s->ext, s->conn.ext);
	ss_ext_merge(s->ext, s->q.extensions);
	s->is_sticky_changed = !json_same(s->subs, s->conn.subs) ||
	                       !ss_ext_sticky_same(s->ext, s->conn.ext);
}

/* Checks once the token is known (a client learns that first). */
static int
after_auth(struct ss_req *s)
{
	struct sreq *r = s->r;
	struct ss_parse_err e;

	if (s->is_bad && strcmp(s->perr.errcode, "M_MISSING_TOKEN") != 0) {
		ss_fail(s, s->perr.status, s->perr.errcode, s->perr.msg);
		return -1;
	}
	if (s->q.pos != NULL &&
	    ss_pos_parse(s->q.pos, s->api->cfg.secret, r->user_id, r->device_id,
	                 &s->pos) == -1) {
		ss_fail(s, 400, "M_UNKNOWN_POS",
		        "unknown or expired pos: start a new connection");
		return -1;
	}
	if (ss_ext_check(s->q.extensions, &e) == -1) {
		ss_fail(s, e.status ? e.status : 400, e.errcode, e.msg);
		return -1;
	}
	/* without a pos there is nothing to wait for (Synapse too) */
	r->timeout_ms =
	    s->q.pos != NULL && s->q.timeout_ms > 0 ? s->q.timeout_ms : 0;
	r->deadline_ms = r->start_ms + r->timeout_ms;
	return 0;
}

static void
save_done(struct ss_req *s)
{
	const struct ss_pos next = {s->conn.id, s->conn.saved_gen};

	if (s->q.key != NULL)
		ss_conn_keep(s, !is_ext_none(s));
	ss_reply(s, &next);
}

/* The one place a request moves on (stale events are dropped). */
static void
ss_step(struct ss_req *s, int ev)
{
	struct sreq *r = s->r;
	const struct ss_pos same = {s->conn.id, s->conn.gen};

	switch (s->state) {
	case SS_ST_AUTH:
		if (ev != EV_DONE || after_auth(s) == -1 || round_start_new(s))
			break;
		s->state = SS_ST_CONN;
		ss_conn_open(s, done_cb, r);
		break;
	case SS_ST_CONN:
		if (ev != EV_DONE)
			break;
		sticky_merge(s);
		if (wait_early(s) == -1)
			device_check(s);
		break;
	case SS_ST_DEVICE:
		if (ev == EV_WAKE || ev == EV_TIMER) {
			lp_unwait(s->api, r);
			r->is_initial_wait = false;
			r->is_timed_out = false;
			if (ev == EV_TIMER)
				log_info("ss: %s/%s: initial sync not stored "
				         "in time",
				         r->user_id, r->device_id);
			if (ev == EV_WAKE && !r->is_initial_done) {
				device_check(s);
			} else {
				s->is_window = false; /* what is stored */
				round_start(s);
			}
		}
		break;
	case SS_ST_ROUND:
		if (ev == EV_DONE)
			round_done(s);
		break;
	case SS_ST_WAITING:
		if (ev == EV_WAKE && r->is_revoked)
			token_rejected(s);
		else if (ev == EV_WAKE) {
			s->is_early = false;
			s->hop_us = r->woken_us;
			ss_hop(s, PROM_SS_WAKE);
			round_start(s);
		} else if (ev == EV_TIMER && s->is_early && is_ext_none(s)) {
			lp_unwait(s->api, r);
			ss_reply(s, &same); /* wait_early: nothing changed */
		} else if (ev == EV_TIMER) {
			s->is_early = false;
			lp_unwait(s->api, r);
			round_start(s); /* answers: is_timed_out is set */
		}
		break;
	case SS_ST_SAVE:
		ss_hop(s, PROM_SS_SAVE);
		if (ev == EV_DONE)
			save_done(s);
		break;
	case SS_ST_DONE:
		break;
	}
}

/* auth.c, ss_conn.c, ss_rooms.c: 0 moves on, anything else answers. */
static void
done_cb(void *arg, int status, const char *errcode, const char *msg)
{
	struct ss_req *s = ((struct sreq *)arg)->ss;

	if (s == NULL)
		return;
	if (status != 0) {
		ss_fail(s, status, errcode, msg);
		return;
	}
	ss_step(s, EV_DONE);
}

/*
 * Both endpoints: the body (bounded) and the query parse first, but a
 * refusal waits until the token is known, as on the v3 path (a client
 * learns it is not authenticated before what is wrong with its body).
 */
static void
ss_handle(struct api *api, struct evhttp_request *req, enum ss_dialect d)
{
	struct evbuffer *in = evhttp_request_get_input_buffer(req);
	const struct evhttp_uri *uri = evhttp_request_get_evhttp_uri(req);
	size_t len = evbuffer_get_length(in);
	struct ss_req *s;
	const char *tok;

	api->stats.requests++;
	s = xcalloc(1, sizeof(*s));
	s->api = api;
	s->r = sreq_new(api, req);
	s->r->ss = s;
	s->state = SS_ST_AUTH;
	if ((tok = sreq_bearer(req)) == NULL) {
		ss_fail(s, 401, "M_MISSING_TOKEN",
		        "missing access token (Authorization: Bearer)");
		return;
	}
	if ((long long)len > api->cfg.max_body) {
		ss_fail(s, 413, "M_TOO_LARGE", "request body too large");
		return;
	}
	if (ss_parse(d, (const char *)evbuffer_pullup(in, -1), len,
	             evhttp_uri_get_query(uri), api->cfg.max_timeout_ms, &s->q,
	             &s->perr) == -1) {
		s->is_bad = true;
		/* ?access_token= is refused before anything else */
		if (strcmp(s->perr.errcode, "M_MISSING_TOKEN") == 0) {
			ss_fail(s, s->perr.status, s->perr.errcode,
			        s->perr.msg);
			return;
		}
	}
	s->r->token = xstrdup(tok);
	token_hash(s->r->token, strlen(s->r->token), s->r->token_hash);
	if (s->r->evcon != NULL) {
		http_conn_closecb(api, s->r->evcon, close_cb, s);
		http_probe_start(s->r, probe_gone);
	}
	auth_resolve(api, s->r, done_cb, s->r);
}

void
ss_handle_synapse(struct api *api, struct evhttp_request *req)
{
	ss_handle(api, req, SS_SYNAPSE);
}

void
ss_handle_v4(struct api *api, struct evhttp_request *req)
{
	ss_handle(api, req, SS_V4);
}
