/*
 * messages.c: GET /rooms/{roomId}/messages, Synapse's pagination. A
 * position in a room is a boundary between two timeline entries. Tokens
 * name it the way Synapse does: "t{depth}-{stream}_..." (topological,
 * as in prev_batch and in our start/end) or "s{stream}_..." (a sync
 * next_batch); depth is the timeline index plus one. Paginating back
 * returns the events before the boundary, newest first; forward, the
 * ones after it. `end` is left out only when the page is empty.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/keyvalq_struct.h>

#include "simhs.h"

#define MESSAGES_MAX_LIMIT 1000 /* Synapse's PaginationConfig MAX_LIMIT */

/* "t{topo}-{stream}" plus the other nine stream parts of now. */
void
messages_token_format(char *buf, size_t len, size_t topo, uint64_t stream,
                      uint64_t now)
{
	unsigned long long p = (unsigned long long)now;

	snprintf(buf, len, "t%zu-%llu_0_%llu_%llu_%llu_1_%llu_%llu_0_1", topo,
	         (unsigned long long)stream, p, p, p, p, p);
}

/* The boundary before event idx: depth idx+1, stream just below it. */
static void
token_before(char *buf, size_t len, struct room *r, size_t idx, uint64_t now)
{
	struct revent *e = r->events.v[idx];

	messages_token_format(buf, len, idx + 1, e->pos - 1, now);
}

/* The boundary after event idx. */
static void
token_after(char *buf, size_t len, struct room *r, size_t idx, uint64_t now)
{
	struct revent *e = r->events.v[idx];

	messages_token_format(buf, len, idx + 1, e->pos, now);
}

/*
 * The boundary a token names in r: the number of timeline entries at or
 * before it. Returns -1 for a token that does not parse.
 */
static int
boundary_parse(struct room *r, const char *tok, size_t *out)
{
	unsigned long long topo, stream;
	uint64_t pos, td;
	struct revent *e;
	char *end, *rest;
	int rc;

	if (tok[0] == 's') {
		if (token_parse(tok, &pos, &td) < 0)
			return -1;
		*out = room_first_after(r, pos);
		return 0;
	}
	if (tok[0] != 't' || tok[1] < '0' || tok[1] > '9')
		return -1;
	topo = strtoull(tok + 1, &end, 10);
	if (*end != '-' || end[1] < '0' || end[1] > '9')
		return -1;
	stream = strtoull(end + 1, &end, 10);
	/* The remaining nine parts must look like a stream token's. */
	rest = xasprintf("s0%s", end);
	rc = token_parse(rest, &pos, &td);
	free(rest);
	if (rc < 0 || topo == 0)
		return -1;
	if (topo > r->events.n) {
		*out = r->events.n;
		return 0;
	}
	e = r->events.v[topo - 1];
	*out = e->pos > stream ? topo - 1 : topo;
	return 0;
}

struct mparams {
	bool is_back;
	long limit;
	bool has_from, has_to;
	size_t from, to;
	struct json_object *filter;
};

static int
messages_int(struct creq *c, const char *v, long *out)
{
	char *end;

	*out = strtol(v, &end, 10);
	if (*v == '\0' || *end != '\0') {
		creq_error(c, 400, "M_INVALID_PARAM",
		           "Query parameter 'limit' must be an integer");
		return -1;
	}
	if (*out < 0) {
		creq_error(c, 400, "M_UNKNOWN", "Limit must be 0 or above");
		return -1;
	}
	if (*out > MESSAGES_MAX_LIMIT)
		*out = MESSAGES_MAX_LIMIT;
	return 0;
}

static int
messages_tokens(struct creq *c, struct room *r, struct evkeyvalq *q,
                struct mparams *mp)
{
	const char *v;

	if ((v = evhttp_find_header(q, "from")) != NULL) {
		if (boundary_parse(r, v, &mp->from) < 0)
			goto bad;
		mp->has_from = true;
	}
	if ((v = evhttp_find_header(q, "to")) != NULL) {
		if (boundary_parse(r, v, &mp->to) < 0)
			goto bad;
		mp->has_to = true;
	}
	return 0;
bad:
	creq_error(c, 400, "M_UNKNOWN", "Invalid stream token");
	return -1;
}

static int
messages_params(struct creq *c, struct room *r, struct evkeyvalq *q,
                struct mparams *mp)
{
	const char *v;

	mp->limit = 10;
	if ((v = evhttp_find_header(q, "dir")) != NULL && strcmp(v, "b") != 0 &&
	    strcmp(v, "f") != 0) {
		creq_error(c, 400, "M_INVALID_PARAM",
		           "Query parameter 'dir' must be one of ['b', 'f']");
		return -1;
	}
	mp->is_back = v != NULL && strcmp(v, "b") == 0;
	if ((v = evhttp_find_header(q, "limit")) != NULL &&
	    messages_int(c, v, &mp->limit) < 0)
		return -1;
	if ((v = evhttp_find_header(q, "filter")) != NULL && v[0] != '\0') {
		mp->filter = json_parse(v, strlen(v));
		if (mp->filter == NULL ||
		    !json_object_is_type(mp->filter, json_type_object)) {
			creq_error(c, 400, "M_NOT_JSON", "Invalid filter JSON");
			return -1;
		}
	}
	return messages_tokens(c, r, q, mp);
}

