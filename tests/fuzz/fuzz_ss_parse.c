/*
 * libFuzzer target for the sliding sync parser (api/ss_proto.c). The
 * first byte picks the dialect and splits off a query string (Synapse:
 * pos/timeout/set_presence there); the rest is the body. Checks: no
 * crash; a refusal has a 4xx status, an errcode and a message; an
 * accepted request is within the limits (lists, subscriptions, ranges,
 * timeline_limit, timeout); the configs combine, match and print; the
 * writer's output of an empty response is JSON. Seed corpus:
 * tests/fuzz/corpus/ss_parse/.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "json_util.h"
#include "ss.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void
check_config(const struct ss_room_config *c)
{
	struct ss_room_config m = {0};
	char *s;

	if (c->timeline_limit < 0 || c->timeline_limit > SS_TIMELINE_MAX ||
	    c->rs.ninclude > SS_MAX_RS || c->rs.nexclude > SS_MAX_RS)
		abort();
	ss_room_config_merge(&m, c);
	ss_room_config_merge(&m, c);
	if (m.timeline_limit != c->timeline_limit)
		abort();
	(void)ss_rs_matches(&m.rs, "m.room.member", "@a:x", "@a:x");
	s = ss_rs_canonical(&m.rs);
	free(s);
	ss_room_config_free(&m);
}

static void
check_written(const struct ss_request *q)
{
	struct ss_response resp = {0};
	struct evbuffer *b = evbuffer_new();
	struct json_object *o;

	resp.ncounts = q->nlists;
	resp.counts = calloc((size_t)q->nlists + 1, sizeof(int64_t));
	ss_write(q->dialect, q, &resp, b);
	o = json_parse_bounded((const char *)evbuffer_pullup(b, -1),
	                       evbuffer_get_length(b), NULL);
	if (o == NULL)
		abort();
	json_object_put(o);
	evbuffer_free(b);
	ss_response_free(&resp);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	enum ss_dialect d;
	struct ss_request q;
	struct ss_parse_err e;
	char *query = NULL;
	const uint8_t *nl;
	size_t qlen = 0;

	if (size < 1)
		return 0;
	d = (data[0] & 1) ? SS_V4 : SS_SYNAPSE;
	data++;
	size--;
	if ((nl = memchr(data, '\n', size)) != NULL && nl - data < 512) {
		qlen = (size_t)(nl - data);
		query = strndup((const char *)data, qlen);
		data += qlen + 1;
		size -= qlen + 1;
	}
	if (ss_parse(d, (const char *)data, size, query, 30000, &q, &e) == -1) {
		if (e.status < 400 || e.status > 499 || e.errcode == NULL ||
		    e.msg[0] == '\0')
			abort();
		free(query);
		return 0;
	}
	if (q.nlists > SS_MAX_LISTS || q.nsubs > SS_MAX_SUBS ||
	    q.timeout_ms > 30000 || q.conn_id == NULL)
		abort();
	for (int i = 0; i < q.nlists; i++) {
		check_config(&q.lists[i].cfg);
		for (int j = 0; j < q.lists[i].nranges; j++)
			if (q.lists[i].ranges[j].lo < 0 &&
			    q.lists[i].nranges != 1)
				abort();
	}
	for (int i = 0; i < q.nsubs; i++)
		check_config(&q.subs[i].cfg);
	if (q.extensions != NULL) {
		struct json_object *st = json_object_new_object();
		ss_ext_merge(st, q.extensions);
		json_object_put(st);
	}
	check_written(&q);
	ss_request_free(&q);
	free(query);
	return 0;
}
