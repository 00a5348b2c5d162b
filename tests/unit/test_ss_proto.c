/*
 * Sliding sync on the wire (api/ss_proto.c): both dialects parse into the
 * same request, each bad field is refused with its Matrix error, limits
 * hold, room configs combine as the MSC says, each dialect writes its own
 * field names, and a pos is bound to its device.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "json_util.h"
#include "ss.h"
#include "util.h"

static int
parse(enum ss_dialect d, const char *body, const char *query,
      struct ss_request *q, struct ss_parse_err *e)
{
	return ss_parse(d, body, strlen(body), query, 30000, q, e);
}

/* body must be refused with errcode and a message mentioning what */
static void
refused(enum ss_dialect d, const char *body, const char *query,
        const char *errcode, const char *what)
{
	struct ss_request q;
	struct ss_parse_err e;

	if (parse(d, body, query, &q, &e) == 0)
		fail_msg("accepted: %s", body);
	assert_int_equal(e.status, 400);
	assert_string_equal(e.errcode, errcode);
	if (strstr(e.msg, what) == NULL)
		fail_msg("message '%s' does not name '%s'", e.msg, what);
}

static void
test_synapse(void **state)
{
	struct ss_request q;
	struct ss_parse_err e;
	const char *body =
	    "{\"lists\":{\"all\":{\"ranges\":[[0,9],[20,29]],"
	    "\"sort\":[\"by_recency\"],\"timeline_limit\":1,\"required_state\":"
	    "[[\"m.room.name\",\"\"],[\"*\",\"*\"],[\"m.room.member\",\"$"
	    "LAZY\"],"
	    "[\"m.room.member\",\"$ME\"]],\"filters\":{\"is_dm\":true,"
	    "\"is_invite\":false,\"room_types\":[null,\"m.space\"]}}},"
	    "\"room_subscriptions\":{\"!a:x\":{\"timeline_limit\":500}},"
	    "\"unsubscribe_rooms\":[\"!b:x\"],\"extensions\":{\"e2ee\":"
	    "{\"enabled\":true}},\"unknown\":1}";

	(void)state;
	assert_int_equal(
	    parse(SS_SYNAPSE, body, "pos=c1_2_x&timeout=99999", &q, &e), 0);
	assert_string_equal(q.pos, "c1_2_x");
	assert_int_equal(q.timeout_ms, 30000);
	assert_string_equal(q.conn_id, "");
	assert_int_equal(q.nlists, 1);
	assert_string_equal(q.lists[0].key, "all");
	assert_int_equal(q.lists[0].nranges, 2);
	assert_int_equal(q.lists[0].ranges[1].lo, 20);
	assert_int_equal(q.lists[0].cfg.timeline_limit, 1);
	assert_true(q.lists[0].cfg.rs.lazy_members);
	assert_int_equal(q.lists[0].cfg.rs.ninclude, 3);
	assert_null(q.lists[0].cfg.rs.include[1].type);
	assert_null(q.lists[0].cfg.rs.include[1].state_key);
	assert_int_equal(q.lists[0].f.is_dm, SS_YES);
	assert_int_equal(q.lists[0].f.is_invite, SS_NO);
	assert_int_equal(q.lists[0].f.is_encrypted, SS_UNSET);
	assert_int_equal(q.lists[0].f.nroom_types, 2);
	assert_null(q.lists[0].f.room_types[0]);
	assert_int_equal(q.nsubs, 1);
	assert_int_equal(q.subs[0].cfg.timeline_limit, SS_TIMELINE_MAX);
	assert_int_equal(q.nunsub, 1);
	assert_non_null(q.extensions);
	ss_request_free(&q);
	/* in the Synapse dialect the body's pos is not the pos */
	assert_int_equal(
	    parse(SS_SYNAPSE, "{\"pos\":\"c1_1_x\"}", NULL, &q, &e), 0);
	assert_null(q.pos);
	ss_request_free(&q);
}

