/*
 * sreq.c: a client request's record (struct sreq) and its lifetime. Each
 * step that may call back later (auth, session, longpoll, a stream's
 * query) holds a reference, so a client hanging up mid-step frees nothing
 * still in use; the last sreq_unref frees the record.
 */
#include <stdlib.h>

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
	free(r->token);
	free(r->user_id);
	free(r->device_id);
	free(r->since_tok);
	free(r->err_msg);
	free(r->req_msg);
	free(r);
}
