/*
 * normalise.c on hand-written v2 bodies (tests/data/sync): what is kept,
 * the exact bytes of each event, and every kind of bad event.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "accumulator.h"

#include "testdata.h"
#include "util.h"


static struct acc_room *
room(struct acc_changes *c, const char *id, int section)
{
	for (size_t i = 0; i < c->nrooms; i++)
		if (strcmp(c->rooms[i].room_id, id) == 0 &&
		    (int)c->rooms[i].section == section)
			return &c->rooms[i];
	fail_msg("room %s not found", id);
	return NULL;
}

/* The stored bytes are a span of the body, identical to the source. */
static void
assert_span(const char *body, size_t len, const struct acc_event *ev,
    const char *needle)
{
	assert_true(ev->raw >= body && ev->raw + ev->raw_len <= body + len);
	assert_non_null(strstr(body, needle));
	assert_int_equal(ev->raw_len, strlen(needle));
	assert_memory_equal(ev->raw, needle, ev->raw_len);
}

static void
test_initial(void **state)
{
	size_t len;
	char *b = slurp("initial.json", &len);
	struct acc_changes c;
	struct acc_room *r;
	const char *err;

	(void)state;
	assert_int_equal(normalise(b, len, "@alice:hs", &c, &err), 0);
	assert_int_equal(c.nrooms, 3);
	assert_int_equal(c.nbad, 0);
	assert_int_equal(c.nevents, 8);
	r = room(&c, "!r1:hs", ACC_JOIN);
	assert_int_equal(r->state.n, 4);
	assert_int_equal(r->timeline.n, 3);
	assert_true(r->limited);
	assert_string_equal(r->prev_batch, "p0");
	assert_string_equal(r->state.v[3].summary, "Room One");
	assert_string_equal(r->state.v[1].membership, "join");
	assert_null(r->timeline.v[1].state_key);
	assert_int_equal(r->timeline.v[1].ts, 6);
	/* \u0000, \/ and \u00e9 kept exactly as sent */
	assert_span(b, len, &r->timeline.v[1],
	    "{\"type\":\"m.room.message\",\"sender\":\"@bob:hs\",\"content\":"
	    "{\"body\":\"hi \\u00e9 \\/ \\u0000 end\",\"msgtype\":\"m.text\"},"
	    "\"event_id\":\"$msg1\",\"origin_server_ts\":6}");
	assert_string_equal(r->typing, "[\"@alice:hs\",\"@bob:hs\"]");
	assert_int_equal(r->nreceipts, 2);
	assert_int_equal(r->nadata, 1);
	assert_string_equal(r->adata[0].type, "m.fully_read");
	assert_true(r->has_unread);
	assert_int_equal(r->notif, 3);
	assert_int_equal(r->highlight, 1);
	assert_string_equal(r->heroes, "[\"@bob:hs\"]");
	assert_int_equal(r->joined_count, 2);
	assert_int_equal(r->invited_count, 0);
	assert_string_equal(r->my_membership, "join");
	r = room(&c, "!inv:hs", ACC_INVITE);
	assert_non_null(r->invite_state);
	assert_int_equal(r->invite_state[0], '[');
	assert_string_equal(r->my_membership, "invite");
	r = room(&c, "!old:hs", ACC_LEAVE);
	assert_string_equal(r->my_membership, "ban");
	assert_int_equal(c.nadata, 2);
	assert_int_equal(c.nto_device, 2);
	assert_non_null(strstr(c.to_device[0], "\"a/b\""));
	assert_int_equal(c.ndl_changed, 2);
	assert_int_equal(c.ndl_left, 1);
	assert_string_equal(c.otk_counts, "{\"signed_curve25519\":50}");
	assert_string_equal(c.fallback_types, "[\"signed_curve25519\"]");
	normalise_free(&c);
	free(b);
}

/*
 * device_unused_fallback_key_types under either name, the stable one
 * first whatever the order; NULL (served absent) when neither is there.
 */