static void
test_v4(void **state)
{
	struct ss_request q;
	struct ss_parse_err e;
	const char *body =
	    "{\"conn_id\":\"main\",\"pos\":\"c3_4_y\","
	    "\"timeout\":100,\"set_presence\":\"offline\",\"lists\":{\"l\":{"
	    "\"range\":[0,19],\"timeline_limit\":5,\"required_state\":{"
	    "\"include\":[{}, {\"type\":\"m.room.create\"}],\"exclude\":[{"
	    "\"type\":\"m.room.member\",\"state_key\":\"$ME\"}],"
	    "\"lazy_members\":true},\"filters\":{\"is_invited\":true}}}}";

	(void)state;
	assert_int_equal(parse(SS_V4, body, "pos=ignored", &q, &e), 0);
	assert_string_equal(q.pos, "c3_4_y");
	assert_string_equal(q.conn_id, "main");
	assert_int_equal(q.timeout_ms, 100);
	assert_string_equal(q.set_presence, "offline");
	assert_int_equal(q.lists[0].nranges, 1);
	assert_int_equal(q.lists[0].ranges[0].hi, 19);
	assert_int_equal(q.lists[0].cfg.rs.ninclude, 2);
	assert_int_equal(q.lists[0].cfg.rs.nexclude, 1);
	assert_true(q.lists[0].cfg.rs.lazy_members);
	assert_int_equal(q.lists[0].f.is_invite, SS_YES);
	/* include everything but my own member event */
	assert_true(
	    ss_rs_matches(&q.lists[0].cfg.rs, "m.room.topic", "", "@me:x"));
	assert_true(ss_rs_matches(&q.lists[0].cfg.rs, "m.room.member", "@b:x",
	                          "@me:x"));
	assert_false(ss_rs_matches(&q.lists[0].cfg.rs, "m.room.member", "@me:x",
	                           "@me:x"));
	ss_request_free(&q);
}

/* {"<member>":{"<pre>0<post>":{},...}} with n entries */
static char *
many(const char *member, const char *pre, const char *post, int n)
{
	struct evbuffer *b = evbuffer_new();
	char *s;

	evbuffer_add_printf(b, "{\"%s\":{", member);
	for (int i = 0; i < n; i++) {
		evbuffer_add_printf(b, "%s\"%s%d%s\":{}", i ? "," : "", pre, i,
		                    post);
	}
	evbuffer_add(b, "}}", 3);
	s = xstrdup((const char *)evbuffer_pullup(b, -1));
	evbuffer_free(b);
	return s;
}

