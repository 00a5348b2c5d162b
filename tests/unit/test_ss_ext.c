/*
 * The pure half of the sliding sync extensions (api/ss_ext_cfg.c): the
 * request checks (Synapse's 400 for a since that is not an integer),
 * the sticky configs read back, the MSCs' lists/rooms scope, and which
 * rooms get everything or only changes as the window moves.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "json_util.h"
#include "ss_ext.h"

static struct json_object *
J(const char *s)
{
	struct json_object *o = json_parse_bounded(s, strlen(s), NULL);
	assert_non_null(o);
	return o;
}

/* ss_ext_check on text: the errcode, or NULL when accepted */
static const char *
check(const char *ext)
{
	struct json_object *o = J(ext);
	struct ss_parse_err err;
	int rc = ss_ext_check(o, &err);

	json_object_put(o);
	if (rc == 0)
		return NULL;
	assert_int_equal(err.status, 400);
	assert_true(strncmp(err.msg, "extensions", 10) == 0);
	return err.errcode;
}

static void
test_check(void **state)
{
	(void)state;
	assert_null(check("{}"));
	assert_null(check("{\"to_device\":{\"enabled\":true,\"since\":\"12\","
	                  "\"limit\":100}}"));
	assert_null(check("{\"to_device\":{\"since\":null}}"));
	assert_string_equal(check("{\"to_device\":{\"since\":\"abc\"}}"),
	                    "M_INVALID_PARAM");
	assert_string_equal(check("{\"to_device\":{\"since\":\"12x\"}}"),
	                    "M_INVALID_PARAM");
	assert_string_equal(check("{\"to_device\":{\"since\":\"\"}}"),
	                    "M_INVALID_PARAM");
	assert_string_equal(check("{\"to_device\":{\"since\":12}}"),
	                    "M_INVALID_PARAM");
	assert_string_equal(check("{\"to_device\":{\"limit\":\"5\"}}"),
	                    "M_BAD_JSON");
	assert_string_equal(check("{\"typing\":{\"enabled\":\"yes\"}}"),
	                    "M_BAD_JSON");
	assert_string_equal(check("{\"receipts\":{\"lists\":[1]}}"),
	                    "M_BAD_JSON");
	assert_string_equal(check("{\"account_data\":{\"rooms\":\"*\"}}"),
	                    "M_BAD_JSON");
	assert_string_equal(check("{\"e2ee\":true}"), "M_BAD_JSON");
	assert_string_equal(check("[]"), "M_BAD_JSON");
	/* an extension we do not serve is not looked at */
	assert_null(check("{\"org.matrix.msc4354.sticky_events\":{"
	                  "\"enabled\":\"whatever\",\"limit\":\"x\"}}"));
}

static void
test_cfg(void **state)
{
	struct json_object *o;
	struct ss_ext_cfg c;

	(void)state;
	o = J(
	    "{\"to_device\":{\"enabled\":true,\"since\":\"42\",\"limit\":500},"
	    "\"e2ee\":{\"enabled\":false},\"typing\":{\"enabled\":true,"
	    "\"lists\":[\"a\"],\"rooms\":[]},\"other\":{\"enabled\":true}}");
	ss_ext_cfg_load(o, &c);
	assert_true(c.x[SX_TO_DEVICE].is_on);
	assert_false(c.x[SX_E2EE].is_on);
	assert_false(c.x[SX_ACCOUNT_DATA].is_on);
	assert_true(c.x[SX_TYPING].is_on);
	assert_false(c.x[SX_RECEIPTS].is_on);
	assert_int_equal(c.td_since, 42);
	assert_int_equal(c.td_limit, SS_TD_LIMIT_MAX);
	assert_non_null(c.x[SX_TYPING].lists);
	assert_null(c.x[SX_ACCOUNT_DATA].lists);
	json_object_put(o);
	o = J("{\"to_device\":{\"enabled\":true,\"limit\":0}}");
	ss_ext_cfg_load(o, &c);
	assert_int_equal(c.td_since, -1);
	assert_int_equal(c.td_limit, 1);
	json_object_put(o);
	ss_ext_cfg_load(NULL, &c);
	assert_int_equal(c.td_limit, SS_TD_LIMIT_DEFAULT);
	assert_false(c.x[SX_TO_DEVICE].is_on);
}