static void
test_fallback_names(void **state)
{
	static const struct {
		const char *body, *want;
	} cases[] = {
	    {"{\"next_batch\":\"s\",\"org.matrix.msc2732.device_unused_"
	     "fallback_key_types\":[\"u\"]}",
	     "[\"u\"]"},
	    {"{\"next_batch\":\"s\",\"org.matrix.msc2732.device_unused_"
	     "fallback_key_types\":[\"u\"],\"device_unused_fallback_key_"
	     "types\":[]}",
	     "[]"},
	    {"{\"next_batch\":\"s\",\"device_unused_fallback_key_types\":"
	     "[\"s\"],\"org.matrix.msc2732.device_unused_fallback_key_"
	     "types\":[\"u\"]}",
	     "[\"s\"]"},
	    {"{\"next_batch\":\"s\",\"device_one_time_keys_count\":{}}", NULL},
	};
	struct acc_changes c;
	const char *err;

	(void)state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		assert_int_equal(normalise(cases[i].body, strlen(cases[i].body),
		                           "@alice:hs", &c, &err),
		                 0);
		if (cases[i].want == NULL)
			assert_null(c.fallback_types);
		else
			assert_string_equal(c.fallback_types, cases[i].want);
		normalise_free(&c);
	}
}

static void
test_incremental_and_limited(void **state)
{
	size_t len;
	char *b = slurp("incremental.json", &len);
	struct acc_changes c;
	struct acc_room *r;

	(void)state;
	assert_int_equal(normalise(b, len, "@alice:hs", &c, NULL), 0);
	r = room(&c, "!r1:hs", ACC_JOIN);
	assert_false(r->limited);
	assert_int_equal(r->state.n, 0);
	assert_int_equal(r->timeline.n, 3);
	assert_string_equal(r->timeline.v[1].summary, "Room Two");
	assert_true(r->has_unread);
	assert_int_equal(r->notif, 0);
	normalise_free(&c);
	free(b);

	b = slurp("limited.json", &len);
	assert_int_equal(normalise(b, len, "@alice:hs", &c, NULL), 0);
	r = room(&c, "!r1:hs", ACC_JOIN);
	assert_true(r->limited);
	assert_int_equal(r->state.n, 3);
	assert_int_equal(r->timeline.n, 1);
	assert_false(r->has_unread);
	assert_null(r->typing);
	normalise_free(&c);
	free(b);
}

static void
test_overlap(void **state)
{
	size_t len;
	char *b = slurp("overlap.json", &len);
	struct acc_changes c;
	struct acc_room *r;

	(void)state;
	assert_int_equal(normalise(b, len, NULL, &c, NULL), 0);
	r = room(&c, "!r1:hs", ACC_JOIN);
	/* normalise keeps both; the store applies each event once */
	assert_int_equal(r->state.n, 1);
	assert_int_equal(r->timeline.n, 4);
	assert_string_equal(r->state.v[0].event_id, "$topic2");
	assert_string_equal(r->timeline.v[1].event_id, "$topic2");
	normalise_free(&c);
	free(b);
}

static void
test_bad_events(void **state)
{
	size_t len;
	char *b = slurp("bad_events.json", &len);
	struct acc_changes c;
	struct acc_room *r;

	(void)state;
	assert_int_equal(normalise(b, len, NULL, &c, NULL), 0);
	r = room(&c, "!r1:hs", ACC_JOIN);
	/* a lone surrogate escape decodes to U+FFFD: valid, kept */
	assert_int_equal(r->timeline.n, 2);
	assert_string_equal(r->timeline.v[0].event_id, "$odd_surrogate\xef\xbf\xbd");
	assert_string_equal(r->timeline.v[1].event_id, "$good");
	assert_int_equal(r->state.n, 0);
	assert_int_equal(c.bad[ACC_BAD_NOT_OBJECT], 1);
	assert_int_equal(c.bad[ACC_BAD_NO_ID], 2);
	/* id 42, type 7, no sender, content "str", state_key 5, ts "x",
	 * membership 3, the state event without state_key, the to-device
	 * message without type */
	assert_int_equal(c.bad[ACC_BAD_TYPES], 9);
	assert_int_equal(c.bad[ACC_BAD_ENCODING], 1);
	assert_int_equal(c.bad[ACC_BAD_ROOM], 1);
	assert_int_equal(c.nto_device, 1);
	normalise_free(&c);
	free(b);
}

