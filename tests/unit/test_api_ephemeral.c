/*
 * The api's typing table (api/ephemeral.c): answers only for a room and a
 * member it knows, takes newer lists only, drops a member on their
 * membership notice, refuses a Postgres answer that raced a change,
 * forgets everything on request, tells a waiter its list moved, and stays
 * within EPH_ROOMS_MAX rooms, evicting the least recently used first.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <cmocka.h>

#include "api.h"
#include "proto.h"

static int
setup(void **state)
{
	struct api *api = calloc(1, sizeof(*api));

	api->base = event_base_new();
	eph_init(api);
	*state = api;
	return 0;
}

static int
teardown(void **state)
{
	struct api *api = *state;

	eph_shutdown(api);
	event_base_free(api->base);
	free(api);
	return 0;
}

static void
typing_notice(struct api *api, const char *room, int64_t pos, const char *ids)
{
	eph_notice(api, &(struct proto_notice){.type = PROTO_NOTICE_TYPING,
	                                       .pos = pos,
	                                       .room_id = room,
	                                       .user_ids = ids});
}

static void
member_notice(struct api *api, const char *room, const char *user)
{
	eph_notice(api, &(struct proto_notice){.type = PROTO_NOTICE_MEMBERSHIP,
	                                       .pos = 1,
	                                       .room_id = room,
	                                       .user_id = user,
	                                       .membership = "leave"});
}

static bool
get(struct api *api, const char *room, const char *user, int64_t *pos,
    const char **ids)
{
	uint64_t mark;
	int64_t early, stored;

	return eph_typing_get(api, room, user, pos, &early, &stored, ids,
	                      &mark);
}

static void
test_fill_and_notice(void **state)
{
	struct api *api = *state;
	const char *ids;
	int64_t pos;

	assert_false(get(api, "!r", "@a", &pos, &ids));
	/* a notice alone knows the list, not who may read it */
	typing_notice(api, "!r", 5, "[\"@b\"]");
	assert_false(get(api, "!r", "@a", &pos, &ids));
	/* Postgres confirms @a (its older row does not win over the notice) */
	eph_typing_fill(api, "!r", "@a", eph_fill_mark(api), 3, "[]", true);
	assert_true(get(api, "!r", "@a", &pos, &ids));
	assert_int_equal(pos, 5);
	assert_string_equal(ids, "[\"@b\"]");
	/* a non-member stays with Postgres */
	eph_typing_fill(api, "!r", "@x", eph_fill_mark(api), 5, "[\"@b\"]",
	                false);
	assert_false(get(api, "!r", "@x", &pos, &ids));
	/* newer lists replace, older ones do not */
	typing_notice(api, "!r", 9, "[]");
	typing_notice(api, "!r", 7, "[\"@c\"]");
	assert_true(get(api, "!r", "@a", &pos, &ids));
	assert_int_equal(pos, 9);
	assert_string_equal(ids, "[]");
}

static void
test_membership_and_races(void **state)
{
	struct api *api = *state;
	const char *ids;
	int64_t pos;
	uint64_t mark;

	eph_typing_fill(api, "!r", "@a", eph_fill_mark(api), 2, "[]", true);
	eph_typing_fill(api, "!r", "@b", eph_fill_mark(api), 2, "[]", true);
	member_notice(api, "!r", "@a");
	assert_false(get(api, "!r", "@a", &pos, &ids));
	assert_true(get(api, "!r", "@b", &pos, &ids));
	/* a read sent before a membership notice (any room) fills nothing */
	mark = eph_fill_mark(api);
	member_notice(api, "!other", "@z");
	eph_typing_fill(api, "!r", "@a", mark, 2, "[]", true);
	assert_false(get(api, "!r", "@a", &pos, &ids));
	/* nor one sent before the table was forgotten */
	mark = eph_fill_mark(api);
	eph_forget_all(api);
	eph_typing_fill(api, "!r", "@b", mark, 2, "[]", true);
	assert_false(get(api, "!r", "@b", &pos, &ids));
}

/* A request for the typing of !r. */
static void
typing_req(struct sreq *r)
{
	memset(r, 0, sizeof(*r));
	r->p.has_typing = true;
	r->p.typing_room = "!r";
}

