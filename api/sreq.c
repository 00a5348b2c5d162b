/*
 * sreq.c: a client request's record (struct sreq) and its lifetime. Each
 * step that may call back later (auth, session, longpoll, a stream's
 * query) holds a reference, so a client hanging up mid-step frees nothing
 * still in use; the last sreq_unref frees the record.
 */
#include <stdlib.h>
#include <strings.h>

#include <event2/keyvalq_struct.h>

#include "api.h"
#include "util.h"

struct sreq *
sreq_new(struct api *api, struct evhttp_request *req)
{
	struct sreq *r = xcalloc(1, sizeof(*r));

	r->api = api;
	r->req = req;
	r->refs = 1;
	r->state = SYNC_PARSE;
	r->start_ms = now_ms();
	r->evcon = evhttp_request_get_connection(req);
	return r;
}

void
sreq_ref(struct sreq *r)
{
	r->refs++;
}

void
sreq_unref(struct sreq *r)
{
	if (--r->refs > 0)
		return;
	if (r->timer != NULL)
		event_free(r->timer);
	for (int i = 0; i < ST_COUNT; i++)
		if (r->out[i] != NULL)
			evbuffer_free(r->out[i]);
	json_object_put(r->delta);
	json_object_put(r->params);
	td_hint_unref(r->td_hint);
	free(r->token);
	free(r->user_id);
	free(r->device_id);
	free(r->since_tok);
	free(r->err_msg);
	free(r->req_msg);
	free(r);
}

/* Bearer token from the Authorization header, or NULL. */
const char *
sreq_bearer(struct evhttp_request *req)
{
	const char *h = evhttp_find_header(evhttp_request_get_input_headers(req),
	    "Authorization");

	if (h == NULL || strncasecmp(h, "Bearer ", 7) != 0)
		return NULL;
	h += 7;
	while (*h == ' ')
		h++;
	return *h != '\0' ? h : NULL;
}

void
sreq_timer_at(struct sreq *r, long long at_ms, event_callback_fn cb,
    void *arg)
{
	long long ms = at_ms - now_ms();
	struct timeval tv;

	if (ms < 0)
		ms = 0;
	tv.tv_sec = ms / 1000;
	tv.tv_usec = (ms % 1000) * 1000;
	if (r->timer == NULL)
		r->timer = evtimer_new(r->api->base, cb, arg);
	evtimer_add(r->timer, &tv);
}