/* a context with lists "a" and "b" over rooms !1..!4, !4 subscribed */
static const char *const keys[] = {"a", "b"};
static const int in_a[] = {0}, in_b[] = {1}, in_ab[] = {0, 1};

static void
ctx_init(struct ss_ctx *c, struct ss_ext_room *rooms)
{
	memset(c, 0, sizeof(*c));
	rooms[0] =
	    (struct ss_ext_room){.room_id = "!1", .lists = in_a, .nlists = 1};
	rooms[1] =
	    (struct ss_ext_room){.room_id = "!2", .lists = in_ab, .nlists = 2};
	rooms[2] =
	    (struct ss_ext_room){.room_id = "!3", .lists = in_b, .nlists = 1};
	rooms[3] = (struct ss_ext_room){.room_id = "!4", .is_sub = true};
	c->list_keys = keys;
	c->nlists = 2;
	c->rooms = rooms;
	c->nrooms = 4;
}

/* the ids of rooms in e's scope, as "!1!2..." */
static void
scope_is(const char *ext, const char *want)
{
	struct ss_ext_room rooms[4];
	struct ss_ctx c;
	struct ss_ext_cfg cfg;
	struct json_object *o = J(ext);
	char got[64] = "";

	ctx_init(&c, rooms);
	ss_ext_cfg_load(o, &cfg);
	for (int i = 0; i < c.nrooms; i++)
		if (ss_ext_scoped(&cfg.x[SX_TYPING], &c, &rooms[i]))
			strcat(got, rooms[i].room_id);
	assert_string_equal(got, want);
	json_object_put(o);
}

static void
test_scope(void **state)
{
	(void)state;
	scope_is("{\"typing\":{\"enabled\":true}}", "!1!2!3!4");
	scope_is("{\"typing\":{\"lists\":[\"*\"],\"rooms\":[\"*\"]}}",
	         "!1!2!3!4");
	scope_is("{\"typing\":{\"lists\":[\"b\"]}}", "!2!3!4");
	scope_is("{\"typing\":{\"lists\":[\"a\"],\"rooms\":[]}}", "!1!2");
	scope_is("{\"typing\":{\"lists\":[],\"rooms\":[\"!4\"]}}", "!4");
	scope_is("{\"typing\":{\"lists\":[],\"rooms\":[\"!1\"]}}", "");
	scope_is("{\"typing\":{\"lists\":[\"nope\"],\"rooms\":[]}}", "");
}

/* One round of kind k under config ext against blob prev (sorted). */
struct round {
	struct json_object *o;
	struct ss_ext_cfg cfg;
	struct ss_ext_state prev, now;
	struct ss_ext_rooms out;
};

static void
round_begin(struct round *r, enum ss_ext_kind k, const char *ext,
            struct ss_ctx *c, const char *prev_blob)
{
	r->o = J(ext);
	ss_ext_cfg_load(r->o, &r->cfg);
	ss_ext_state_parse(prev_blob, &r->prev);
	ss_ext_state_parse(NULL, &r->now);
	r->now.was_on[k] = r->cfg.x[k].is_on;
	ss_ext_sort(k, &r->cfg, c, &r->prev, &r->out, &r->now.scope[k]);
}

/* The round's next blob; the round is freed. */
static char *
round_end(struct round *r)
{
	char *blob = ss_ext_state_text(&r->now);

	ss_ext_rooms_free(&r->out);
	ss_ext_state_free(&r->prev);
	ss_ext_state_free(&r->now);
	json_object_put(r->o);
	return blob;
}

/* sorts kind k's rooms against blob prev; returns the next blob */
static char *
sort(enum ss_ext_kind k, const char *ext, struct ss_ctx *c,
     const char *prev_blob, const char *fresh, const char *live)
{
	struct round r;
	char gf[64] = "", gl[64] = "";

	round_begin(&r, k, ext, c, prev_blob);
	for (int i = 0; i < r.out.nfresh; i++)
		strcat(gf, r.out.fresh[i]);
	for (int i = 0; i < r.out.nlive; i++)
		strcat(gl, r.out.live[i]);
	assert_string_equal(gf, fresh);
	assert_string_equal(gl, live);
	return round_end(&r);
}