static void
test_changed_since_read(void **state)
{
	struct api *api = *state;
	struct sreq r;
	const char *ids;
	int64_t pos, early, stored;

	typing_req(&r);
	assert_false(eph_typing_changed(api, &r)); /* read from Postgres */
	eph_typing_fill(api, "!r", "@a", eph_fill_mark(api), 2, "[]", true);
	assert_true(eph_typing_get(api, "!r", "@a", &pos, &early, &stored, &ids,
	                           &r.typing_mark));
	assert_false(eph_typing_changed(api, &r));
	typing_notice(api, "!r", 2, "[\"@b\"]"); /* same pos: old */
	assert_false(eph_typing_changed(api, &r));
	typing_notice(api, "!r", 4, "[\"@b\"]");
	assert_true(eph_typing_changed(api, &r));
	assert_true(eph_typing_get(api, "!r", "@a", &pos, &early, &stored, &ids,
	                           &r.typing_mark));
	eph_forget_all(api); /* gone: unknown, so wake */
	assert_true(eph_typing_changed(api, &r));
}

static void
early_notice(struct api *api, const char *room, uint64_t seq, int64_t pos,
             const char *ids)
{
	eph_notice(api,
	           &(struct proto_notice){.type = PROTO_NOTICE_TYPING_EARLY,
	                                  .seq = seq,
	                                  .pos = pos,
	                                  .room_id = room,
	                                  .user_ids = ids});
}

static void
stored_notice(struct api *api, const char *room, int64_t pos, int64_t early,
              const char *ids)
{
	eph_notice(api, &(struct proto_notice){.type = PROTO_NOTICE_TYPING,
	                                       .pos = pos,
	                                       .room_id = room,
	                                       .user_ids = ids,
	                                       .early = early});
}

/* @a's read of !r for r: its place and list. */
static bool
get_r(struct api *api, struct sreq *r, int64_t *pos, int64_t *early,
      int64_t *stored, const char **ids)
{
	return eph_typing_get(api, "!r", "@a", pos, early, stored, ids,
	                      &r->typing_mark);
}

/*
 * Lists sent before their commit: each is news at (last commit, seq);
 * its commit, or the commit of an older list, changes nothing (no
 * second wake); a different stored list replaces it.
 */
static void
test_early(void **state)
{
	struct api *api = *state;
	struct sreq r;
	const char *ids;
	int64_t pos, early, stored;

	typing_req(&r);
	eph_typing_fill(api, "!r", "@a", eph_fill_mark(api), 4, "[]", true);
	early_notice(api, "!r", 10, 8, "[\"@b\"]");
	assert_true(get_r(api, &r, &pos, &early, &stored, &ids));
	assert_int_equal(pos, 8);
	assert_int_equal(early, 10);
	assert_int_equal(stored, 0);
	assert_string_equal(ids, "[\"@b\"]");
	assert_true(eph_typing_seen(api, &r, "!r"));
	/* a second change before the commit: a later place */
	early_notice(api, "!r", 11, 8, "[\"@b\",\"@c\"]");
	assert_false(eph_typing_seen(api, &r, "!r"));
	assert_true(get_r(api, &r, &pos, &early, &stored, &ids));
	assert_int_equal(pos, 8);
	assert_int_equal(early, 11);
	/* the first list's commit is older than the second: ignored */
	stored_notice(api, "!r", 9, 10, "[\"@b\"]");
	assert_true(eph_typing_seen(api, &r, "!r"));
	assert_true(get_r(api, &r, &pos, &early, &stored, &ids));
	assert_string_equal(ids, "[\"@b\",\"@c\"]");
	/* the second's commit repeats what r shows: no news, same place */
	stored_notice(api, "!r", 12, 11, "[\"@b\",\"@c\"]");
	assert_true(eph_typing_seen(api, &r, "!r"));
	assert_true(get_r(api, &r, &pos, &early, &stored, &ids));
	assert_int_equal(pos, 8);
	assert_int_equal(early, 11);
	assert_int_equal(stored, 12);
	/* a Postgres answer: an older row loses, its own row places it */
	eph_typing_fill(api, "!r", "@a", eph_fill_mark(api), 12, "[\"@b\"]",
	                true);
	eph_typing_fill(api, "!r", "@a", eph_fill_mark(api), 13,
	                "[\"@b\",\"@c\"]", true);
	assert_true(eph_typing_seen(api, &r, "!r"));
	assert_true(get_r(api, &r, &pos, &early, &stored, &ids));
	assert_int_equal(pos, 8);
	assert_int_equal(early, 11);
	assert_int_equal(stored, 13);
	assert_string_equal(ids, "[\"@b\",\"@c\"]");
	/* the same list sent early again is no news either */
	early_notice(api, "!r", 13, 12, "[\"@b\",\"@c\"]");
	assert_true(eph_typing_seen(api, &r, "!r"));
	/* a stored list that differs (its body was not sent early) wins */
	stored_notice(api, "!r", 14, 0, "[]");
	assert_false(eph_typing_seen(api, &r, "!r"));
	assert_true(get_r(api, &r, &pos, &early, &stored, &ids));
	assert_int_equal(pos, 14);
	assert_int_equal(early, 0);
	assert_string_equal(ids, "[]");
	/* another room's notice is not r's */
	assert_false(eph_typing_seen(api, &r, "!other"));
}