static void
test_refusals(void **state)
{
	struct ss_request q;
	struct ss_parse_err e;
	char *big;

	(void)state;
	refused(SS_SYNAPSE, "[1]", NULL, "M_BAD_JSON", "object");
	refused(SS_SYNAPSE, "{", NULL, "M_NOT_JSON", "JSON");
	refused(SS_SYNAPSE, "{}", "timeout=-1", "M_INVALID_PARAM", "timeout");
	refused(SS_SYNAPSE, "{}", "set_presence=away", "M_INVALID_PARAM",
	        "set_presence");
	refused(SS_V4, "{\"set_presence\":\"busy\"}", NULL, "M_INVALID_PARAM",
	        "set_presence");
	refused(SS_V4, "{\"timeout\":\"1\"}", NULL, "M_BAD_JSON", "timeout");
	refused(SS_V4, "{\"pos\":1}", NULL, "M_BAD_JSON", "pos");
	refused(SS_V4, "{\"conn_id\":\"a b\"}", NULL, "M_INVALID_PARAM",
	        "conn_id");
	refused(SS_SYNAPSE, "{\"lists\":[]}", NULL, "M_BAD_JSON", "lists");
	refused(SS_SYNAPSE, "{\"lists\":{\"a b\":{}}}", NULL, "M_INVALID_PARAM",
	        "a b");
	refused(SS_SYNAPSE, "{\"lists\":{\"a\":{\"timeline_limit\":\"1\"}}}",
	        NULL, "M_BAD_JSON", "timeline_limit");
	refused(SS_SYNAPSE, "{\"lists\":{\"a\":{\"timeline_limit\":-1}}}", NULL,
	        "M_INVALID_PARAM", "timeline_limit");
	refused(SS_SYNAPSE, "{\"lists\":{\"a\":{\"ranges\":[[5,1]]}}}", NULL,
	        "M_INVALID_PARAM", "range");
	refused(SS_SYNAPSE, "{\"lists\":{\"a\":{\"ranges\":[0,1]}}}", NULL,
	        "M_BAD_JSON", "range");
	refused(SS_V4, "{\"lists\":{\"a\":{\"range\":[0]}}}", NULL,
	        "M_BAD_JSON", "range");
	refused(SS_SYNAPSE,
	        "{\"lists\":{\"a\":{\"required_state\":[[\"a\"]]"
	        "}}}",
	        NULL, "M_BAD_JSON", "required_state");
	refused(SS_V4, "{\"lists\":{\"a\":{\"required_state\":[]}}}", NULL,
	        "M_BAD_JSON", "required_state");
	refused(SS_V4,
	        "{\"lists\":{\"a\":{\"required_state\":{\"include\":"
	        "[{\"type\":1}]}}}}",
	        NULL, "M_BAD_JSON", "include");
	refused(SS_SYNAPSE, "{\"lists\":{\"a\":{\"filters\":{\"is_dm\":1}}}}",
	        NULL, "M_BAD_JSON", "is_dm");
	refused(SS_SYNAPSE, "{\"lists\":{\"a\":{\"filters\":{\"tags\":[1]}}}}",
	        NULL, "M_BAD_JSON", "tags");
	refused(SS_SYNAPSE, "{\"room_subscriptions\":{\"nope\":{}}}", NULL,
	        "M_INVALID_PARAM", "room id");
	refused(SS_SYNAPSE, "{\"unsubscribe_rooms\":[1]}", NULL, "M_BAD_JSON",
	        "unsubscribe_rooms");

	/* 101 lists, 101 subscriptions; exactly 100 is fine */
	big = many("lists", "l", "", SS_MAX_LISTS + 1);
	refused(SS_SYNAPSE, big, NULL, "M_INVALID_PARAM", "lists");
	free(big);
	big = many("room_subscriptions", "!r", ":x", SS_MAX_SUBS + 1);
	refused(SS_SYNAPSE, big, NULL, "M_INVALID_PARAM", "room_subscriptions");
	free(big);
	big = many("lists", "l", "", SS_MAX_LISTS);
	assert_int_equal(parse(SS_SYNAPSE, big, NULL, &q, &e), 0);
	free(big);
	assert_int_equal(q.nlists, SS_MAX_LISTS);
	ss_request_free(&q);
}

static struct ss_required_state
rs_of(enum ss_dialect d, const char *cfg)
{
	struct json_object *o = json_parse_bounded(cfg, strlen(cfg), NULL);
	struct ss_room_config c;
	struct ss_parse_err e;

	assert_int_equal(ss_room_config_parse(d, o, &c, &e), 0);
	json_object_put(o);
	return c.rs;
}