static void
test_too_big(void **state)
{
	size_t n = ACC_EVENT_MAX + 200, len;
	char *b = malloc(n + 400), *big = malloc(n + 1);
	struct acc_changes c;

	(void)state;
	memset(big, 'x', n);
	big[n] = '\0';
	len = (size_t)snprintf(b, n + 400, "{\"rooms\":{\"join\":{\"!r:hs\":{"
	    "\"timeline\":{\"events\":[{\"type\":\"m.t\",\"sender\":\"@a:hs\","
	    "\"event_id\":\"$big\",\"content\":{\"b\":\"%s\"}},{\"type\":"
	    "\"m.t\",\"sender\":\"@a:hs\",\"event_id\":\"$small\",\"content\":"
	    "{}}]}}}}}", big);
	assert_int_equal(normalise(b, len, NULL, &c, NULL), 0);
	assert_int_equal(c.bad[ACC_BAD_TOO_BIG], 1);
	assert_int_equal(c.nrooms, 1);
	assert_int_equal(c.rooms[0].timeline.n, 1);
	normalise_free(&c);
	free(b);
	free(big);
}

static void
test_membership_sections(void **state)
{
	static const struct {
		const char *file, *room;
		int section;
		const char *m;
	} cases[] = {
		{"m1_invite.json", "!m:hs", ACC_INVITE, "invite"},
		{"m2_join.json", "!m:hs", ACC_JOIN, "join"},
		{"m3_leave.json", "!m:hs", ACC_LEAVE, "leave"},
		{"m4_rejoin.json", "!m:hs", ACC_JOIN, "join"},
		{"m5_ban.json", "!m:hs", ACC_LEAVE, "ban"},
	};

	(void)state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		size_t len;
		char *b = slurp(cases[i].file, &len);
		struct acc_changes c;

		assert_int_equal(normalise(b, len, "@alice:hs", &c, NULL), 0);
		assert_string_equal(room(&c, cases[i].room,
		    cases[i].section)->my_membership, cases[i].m);
		normalise_free(&c);
		free(b);
	}
}

static void
test_not_json(void **state)
{
	static const char *const bodies[] = {"", "   ", "{", "[1,2]", "null",
	    "{\"a\":1} trailing", "{\"a\":\"\xff\"}", "\"str\""};
	size_t len;
	char *b = slurp("not_json.txt", &len);
	struct acc_changes c;
	const char *err = NULL;

	(void)state;
	assert_int_equal(normalise(b, len, NULL, &c, &err), -1);
	assert_non_null(err);
	free(b);
	b = slurp("array.json", &len);
	assert_int_equal(normalise(b, len, NULL, &c, &err), -1);
	free(b);
	for (size_t i = 0; i < sizeof(bodies) / sizeof(bodies[0]); i++)
		assert_int_equal(normalise(bodies[i], strlen(bodies[i]), NULL,
		    &c, NULL), -1);
	/* a valid object with nothing we know is fine and empty */
	assert_int_equal(normalise("{\"x\":[{}]}", 10, NULL, &c, NULL), 0);
	assert_int_equal(c.nrooms, 0);
	normalise_free(&c);
}

/* Wrong shapes where objects are expected: ignored, never a crash. */
static void
test_wrong_shapes(void **state)
{
	static const char *const bodies[] = {
	    "{\"rooms\":[]}", "{\"rooms\":{\"join\":[]}}",
	    "{\"rooms\":{\"join\":{\"!r:hs\":[]}}}",
	    "{\"rooms\":{\"join\":{\"!r:hs\":{\"timeline\":[]}}}}",
	    "{\"rooms\":{\"join\":{\"!r:hs\":{\"timeline\":{\"events\":{}}}}}}",
	    "{\"rooms\":{\"join\":{\"!r:hs\":{\"ephemeral\":{\"events\":[1,"
	    "{\"type\":\"m.typing\",\"content\":{\"user_ids\":\"x\"}},{\"type\":"
	    "\"m.receipt\",\"content\":{\"$e\":{\"m.read\":{\"@u\":5}}}}]}}}}}",
	    ("{\"to_device\":{\"events\":[1,[],null]},\"device_lists\":[],"
	    "\"account_data\":{\"events\":[{\"type\":\"\",\"content\":{}}]}}"),
	    "{\"rooms\":{\"join\":{\"\":{},\"\\u0000\":{}}}}",
	};
	struct acc_changes c;

	(void)state;
	for (size_t i = 0; i < sizeof(bodies) / sizeof(bodies[0]); i++) {
		assert_int_equal(normalise(bodies[i], strlen(bodies[i]), NULL,
		    &c, NULL), 0);
		normalise_free(&c);
	}
}