static void
test_bounded(void **state)
{
	struct api *api = *state;
	unsigned long long hits, misses;
	char room[32];
	const char *ids;
	int64_t pos;
	size_t n;

	for (int i = 0; i <= EPH_ROOMS_MAX; i++) {
		snprintf(room, sizeof(room), "!r%d", i);
		eph_typing_fill(api, room, "@a", eph_fill_mark(api), i, "[]",
		                true);
	}
	eph_counts(api, &hits, &misses, &n);
	assert_true(n <= EPH_ROOMS_MAX);
	assert_true(get(api, room, "@a", &pos, &ids)); /* the newest */
}

static void
fill(struct api *api, const char *prefix, int i)
{
	char room[32];

	snprintf(room, sizeof(room), "%s%d", prefix, i);
	eph_typing_fill(api, room, "@a", eph_fill_mark(api), 1, "[]", true);
}

static bool
has(struct api *api, const char *prefix, int i)
{
	char room[32];
	const char *ids;
	int64_t pos;

	snprintf(room, sizeof(room), "%s%d", prefix, i);
	return get(api, room, "@a", &pos, &ids);
}

/*
 * A full table evicts the room a request used least recently, one per
 * new room, even when every room was used within the same millisecond.
 */
static void
test_eviction_order(void **state)
{
	struct api *api = *state;
	unsigned long long hits, misses;
	size_t n;

	for (int i = 0; i < EPH_ROOMS_MAX; i++)
		fill(api, "!r", i);
	assert_true(has(api, "!r", 0)); /* read: now the most recent */
	fill(api, "!new", 0);
	assert_false(has(api, "!r", 1)); /* the least recent went */
	assert_true(has(api, "!r", 0));
	fill(api, "!new", 1);
	assert_false(has(api, "!r", 2));
	assert_true(has(api, "!r", 3));
	assert_true(has(api, "!new", 0));
	eph_counts(api, &hits, &misses, &n);
	assert_int_equal(n, EPH_ROOMS_MAX);
}

/* Rooms keep coming: the newest EPH_ROOMS_MAX are the ones kept. */
static void
test_eviction_churn(void **state)
{
	struct api *api = *state;
	unsigned long long hits, misses;
	size_t n;

	for (int i = 0; i < 3 * EPH_ROOMS_MAX; i++)
		fill(api, "!c", i);
	eph_counts(api, &hits, &misses, &n);
	assert_int_equal(n, EPH_ROOMS_MAX);
	assert_false(has(api, "!c", 2 * EPH_ROOMS_MAX - 1));
	assert_true(has(api, "!c", 2 * EPH_ROOMS_MAX));
	assert_true(has(api, "!c", 3 * EPH_ROOMS_MAX - 1));
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_setup_teardown(test_fill_and_notice, setup,
	                                    teardown),
	    cmocka_unit_test_setup_teardown(test_membership_and_races, setup,
	                                    teardown),
	    cmocka_unit_test_setup_teardown(test_changed_since_read, setup,
	                                    teardown),
	    cmocka_unit_test_setup_teardown(test_early, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_bounded, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_eviction_order, setup,
	                                    teardown),
	    cmocka_unit_test_setup_teardown(test_eviction_churn, setup,
	                                    teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