/* extensions: sticky per field; a non-object member never crashes */
static void
test_ext_merge(void **state)
{
	struct json_object *stored = json_object_new_object(), *req;
	struct ss_request q;
	struct ss_parse_err e;
	const char *b1 = "{\"extensions\":{\"to_device\":{\"enabled\":true,"
	                 "\"limit\":5},\"org.x.unknown\":true,\"e2ee\":1}}";

	(void)state;
	assert_int_equal(parse(SS_SYNAPSE, b1, NULL, &q, &e), 0);
	ss_ext_merge(stored, q.extensions);
	ss_request_free(&q);
	assert_int_equal(
	    parse(SS_SYNAPSE,
	          "{\"extensions\":{\"to_device\":{\"since\":\"3\"}}}", NULL,
	          &q, &e),
	    0);
	ss_ext_merge(stored, q.extensions);
	ss_request_free(&q);
	req = json_parse_bounded(
	    "{\"to_device\":{\"enabled\":true,\"limit\":5,"
	    "\"since\":\"3\"}}",
	    strlen("{\"to_device\":{\"enabled\":true,\"limit\":"
	           "5,\"since\":\"3\"}}"),
	    NULL);
	if (!json_object_equal(stored, req))
		fail_msg("merged %s", json_plain(stored, NULL));
	json_object_put(req);
	json_object_put(stored);
}

static void
test_combine(void **state)
{
	struct ss_room_config a = {0}, b = {0};
	char *s;

	(void)state;
	a.timeline_limit = 1;
	a.rs = rs_of(SS_SYNAPSE, "{\"required_state\":[[\"m.room.member\","
	                         "\"$LAZY\"],[\"m.room.name\",\"\"]]}");
	b.timeline_limit = 20;
	b.rs = rs_of(SS_SYNAPSE, "{\"required_state\":[[\"m.room.topic\","
	                         "\"\"]]}");
	ss_room_config_merge(&a, &b);
	assert_int_equal(a.timeline_limit, 20);
	assert_true(a.rs.lazy_members);
	assert_true(ss_rs_matches(&a.rs, "m.room.topic", "", NULL));
	assert_true(ss_rs_matches(&a.rs, "m.room.name", "", NULL));
	assert_false(ss_rs_matches(&a.rs, "m.room.member", "@a:x", NULL));
	s = ss_rs_canonical(&a.rs);
	assert_non_null(strstr(s, "$LAZY"));
	free(s);
	/* a config returning every member: every member */
	ss_room_config_free(&b);
	b.rs = rs_of(SS_SYNAPSE, "{\"required_state\":[[\"m.room.member\","
	                         "\"*\"]]}");
	ss_room_config_merge(&a, &b);
	assert_true(ss_rs_matches(&a.rs, "m.room.member", "@a:x", NULL));
	/* one config's excludes never hide what another returns */
	ss_room_config_free(&b);
	b.rs = rs_of(SS_V4, "{\"required_state\":{\"include\":[{}],"
	                    "\"exclude\":[{\"type\":\"m.room.name\"},"
	                    "{\"type\":\"m.room.create\"}]}}");
	ss_room_config_merge(&a, &b);
	assert_true(ss_rs_matches(&a.rs, "m.room.name", "", NULL));
	assert_false(ss_rs_matches(&a.rs, "m.room.create", "", NULL));
	assert_true(ss_rs_matches(&a.rs, "m.room.topic", "", NULL));
	ss_room_config_free(&a);
	ss_room_config_free(&b);
}

static struct json_object *
write_json(enum ss_dialect d, struct ss_request *q, struct ss_response *r)
{
	struct evbuffer *b = evbuffer_new();
	struct json_object *o;

	ss_write(d, q, r, b);
	o = json_parse_bounded((const char *)evbuffer_pullup(b, -1),
	                       evbuffer_get_length(b), NULL);
	assert_non_null(o);
	evbuffer_free(b);
	return o;
}

/* rooms.<room>.<key>, NULL when absent */
static struct json_object *
leaf(struct json_object *o, const char *room, const char *key)
{
	struct json_object *v = NULL;

	json_object_object_get_ex(json_get_path(o, "rooms", room, NULL), key,
	                          &v);
	return v;
}