static void
test_jscan(void **state)
{
	const char *s = "{ \"a\" : [1, \"x\\\"]\", {\"b\":null}] , \"\\u0061\":true}";
	struct jspan v = {s, strlen(s)}, k, val, e;
	struct jscan_it it, ai;
	int n = 0;

	(void)state;
	assert_int_equal(jscan_open(&it, v, '{'), 0);
	assert_int_equal(jscan_member(&it, &k, &val), 1);
	assert_true(jscan_key_eq(k, "a"));
	assert_int_equal(jscan_open(&ai, val, '['), 0);
	while (jscan_elem(&ai, &e) == 1)
		n++;
	assert_int_equal(n, 3);
	assert_int_equal(jscan_member(&it, &k, &val), 1);
	assert_true(jscan_key_eq(k, "a"));	/* escaped key decoded */
	assert_int_equal(val.len, 4);
	assert_int_equal(jscan_member(&it, &k, &val), 0);
	/* truncated input never reads past the end */
	for (size_t i = 0; i < strlen(s); i++) {
		struct jspan t = {s, i};
		if (jscan_open(&it, t, '{') == 0)
			while (jscan_member(&it, &k, &val) == 1)
				;
	}
}

/*
 * Entering a member's value (jscan_key, jscan_enter, jscan_leave) walks
 * the same members as skipping it first, and the parent goes on after it;
 * a child that stops early leaves the parent unusable, never past the end.
 */
static void
test_jscan_enter(void **state)
{
	const char *s = "{\"r\" : { \"j\":{\"!a\" : {\"t\":[1,\"}\"]} ,\"!b\":{}}} ,"
	                " \"n\":\"x\"}";
	struct jspan v = {s, strlen(s)}, k, val, k2, v2;
	struct jscan_it it, r, j, m;

	(void)state;
	assert_int_equal(jscan_open(&it, v, '{'), 0);
	assert_int_equal(jscan_key(&it, &k), 1);
	assert_true(jscan_key_eq(k, "r"));
	assert_true(jscan_at(&it, '{'));
	assert_false(jscan_at(&it, '['));
	jscan_enter(&it, '{', &r);
	assert_int_equal(jscan_key(&r, &k), 1);
	assert_true(jscan_key_eq(k, "j"));
	jscan_enter(&r, '{', &j);
	assert_int_equal(jscan_key(&j, &k), 1);
	assert_true(jscan_key_eq(k, "!a"));
	/* the span jscan_member gives, from a copy of the iterator */
	m = j;
	assert_int_equal(jscan_value(&m, &v2), 1);
	assert_int_equal(jscan_value(&j, &val), 1);
	assert_int_equal(val.len, v2.len);
	assert_memory_equal(val.p, "{\"t\":[1,\"}\"]}", val.len);
	assert_int_equal(jscan_member(&j, &k2, &val), 1);
	assert_true(jscan_key_eq(k2, "!b"));
	assert_int_equal(jscan_member(&j, &k2, &val), 0);
	assert_int_equal(jscan_leave(&r, &j), 0);
	assert_int_equal(jscan_member(&r, &k, &val), 0);
	assert_int_equal(jscan_leave(&it, &r), 0);
	assert_int_equal(jscan_member(&it, &k, &val), 1);
	assert_true(jscan_key_eq(k, "n"));
	assert_int_equal(val.len, 3);
	assert_int_equal(jscan_member(&it, &k, &val), 0);
	/* left before its close: refused */
	assert_int_equal(jscan_open(&it, v, '{'), 0);
	assert_int_equal(jscan_key(&it, &k), 1);
	jscan_enter(&it, '{', &r);
	assert_int_equal(jscan_key(&r, &k), 1);
	assert_int_equal(jscan_leave(&it, &r), -1);
}

/* Strings end at a quote preceded by an even number of backslashes
 * (skip_string finds quotes with memchr and counts backslashes). */
