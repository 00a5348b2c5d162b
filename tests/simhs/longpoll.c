/*
 * longpoll.c: /sync requests waiting for something to happen. Waiters
 * hang off their user; any change a user could see marks the user dirty,
 * and one deferred event re-checks the dirty users' waiters after the
 * current callback (so a send_batch of 1000 events wakes each waiter
 * once). A waiter ends by answering, by its timer, or by its client
 * closing the connection.
 */
#include <stdlib.h>

#include "simhs.h"

struct waiter {
	TAILQ_ENTRY(waiter) entry;
	struct simhs *ctx;
	struct user *user;
	struct creq *c;
	struct sync_params p;
	struct event *timer;
};

static void
waiter_free(struct waiter *w)
{
	TAILQ_REMOVE(&w->user->waiters, w, entry);
	event_free(w->timer);
	json_object_put(w->p.filter);
	w->ctx->nwaiters--;
	free(w);
}

static void
waiter_answer(struct waiter *w, struct evbuffer *resp)
{
	creq_unhold(w->c);
	creq_reply_buf(w->c, 200, resp);
	waiter_free(w);
}

static void
waiter_close_cb(struct evhttp_connection *evcon, void *arg)
{
	struct waiter *w = arg;

	(void)evcon;
	log_debug(w->ctx, "sync: %s: client went away while waiting",
	          w->user->user_id);
	creq_abort(w->c);
	waiter_free(w);
}

static void
waiter_timeout_cb(evutil_socket_t fd, short what, void *arg)
{
	struct waiter *w = arg;
	bool has_data;

	(void)fd;
	(void)what;
	waiter_answer(w,
	              sync_build(w->ctx, w->c->tok->device, &w->p, &has_data));
}

/* Answer the user's waiters that now have something to see. */
static void
longpoll_check(struct simhs *ctx, struct user *u)
{
	struct waiter *w, *next;
	struct evbuffer *resp;
	bool has_data;

	for (w = TAILQ_FIRST(&u->waiters); w != NULL; w = next) {
		next = TAILQ_NEXT(w, entry);
		resp = sync_build(ctx, w->c->tok->device, &w->p, &has_data);
		if (has_data)
			waiter_answer(w, resp);
		else
			evbuffer_free(resp);
	}
}

static void
longpoll_wake_cb(evutil_socket_t fd, short what, void *arg)
{
	struct simhs *ctx = arg;
	struct ptrvec dirty = ctx->dirty;
	struct user *u;
	size_t i;

	(void)fd;
	(void)what;
	ctx->dirty = (struct ptrvec){0};
	for (i = 0; i < dirty.n; i++) {
		u = dirty.v[i];
		u->is_dirty = false;
		longpoll_check(ctx, u);
	}
	vec_free(&dirty, NULL);
}

void
longpoll_init(struct simhs *ctx)
{
	ctx->wake_ev = event_new(ctx->base, -1, 0, longpoll_wake_cb, ctx);
	if (ctx->wake_ev == NULL) {
		log_warnx("event_new failed");
		exit(1);
	}
}

/* Something u may see changed: re-check its waiters soon. */
void
longpoll_touch(struct simhs *ctx, struct user *u)
{
	if (u->is_dirty || TAILQ_EMPTY(&u->waiters))
		return;
	u->is_dirty = true;
	vec_push(&ctx->dirty, u);
	if (ctx->dirty.n == 1)
		event_active(ctx->wake_ev, EV_TIMEOUT, 0);
}

/* Park c (an authenticated /sync with nothing to say yet). */
void
longpoll_add(struct creq *c, const struct sync_params *p)
{
	struct simhs *ctx = c->ctx;
	struct waiter *w;
	struct timeval tv;

	w = xcalloc(1, sizeof(*w));
	w->ctx = ctx;
	w->c = c;
	w->p = *p;
	w->user = c->tok->device->user;
	if ((w->timer = evtimer_new(ctx->base, waiter_timeout_cb, w)) == NULL) {
		json_object_put(w->p.filter);
		free(w);
		creq_error(c, 500, "M_UNKNOWN", "Internal server error");
		return;
	}
	tv.tv_sec = p->timeout_ms / 1000;
	tv.tv_usec = (p->timeout_ms % 1000) * 1000;
	evtimer_add(w->timer, &tv);
	TAILQ_INSERT_TAIL(&w->user->waiters, w, entry);
	ctx->nwaiters++;
	creq_hold(c, waiter_close_cb, w);
}

/* On exit: answer everyone with what they have, then forget them. */
void
longpoll_shutdown(struct simhs *ctx)
{
	struct waiter *w;
	struct user *u;
	size_t i;

	for (i = 0; i < ctx->user_list.n; i++) {
		u = ctx->user_list.v[i];
		while ((w = TAILQ_FIRST(&u->waiters)) != NULL) {
			creq_unhold(w->c);
			creq_error(w->c, 503, "M_UNKNOWN",
			           "Server shutting down");
			waiter_free(w);
		}
	}
	vec_free(&ctx->dirty, NULL);
	if (ctx->wake_ev != NULL)
		event_free(ctx->wake_ev);
	ctx->wake_ev = NULL;
}