static void
test_write(void **state)
{
	struct ss_request q;
	struct ss_parse_err e;
	struct ss_response r = {0};
	struct ss_room_result *rr;
	struct json_object *o;

	(void)state;
	assert_int_equal(
	    parse(SS_SYNAPSE, "{\"lists\":{\"a\\\"b\":{}}}", NULL, &q, &e), -1);
	assert_int_equal(
	    parse(SS_SYNAPSE, "{\"lists\":{\"all\":{}}}", NULL, &q, &e), 0);
	snprintf(r.pos, sizeof(r.pos), "c1_1_x");
	r.counts = xcalloc(1, sizeof(*r.counts));
	r.counts[0] = 7;
	r.ncounts = 1;
	rr = ss_response_room(&r, "!j:x");
	rr->is_initial = rr->has_name = rr->has_timeline = true;
	rr->name = xstrdup("A \"quoted\" name");
	rr->timeline = xcalloc(1, sizeof(char *));
	rr->timeline[rr->ntimeline++] =
	    xstrdup("{\"type\":\"m.room.message\"}");
	rr->membership = xstrdup("join");
	rr->is_expanded = true;
	rr->bump_stamp = 42;
	rr->notification_count = 3;
	rr = ss_response_room(&r, "!i:x");
	rr->stripped_state = xstrdup("[{\"type\":\"m.room.name\"}]");
	rr->is_initial = true;
	assert_ptr_equal(ss_response_room(&r, "!i:x"), rr);
	o = write_json(SS_SYNAPSE, &q, &r);
	assert_int_equal(json_object_get_int(json_object_object_get(
	                     json_get_path(o, "lists", "all", NULL), "count")),
	                 7);
	assert_string_equal(
	    json_get_str(json_get_path(o, "rooms", "!j:x", NULL), "name"),
	    "A \"quoted\" name");
	assert_non_null(leaf(o, "!j:x", "unstable_expanded_timeline"));
	assert_non_null(leaf(o, "!j:x", "notification_count"));
	assert_null(leaf(o, "!j:x", "membership"));
	assert_non_null(leaf(o, "!i:x", "invite_state"));
	json_object_put(o);
	o = write_json(SS_V4, &q, &r);
	assert_non_null(leaf(o, "!j:x", "expanded_timeline"));
	assert_null(leaf(o, "!j:x", "notification_count"));
	assert_string_equal(
	    json_get_str(json_get_path(o, "rooms", "!j:x", NULL), "membership"),
	    "join");
	assert_non_null(leaf(o, "!i:x", "stripped_state"));
	assert_null(leaf(o, "!i:x", "name"));
	json_object_put(o);
	ss_response_free(&r);
	ss_request_free(&q);
}

static void
test_pos(void **state)
{
	struct ss_pos p = {12, 3}, got;
	char tok[SS_POS_MAX];

	(void)state;
	ss_pos_format(&p, "secret", "@a:x", "DEV", tok);
	assert_int_equal(ss_pos_parse(tok, "secret", "@a:x", "DEV", &got), 0);
	assert_int_equal(got.conn, 12);
	assert_int_equal(got.gen, 3);
	assert_int_equal(ss_pos_parse(tok, "secret", "@a:x", "OTHER", &got),
	                 -1);
	assert_int_equal(ss_pos_parse(tok, "other", "@a:x", "DEV", &got), -1);
	tok[1] = '9';
	assert_int_equal(ss_pos_parse(tok, "secret", "@a:x", "DEV", &got), -1);
	assert_int_equal(ss_pos_parse("", "secret", "@a:x", "DEV", &got), -1);
	assert_int_equal(
	    ss_pos_parse("c_0_0123456789abcdef", "secret", "@a:x", "DEV", &got),
	    -1);
}

/* a key, or NULL, from one parse (which must succeed) */
static char *
key_of(enum ss_dialect d, const char *body, const char *query)
{
	struct ss_request q;
	struct ss_parse_err e;
	char *k;

	if (parse(d, body, query, &q, &e) == -1)
		fail_msg("refused: %s (%s)", body, e.msg);
	k = q.key != NULL ? xstrdup(q.key) : NULL;
	ss_request_free(&q);
	return k;
}