static void
test_jscan_backslashes(void **state)
{
	static const struct {
		const char *in;
		size_t len;	/* of the first element's span */
	} cases[] = {
		{"[\"\", 1]", 2},
		{"[\"\\\\\", 1]", 4},		/* "\\" */
		{"[\"\\\"\", 1]", 4},		/* "\"" */
		{"[\"a\\\\\\\"b\", 1]", 8},	/* "a\\\"b" */
		{"[\"\\\\\\\\\", 1]", 6},	/* "\\\\" */
		{"[{\"k\":\"}\\\\\"}, 1]", 11},	/* {"k":"}\\"} */
	};
	struct jscan_it it;
	struct jspan e, v;
	int n;

	(void)state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		v = (struct jspan){cases[i].in, strlen(cases[i].in)};
		assert_int_equal(jscan_open(&it, v, '['), 0);
		assert_int_equal(jscan_elem(&it, &e), 1);
		assert_int_equal(e.len, cases[i].len);
		for (n = 1; jscan_elem(&it, &e) == 1; n++)
			;
		assert_int_equal(n, 2);
	}
	/* an unterminated string, also one ending in a backslash */
	v = (struct jspan){"[\"ab\\\"", 6};
	assert_int_equal(jscan_open(&it, v, '['), 0);
	assert_int_not_equal(jscan_elem(&it, &e), 1);
	assert_null(jscan_skip("\"\\", (const char *)"\"\\" + 2));
}

/* Object o (text) with the fields every event needs put first. */
static char *
with_fields(const char *o)
{
	return xasprintf("{\"event_id\":\"$e\",\"type\":\"m.room.message\","
	    "\"sender\":\"@a:hs\",\"content\":{},%s", o + 1);
}

/*
 * unsigned.transaction_id is cut from the stored bytes wherever it sits
 * in unsigned (only, first, middle, last, twice, with spaces), every
 * other byte kept, and kept aside as txn_id when it is a string.
 */
static void
test_txn_strip(void **state)
{
	static const struct {
		const char *in, *out, *txn;
	} cases[] = {
	    {"{\"unsigned\":{\"transaction_id\":\"t1\"},\"x\":1}",
		"{\"unsigned\":{},\"x\":1}", "t1"},
	    {"{\"unsigned\": { \"transaction_id\" : \"t1\" , \"age\": 5 }}",
		"{\"unsigned\": { \"age\": 5 }}", "t1"},
	    {"{\"unsigned\":{\"age\":5,\"transaction_id\":\"t\\\"2\",\"b\":[1]}}",
		"{\"unsigned\":{\"age\":5,\"b\":[1]}}", "t\"2"},
	    {"{\"unsigned\":{\"age\":5,\"transaction_id\":\"t3\"},\"y\":\"transaction_id\"}",
		"{\"unsigned\":{\"age\":5},\"y\":\"transaction_id\"}", "t3"},
	    {"{\"unsigned\":{\"transaction_id\":1,\"transaction_id\":\"t4\"}}",
		"{\"unsigned\":{}}", "t4"},
	    {"{\"unsigned\":{\"transaction_id\":7}}", "{\"unsigned\":{}}", NULL},
	    {"{\"unsigned\":{\"age\":1},\"transaction_id\":\"t5\"}",
		"{\"unsigned\":{\"age\":1},\"transaction_id\":\"t5\"}", NULL},
	};
	struct acc_changes c;
	struct acc_room *r;
	const struct acc_event *ev;
	char *body, *ev_json;
	size_t i;

	(void)state;
	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		ev_json = with_fields(cases[i].in);
		body = xasprintf("{\"rooms\":{\"join\":{\"!r:hs\":{\"timeline\":"
		    "{\"events\":[%s]}}}}}", ev_json);
		free(ev_json);
		assert_int_equal(normalise(body, strlen(body), "@a:hs", &c,
		    NULL), 0);
		r = room(&c, "!r:hs", ACC_JOIN);
		assert_int_equal(r->timeline.n, 1);
		ev = &r->timeline.v[0];
		ev_json = with_fields(cases[i].out);
		assert_int_equal(ev->raw_len, strlen(ev_json));
		assert_memory_equal(ev->raw, ev_json, ev->raw_len);
		if (cases[i].txn == NULL)
			assert_null(ev->txn_id);
		else
			assert_string_equal(ev->txn_id, cases[i].txn);
		normalise_free(&c);
		free(body);
		free(ev_json);
	}
}

static void
assert_evlist_equal(const struct acc_evlist *a, const struct acc_evlist *b)
{
	assert_int_equal(a->n, b->n);
	for (size_t i = 0; i < a->n; i++) {
		assert_int_equal(a->v[i].raw_len, b->v[i].raw_len);
		assert_memory_equal(a->v[i].raw, b->v[i].raw, a->v[i].raw_len);
		assert_int_equal(a->v[i].ts, b->v[i].ts);
	}
}