static void
test_sort(void **state)
{
	const char *on = "{\"account_data\":{\"enabled\":true},"
	                 "\"receipts\":{\"enabled\":true}}";
	struct ss_ext_room rooms[4];
	struct ss_ctx c;
	char *b1, *b2, *b3;

	(void)state;
	ctx_init(&c, rooms);
	c.is_new_conn = true;
	/* a new connection: everything in scope is fresh */
	b1 = sort(SX_ACCOUNT_DATA, on, &c, NULL, "!1!2!3!4", "");
	c.is_new_conn = false;
	c.from_pos = 10;
	/* next response, same window: only changes */
	b2 = sort(SX_ACCOUNT_DATA, on, &c, b1, "", "!1!2!3!4");
	/* the window moves: !3 out, then back: fresh again */
	c.nrooms = 2;
	free(b2);
	b2 = sort(SX_ACCOUNT_DATA, on, &c, b1, "", "!1!2");
	c.nrooms = 4;
	b3 = sort(SX_ACCOUNT_DATA, on, &c, b2, "!3!4", "!1!2");
	free(b3);
	/* receipts were never on in b1's response: all fresh */
	b3 = sort(SX_RECEIPTS, on, &c, b1, "!1!2!3!4", "");
	free(b3);
	/* an extension off sends nothing and keeps no rooms */
	b3 = sort(SX_TYPING, on, &c, b1, "", "");
	assert_null(strstr(b3, "\"ty\""));
	free(b3);
	/* a room the core re-sends from scratch starts over */
	b3 = sort(SX_RECEIPTS, on, &c, NULL, "!1!2!3!4", "");
	rooms[1].is_initial = true;
	free(sort(SX_RECEIPTS, on, &c, b3, "!2", "!1!3!4"));
	free(sort(SX_ACCOUNT_DATA, on, &c, b1, "!2", "!1!3!4"));
	/* an expanded timeline restarts receipts only */
	rooms[1].is_initial = false;
	rooms[1].is_expanded = true;
	free(sort(SX_RECEIPTS, on, &c, b3, "!2", "!1!3!4"));
	free(sort(SX_ACCOUNT_DATA, on, &c, b1, "", "!1!2!3!4"));
	free(b3);
	free(b1);
	free(b2);
}

/*
 * One receipts round over c's first n rooms against blob prev: checks the
 * rooms back in scope ("!3@10": changes after 10) and returns the blob.
 */
static char *
rc_round(struct ss_ctx *c, int n, const char *prev_blob, const char *back)
{
	struct round r;
	char got[128] = "", one[32];

	c->nrooms = n;
	round_begin(&r, SX_RECEIPTS, "{\"receipts\":{\"enabled\":true}}", c,
	            prev_blob);
	ss_ext_rc_out(c, &r.prev, &r.now);
	for (int i = 0; i < r.out.nback; i++) {
		snprintf(one, sizeof(one), "%s@%lld", r.out.back[i],
		         (long long)r.out.back_since[i]);
		strcat(got, one);
	}
	assert_string_equal(got, back);
	return round_end(&r);
}

/* receipts: a room out of scope keeps the position it left at */
static void
test_rc_out(void **state)
{
	struct ss_ext_room rooms[4];
	struct ss_ctx c;
	char *b1, *b2, *b3, *b4;

	(void)state;
	ctx_init(&c, rooms);
	c.is_new_conn = true;
	b1 = rc_round(&c, 4, NULL, "");
	assert_null(strstr(b1, "\"ro\""));
	c.is_new_conn = false;
	c.from_pos = 10;
	/* !3 and !4 leave: their receipts were sent up to 10 */
	b2 = rc_round(&c, 2, b1, "");
	assert_non_null(strstr(b2, "\"ro\":{\"!3\":10,\"!4\":10}"));
	/* still out a round later: kept as they were, the same blob */
	c.from_pos = 20;
	b3 = rc_round(&c, 2, b2, "");
	assert_string_equal(b3, b2);
	/* back: the receipts after 10, and no longer kept */
	c.from_pos = 30;
	b4 = rc_round(&c, 4, b3, "!3@10!4@10");
	assert_null(strstr(b4, "\"ro\""));
	free(b1);
	free(b2);
	free(b3);
	free(b4);
}