/*
 * The idle-poll key comes from the parse: the same request but for pos
 * and timeout has the same key in either dialect, anything else another,
 * and a query with other parameters none.
 */
static void
test_key(void **state)
{
	const char *l = "{\"lists\":{\"a\":{\"ranges\":[[0,9]]}}";
	char *a, *b, *c;
	char body[256];

	(void)state;
	a = key_of(SS_SYNAPSE, "{\"lists\":{\"a\":{\"ranges\":[[0,9]]}}}",
	           "pos=p1&timeout=30000");
	b = key_of(SS_SYNAPSE, "{\"lists\":{\"a\":{\"ranges\":[[0,9]]}}}",
	           "timeout=10&pos=p2");
	assert_non_null(a);
	assert_string_equal(a, b);
	free(b);
	b = key_of(SS_SYNAPSE, "{\"lists\":{\"a\":{\"ranges\":[[0,19]]}}}",
	           "pos=p1");
	assert_string_not_equal(a, b);
	free(b);
	assert_null(key_of(SS_SYNAPSE, "{}", "pos=p1&set_presence=offline"));
	/* v4: pos and timeout are the body's */
	snprintf(body, sizeof(body), "%s,\"pos\":\"p1\",\"timeout\":5}", l);
	b = key_of(SS_V4, body, NULL);
	snprintf(body, sizeof(body), "%s,\"timeout\":9,\"pos\":\"p7\"}", l);
	c = key_of(SS_V4, body, "");
	assert_non_null(b);
	assert_string_equal(b, c);
	assert_string_not_equal(a, b); /* the dialect is part of it */
	free(c);
	snprintf(body, sizeof(body), "%s,\"conn_id\":\"x\"}", l);
	c = key_of(SS_V4, body, NULL);
	assert_string_not_equal(b, c);
	free(c);
	assert_null(key_of(SS_V4, "{}", "x=1"));
	free(a);
	free(b);
}

/* an Element X-like body: to_device acknowledging since, e2ee on or not */
static void
td_body(char *buf, size_t size, const char *since, const char *e2ee)
{
	snprintf(buf, size,
	         "{\"extensions\":{\"to_device\":{\"enabled\":true,"
	         "\"since\":\"%s\"},\"e2ee\":{\"enabled\":%s}}}",
	         since, e2ee);
}

/*
 * to_device's since is left out of the key (wait_early compares it with
 * the last next_batch itself), and the extensions keep it.
 */
static void
test_key_since(void **state)
{
	struct ss_request q;
	struct ss_parse_err e;
	struct json_object *td, *since;
	char body[256], *a, *b;

	(void)state;
	td_body(body, sizeof(body), "10", "true");
	a = key_of(SS_SYNAPSE, body, "pos=p");
	td_body(body, sizeof(body), "12", "true");
	b = key_of(SS_SYNAPSE, body, "pos=p");
	assert_non_null(a);
	assert_string_equal(a, b);
	free(b);
	td_body(body, sizeof(body), "12", "false");
	b = key_of(SS_SYNAPSE, body, "pos=p");
	assert_string_not_equal(a, b);
	free(a);
	free(b);
	assert_int_equal(parse(SS_SYNAPSE, body, "pos=p", &q, &e), 0);
	assert_true(json_object_object_get_ex(q.extensions, "to_device", &td));
	assert_true(json_object_object_get_ex(td, "since", &since));
	assert_string_equal(json_object_get_string(since), "12");
	ss_request_free(&q);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_synapse),   cmocka_unit_test(test_v4),
	    cmocka_unit_test(test_refusals),  cmocka_unit_test(test_ext_merge),
	    cmocka_unit_test(test_combine),   cmocka_unit_test(test_write),
	    cmocka_unit_test(test_pos),       cmocka_unit_test(test_key),
	    cmocka_unit_test(test_key_since),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