/*
 * The first window's light pass (docs/DESIGN.md, "The first window
 * first"): the same rooms in the same order as normalise (the fill takes
 * the window's choice by index), each with its timeline whole and no
 * state; the rooms picked from it are what normalise makes of them.
 */
static void
test_light_pick(void **state)
{
	static const char *const files[] = {"initial.json", "m3_leave.json",
	                                    "m5_ban.json", "bad_events.json",
	                                    "overlap.json"};

	(void)state;
	for (size_t f = 0; f < sizeof(files) / sizeof(files[0]); f++) {
		size_t len;
		char *b = slurp(files[f], &len);
		struct acc_changes full, light, pick;
		bool *sel;

		assert_int_equal(normalise(b, len, "@alice:hs", &full, NULL),
		                 0);
		assert_int_equal(normalise_light(b, len, "@alice:hs", &light),
		                 0);
		assert_true(light.is_light);
		assert_int_equal(light.nrooms, full.nrooms);
		assert_int_equal(light.nadata, full.nadata);
		sel = xcalloc(light.nrooms + 1, sizeof(*sel));
		for (size_t i = 0; i < light.nrooms; i++) {
			assert_string_equal(light.rooms[i].room_id,
			                    full.rooms[i].room_id);
			assert_int_equal(light.rooms[i].section,
			                 full.rooms[i].section);
			assert_int_equal(light.rooms[i].state.n, 0);
			/* normalise_pick reads the room from this span */
			assert_int_equal(light.rooms[i].span.len,
			                 full.rooms[i].span.len);
			assert_ptr_equal(light.rooms[i].span.p,
			                 full.rooms[i].span.p);
			assert_int_equal(*light.rooms[i].span.p, '{');
			assert_int_equal(light.rooms[i].span.p
			                     [light.rooms[i].span.len - 1],
			                 '}');
			assert_evlist_equal(&light.rooms[i].timeline,
			                    &full.rooms[i].timeline);
			sel[i] = i % 2 == 0;
		}
		normalise_pick(&light, sel, "@alice:hs", &pick);
		assert_int_equal(pick.nrooms, (light.nrooms + 1) / 2);
		for (size_t i = 0, j = 0; i < full.nrooms; i += 2, j++) {
			const struct acc_room *x = &full.rooms[i];
			const struct acc_room *y = &pick.rooms[j];

			assert_string_equal(x->room_id, y->room_id);
			assert_string_equal(x->my_membership, y->my_membership);
			assert_int_equal(x->limited, y->limited);
			assert_int_equal(x->joined_count, y->joined_count);
			assert_int_equal(x->nadata, y->nadata);
			assert_evlist_equal(&x->state, &y->state);
			assert_evlist_equal(&x->timeline, &y->timeline);
		}
		normalise_free(&pick);
		normalise_free(&light);
		normalise_free(&full);
		free(sel);
		free(b);
	}
}

/* The light pass stays inside a body cut anywhere, and refuses a non-object. */
static void
test_light_cut(void **state)
{
	size_t len;
	char *b = slurp("initial.json", &len);
	struct acc_changes c;

	(void)state;
	for (size_t n = 0; n < len; n += 7) {
		/* exactly n bytes: ASan sees any read past them */
		char *cut = xmalloc(n > 0 ? n : 1);

		memcpy(cut, b, n);
		if (normalise_light(cut, n, "@alice:hs", &c) == 0)
			normalise_free(&c);
		free(cut);
	}
	assert_int_equal(normalise_light("[1]", 3, NULL, &c), -1);
	normalise_free(&c);
	free(b);
}

/*
 * Each event's json-c tree is freed once its fields are copied out (a
 * large body's trees were most of the accumulator's peak), the fields
 * and bytes staying as they were; a redaction keeps its tree, which
 * redaction.c reads.
 */