static void
test_state_text(void **state)
{
	struct ss_ext_state st;
	char *t;

	(void)state;
	ss_ext_state_parse("{\"ad\":[\"!a\",\"!b\"],\"rc\":[]}", &st);
	assert_true(st.was_on[SX_ACCOUNT_DATA]);
	assert_true(st.was_on[SX_RECEIPTS]);
	assert_false(st.was_on[SX_TYPING]);
	assert_non_null(map_get(&st.scope[SX_ACCOUNT_DATA], "!b"));
	t = ss_ext_state_text(&st);
	ss_ext_state_free(&st);
	ss_ext_state_parse(t, &st);
	free(t);
	assert_int_equal(map_count(&st.scope[SX_ACCOUNT_DATA]), 2);
	assert_true(st.was_on[SX_RECEIPTS]);
	ss_ext_state_free(&st);
	/* an extension with the same rooms as an earlier one names it */
	ss_ext_state_parse("{\"ad\":[\"!a\",\"!b\"]}", &st);
	st.was_on[SX_RECEIPTS] = true;
	map_put(&st.scope[SX_RECEIPTS], "!b", (void *)1);
	map_put(&st.scope[SX_RECEIPTS], "!a", (void *)1);
	t = ss_ext_state_text(&st);
	assert_string_equal(t, "{\"ad\":[\"!a\",\"!b\"],\"rc\":\"ad\"}");
	ss_ext_state_free(&st);
	ss_ext_state_parse(t, &st);
	free(t);
	assert_true(st.was_on[SX_RECEIPTS]);
	assert_int_equal(map_count(&st.scope[SX_RECEIPTS]), 2);
	assert_non_null(map_get(&st.scope[SX_RECEIPTS], "!a"));
	ss_ext_state_free(&st);
	/* garbage is "nothing was on" */
	ss_ext_state_parse("{not json", &st);
	for (int k = 0; k < SX_COUNT; k++)
		assert_false(st.was_on[k]);
	ss_ext_state_free(&st);
}

/* a new since is no sticky change; any other field is */
static void
test_sticky_same(void **state)
{
	struct json_object *a, *b;

	(void)state;
	a = J("{\"to_device\":{\"enabled\":true,\"since\":\"5\"},"
	      "\"typing\":{\"enabled\":true}}");
	b = J("{\"typing\":{\"enabled\":true},"
	      "\"to_device\":{\"since\":\"9\",\"enabled\":true}}");
	assert_true(ss_ext_sticky_same(a, b));
	json_object_put(b);
	b = J("{\"typing\":{\"enabled\":true},\"to_device\":{"
	      "\"since\":\"9\",\"enabled\":true,\"limit\":5}}");
	assert_false(ss_ext_sticky_same(a, b));
	json_object_put(b);
	b = J("{\"to_device\":{\"enabled\":true}}");
	assert_false(ss_ext_sticky_same(a, b));
	json_object_put(b);
	json_object_put(a);
}

/* the same rooms, added in any order, are the same blob */
static void
test_state_canonical(void **state)
{
	struct ss_ext_state x, y;
	char id[16], *tx, *ty;

	(void)state;
	ss_ext_state_parse(NULL, &x);
	ss_ext_state_parse(NULL, &y);
	x.was_on[SX_TYPING] = y.was_on[SX_TYPING] = true;
	for (int i = 0; i < 200; i++) {
		snprintf(id, sizeof(id), "!%d", i);
		map_put(&x.scope[SX_TYPING], id, (void *)1);
		snprintf(id, sizeof(id), "!%d", 199 - i);
		map_put(&y.scope[SX_TYPING], id, (void *)1);
	}
	tx = ss_ext_state_text(&x);
	ty = ss_ext_state_text(&y);
	assert_string_equal(tx, ty);
	free(tx);
	free(ty);
	ss_ext_state_free(&x);
	ss_ext_state_free(&y);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_check),
	    cmocka_unit_test(test_cfg),
	    cmocka_unit_test(test_scope),
	    cmocka_unit_test(test_sort),
	    cmocka_unit_test(test_rc_out),
	    cmocka_unit_test(test_state_text),
	    cmocka_unit_test(test_sticky_same),
	    cmocka_unit_test(test_state_canonical),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