/* Members of the chunk's senders at its first event (lazy loading). */
static struct json_object *
messages_state(struct room *r, struct ptrvec *chunk, int64_t now)
{
	struct ptrvec st = {0};
	struct json_object *arr;
	struct revent *e, *m;
	size_t i, j;

	room_state_between(r, 0, ((struct revent *)chunk->v[0])->idx + 1, &st);
	arr = json_object_new_array();
	for (i = 0; i < st.n; i++) {
		m = st.v[i];
		if (strcmp(m->type, "m.room.member") != 0)
			continue;
		for (j = 0; j < chunk->n; j++) {
			e = chunk->v[j];
			if (strcmp(e->sender, m->state_key) == 0) {
				json_object_array_add(
				    arr, event_to_json(m, now, true));
				break;
			}
		}
	}
	vec_free(&st, NULL);
	return arr;
}

/* Walk from the boundary in the asked direction; filtered, limited. */
static void
messages_walk(struct room *r, struct mparams *mp, size_t upto,
              struct ptrvec *out)
{
	struct revent *e;
	size_t i;

	for (i = mp->from; (long)out->n < mp->limit;) {
		if (mp->is_back ? i <= upto : i >= upto)
			break;
		e = r->events.v[mp->is_back ? i - 1 : i];
		i = mp->is_back ? i - 1 : i + 1;
		if (filter_allows(mp->filter, e->type, e->sender, r->room_id))
			vec_push(out, e);
	}
}

static struct json_object *
messages_build(struct simhs *ctx, struct room *r, struct mparams *mp,
               const char *from_tok)
{
	struct json_object *o = json_object_new_object(), *arr, *lazy;
	int64_t now = now_ms();
	struct ptrvec chunk = {0};
	size_t i, upto;
	char tok[200];
	struct revent *last;

	upto = mp->has_to ? mp->to : (mp->is_back ? 0 : r->events.n);
	messages_walk(r, mp, upto, &chunk);
	arr = json_object_new_array();
	for (i = 0; i < chunk.n; i++)
		json_object_array_add(arr,
		                      event_to_json(chunk.v[i], now, true));
	json_object_object_add(o, "chunk", arr);
	json_add_str(o, "start", from_tok);
	if (chunk.n > 0) {
		last = chunk.v[chunk.n - 1];
		if (mp->is_back)
			token_before(tok, sizeof(tok), r, last->idx, ctx->pos);
		else
			token_after(tok, sizeof(tok), r, last->idx, ctx->pos);
		json_add_str(o, "end", tok);
	}
	lazy = json_get(mp->filter, "lazy_load_members", json_type_boolean);
	if (chunk.n > 0 && lazy != NULL && json_object_get_boolean(lazy)) {
		arr = messages_state(r, &chunk, now);
		if (json_object_array_length(arr) > 0)
			json_object_object_add(o, "state", arr);
		else
			json_object_put(arr);
	}
	vec_free(&chunk, NULL);
	return o;
}

static void
messages_forbid(struct creq *c, const char *room_id)
{
	char *msg;

	msg = xasprintf("User %s not in room %s, and room previews are "
	                "disabled",
	                c->tok->device->user->user_id, room_id);
	creq_error(c, 403, "M_FORBIDDEN", msg);
	free(msg);
}

/*
 * Who may read: members, and departed members up to their leave
 * (Synapse clamps a backwards walk there). Others get 403.
 */
static int
messages_access(struct creq *c, struct room *r, struct mparams *mp)
{
	const char *uid = c->tok->device->user->user_id;
	struct revent *m = room_state_get(r, "m.room.member", uid);
	const char *ms = event_membership(m);

	if (m != NULL && strcmp(ms, "join") == 0)
		return 0;
	if (m != NULL && strcmp(ms, "leave") == 0) {
		if (mp->is_back && mp->from > m->idx + 1)
			mp->from = m->idx + 1;
		return 0;
	}
	messages_forbid(c, r->room_id);
	return -1;
}

/* "rooms/<roomId>/messages" */
void
messages_handle(struct creq *c)
{
	const char *p = c->path + strlen("rooms/");
	struct mparams mp = {0};
	char *room_id, tok[200];
	const char *from_tok;
	struct evkeyvalq q;
	struct room *r;

	TAILQ_INIT(&q);
	room_id = xasprintf("%.*s", (int)strcspn(p, "/"), p);
	if (c->query != NULL && evhttp_parse_query_str(c->query, &q) < 0) {
		creq_error(c, 400, "M_INVALID_PARAM", "Malformed query string");
		goto out;
	}
	if ((r = room_get(c->ctx, room_id)) == NULL) {
		messages_forbid(c, room_id);
		goto out;
	}
	if (messages_params(c, r, &q, &mp) < 0)
		goto out;
	if (!mp.has_from)
		mp.from = mp.is_back ? r->events.n : 0;
	from_tok = evhttp_find_header(&q, "from");
	if (messages_access(c, r, &mp) < 0)
		goto out;
	if (from_tok == NULL) {
		token_format(tok, sizeof(tok), c->ctx->pos, c->ctx->pos);
		from_tok = tok;
	}
	creq_reply(c, 200, messages_build(c->ctx, r, &mp, from_tok));
out:
	json_object_put(mp.filter);
	evhttp_clear_headers(&q);
	free(room_id);
}