static void
test_trees_freed(void **state)
{
	static const char body[] =
	    "{\"rooms\":{\"join\":{\"!r:hs\":{"
	    "\"state\":{\"events\":[{\"event_id\":\"$n\",\"type\":"
	    "\"m.room.name\",\"sender\":\"@a:hs\",\"state_key\":\"\","
	    "\"content\":{\"name\":\"Room N\"},\"origin_server_ts\":5}]},"
	    "\"timeline\":{\"events\":[{\"event_id\":\"$m\",\"type\":"
	    "\"m.room.member\",\"sender\":\"@a:hs\",\"state_key\":\"@a:hs\","
	    "\"content\":{\"membership\":\"join\"},"
	    "\"unsigned\":{\"transaction_id\":\"tx9\",\"age\":1}},"
	    "{\"event_id\":\"$x\",\"type\":\"m.room.redaction\","
	    "\"sender\":\"@a:hs\",\"redacts\":\"$n\",\"content\":{}}]}}}}}";
	/* $m as stored: its transaction_id cut */
	static const char m_stored[] =
	    "{\"event_id\":\"$m\",\"type\":\"m.room.member\",\"sender\":"
	    "\"@a:hs\",\"state_key\":\"@a:hs\",\"content\":{\"membership\":"
	    "\"join\"},\"unsigned\":{\"age\":1}}";
	struct acc_changes c;
	struct acc_room *r;
	const struct acc_event *n, *m, *x;

	(void)state;
	assert_int_equal(normalise(body, strlen(body), "@a:hs", &c, NULL), 0);
	r = room(&c, "!r:hs", ACC_JOIN);
	assert_int_equal(r->state.n, 1);
	assert_int_equal(r->timeline.n, 2);
	n = &r->state.v[0];
	m = &r->timeline.v[0];
	x = &r->timeline.v[1];
	assert_null(n->obj);
	assert_null(m->obj);
	assert_non_null(x->obj);
	assert_string_equal(n->event_id, "$n");
	assert_string_equal(n->type, "m.room.name");
	assert_string_equal(n->sender, "@a:hs");
	assert_string_equal(n->state_key, "");
	assert_string_equal(n->summary, "Room N");
	assert_int_equal(n->ts, 5);
	assert_null(n->txn_id);
	assert_true(n->raw >= body && n->raw < body + sizeof(body));
	assert_string_equal(m->membership, "join");
	assert_string_equal(m->state_key, "@a:hs");
	assert_string_equal(m->txn_id, "tx9");
	assert_int_equal(m->raw_len, strlen(m_stored));
	assert_memory_equal(m->raw, m_stored, m->raw_len);
	assert_string_equal(x->event_id, "$x");
	normalise_free(&c);
}

/*
 * The whole body is checked by jsonv, the poller's validator: a UTF-8
 * surrogate or overlong form anywhere (Postgres refuses both in jsonb,
 * failing the whole transaction) refuses the body, with a reason.
 */
static void
test_body_strict_utf8(void **state)
{
	static const char *const bad_bytes[] = {"\xed\xa0\x80", "\xc0\xaf"};
	struct acc_changes c;
	const char *err;
	char *body;

	(void)state;
	for (size_t i = 0; i < sizeof(bad_bytes) / sizeof(bad_bytes[0]); i++) {
		body = xasprintf(
		    "{\"rooms\":{\"join\":{\"!r:hs\":{\"timeline\":"
		    "{\"events\":[{\"event_id\":\"$e\",\"type\":\"m.room."
		    "message\",\"sender\":\"@a:hs\",\"content\":{\"body\":"
		    "\"%s\"}}]}}}},\"next_batch\":\"s1\"}",
		    bad_bytes[i]);
		err = NULL;
		assert_int_equal(
		    normalise(body, strlen(body), "@a:hs", &c, &err), -1);
		assert_non_null(err);
		free(body);
	}
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_initial),
	    cmocka_unit_test(test_incremental_and_limited),
	    cmocka_unit_test(test_fallback_names),
	    cmocka_unit_test(test_overlap),
	    cmocka_unit_test(test_bad_events),
	    cmocka_unit_test(test_too_big),
	    cmocka_unit_test(test_membership_sections),
	    cmocka_unit_test(test_not_json),
	    cmocka_unit_test(test_wrong_shapes),
	    cmocka_unit_test(test_jscan),
	    cmocka_unit_test(test_jscan_backslashes),
	    cmocka_unit_test(test_txn_strip),
	    cmocka_unit_test(test_light_pick),
	    cmocka_unit_test(test_jscan_enter),
	    cmocka_unit_test(test_light_cut),
	    cmocka_unit_test(test_trees_freed),
	    cmocka_unit_test(test_body_strict_utf8),
	};

	log_init("test", LOG_LEVEL_ERROR);
	return cmocka_run_group_tests(tests, NULL, NULL);
}
