/*
 * The store against a real Postgres (SYNCV3_TEST_DB; skipped when unset):
 * the equivalents of SEED-SPEC §9's storage tests (events and dedup,
 * state at a position, joined rooms at a position, visible ranges,
 * to-device, typing) plus contract 1 (CAS), gaps, overlap, membership
 * histories, compact state and cleanup, and batches of several messages
 * (applied as one group, with a message Postgres rejects failing alone).
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
#include "acc_query.h"
#include "pg.h"
#include "store_int.h"
#include "util.h"

#include "testdata.h"

static struct store *st;
static PGconn *db;
static int counter;


/* One value of a query with up to 2 text params, as a new string. */
static char *
qs(const char *sql, const char *a, const char *b)
{
	const char *p[2] = {a, b};
	PGresult *r = PQexecParams(db, sql, a ? (b ? 2 : 1) : 0, NULL, p,
	    NULL, NULL, 0);
	char *v;

	if (PQresultStatus(r) != PGRES_TUPLES_OK)
		fail_msg("%s: %s", sql, PQerrorMessage(db));
	v = PQntuples(r) && !PQgetisnull(r, 0, 0) ?
	    xstrdup(PQgetvalue(r, 0, 0)) : NULL;
	PQclear(r);
	return v;
}

static long long
qi(const char *sql, const char *a, const char *b)
{
	char *v = qs(sql, a, b);
	long long n = v ? strtoll(v, NULL, 10) : -1;

	free(v);
	return n;
}

static long long
nid(const char *event_id)
{
	return qi("SELECT nid FROM syncv3_events WHERE event_id = $1",
	    event_id, NULL);
}

static void
add_device(const char *user, const char *dev)
{
	char hash[128];
	const char *p[3] = {user, dev, hash};
	PGresult *r;

	snprintf(hash, sizeof(hash), "%s/%s", user, dev);
	r = PQexecParams(db, "INSERT INTO syncv3_devices (user_id, device_id,"
	    " token_hash, token_enc) VALUES ($1, $2, $3, 'x')", 3, NULL, p,
	    NULL, NULL, 0);
	assert_int_equal(PQresultStatus(r), PGRES_COMMAND_OK);
	PQclear(r);
}

/* Applies body as one batch; m is left for the caller to inspect. */
static void
apply_raw(struct store_msg *m, const char *user, const char *dev,
    const char *since_in, const char *next, const char *body, size_t len)
{
	memset(m, 0, sizeof(*m));
	m->user_id = user;
	m->device_id = dev;
	m->since_in = since_in;
	m->next_batch = next;
	m->body = body;
	m->body_len = len;
	assert_int_equal(store_batch_begin(st), 0);
	store_apply(st, m);
	assert_int_equal(store_batch_commit(st), 0);
}

/* Applies body with the device's current since; asserts an ack. */
static void
apply_body(const char *user, const char *dev, const char *body, size_t len)
{
	struct store_msg m;
	char *since = qs("SELECT since FROM syncv3_devices WHERE user_id = $1 "
	    "AND device_id = $2", user, dev);
	char next[32];

	snprintf(next, sizeof(next), "n%d", ++counter);
	apply_raw(&m, user, dev, since, next, body, len);
	if (!m.ok)
		fail_msg("nack: %s", m.error);
	store_msg_reset(&m);
	free(since);
}

static void
apply_file(const char *user, const char *dev, const char *file)
{
	size_t len;
	char *b = slurp(file, &len);

	apply_body(user, dev, b, len);
	free(b);
}

static void
apply_str(const char *user, const char *dev, const char *body)
{
	apply_body(user, dev, body, strlen(body));
}

static int
setup(void **state)
{
	const char *conn = getenv("SYNCV3_TEST_DB");

	(void)state;
	if (conn == NULL || *conn == '\0')
		return 0;
	if ((db = PQconnectdb(conn)) == NULL || PQstatus(db) != CONNECTION_OK)
		return -1;
	PQsetNoticeProcessor(db, NULL, NULL);
	PQclear(PQexec(db, "DROP SCHEMA public CASCADE"));
	PQclear(PQexec(db, "CREATE SCHEMA public"));
	if ((st = store_new(conn, "test", 1200)) == NULL ||
	    store_take_writer(st) != 1)
		return -1;
	add_device("@alice:hs", "A1");
	add_device("@alice:hs", "A2");
	add_device("@bob:hs", "B1");
	add_device("@carol:hs", "C1");
	return 0;
}

static int
teardown(void **state)
{
	(void)state;
	store_free(st);
	if (db != NULL)
		PQfinish(db);
	return 0;
}

#define NEED_DB()                                                              \
	do {                                                                   \
		if (db == NULL)                                                \
			skip();                                                \
	} while (0)

static void
test_events_dedup_and_bytes(void **state)
{
	size_t len;
	char *b, *json;
	const char *want = "{\"type\":\"m.room.message\",\"sender\":\"@bob:hs\","
	    "\"content\":{\"body\":\"hi \\u00e9 \\/ \\u0000 end\",\"msgtype\":"
	    "\"m.text\"},\"event_id\":\"$msg1\",\"origin_server_ts\":6}";

	(void)state;
	NEED_DB();
	b = slurp("initial.json", &len);
	apply_file("@alice:hs", "A1", "initial.json");
	assert_int_equal(qi("SELECT count(*) FROM syncv3_events", NULL, NULL),
	    8);
	/* bob's poller delivers the same room: stored once */
	apply_file("@bob:hs", "B1", "initial.json");
	assert_int_equal(qi("SELECT count(*) FROM syncv3_events", NULL, NULL),
	    8);
	json = qs("SELECT json FROM syncv3_events WHERE event_id = '$msg1'",
	    NULL, NULL);
	assert_string_equal(json, want);
	free(json);
	/* state block events are not timeline; nids follow arrival order */
	assert_int_equal(qi("SELECT count(*) FROM syncv3_events WHERE NOT "
	    "is_timeline", NULL, NULL), 4);
	assert_true(nid("$create") < nid("$bob_join"));
	assert_true(nid("$bob_join") < nid("$msg1"));
	assert_int_equal(qi("SELECT count(*) FROM syncv3_state WHERE room_id ="
	    " '!r1:hs'", NULL, NULL), 6);
	assert_int_equal(qi("SELECT joined_count FROM syncv3_rooms WHERE "
	    "room_id = '!r1:hs'", NULL, NULL), 2);
	json = qs("SELECT name FROM syncv3_rooms WHERE room_id = '!r1:hs'",
	    NULL, NULL);
	assert_string_equal(json, "Room One");
	free(json);
	assert_int_equal(qi("SELECT last_nid FROM syncv3_rooms WHERE room_id "
	    "= '!r1:hs'", NULL, NULL), nid("$topic1"));
	/* per-user data is per user */
	assert_int_equal(qi("SELECT count(*) FROM syncv3_account_data", NULL,
	    NULL), 6);
	assert_int_equal(qi("SELECT count(*) FROM syncv3_receipts", NULL, NULL),
	    2);
	assert_int_equal(qi("SELECT count(*) FROM syncv3_device_lists", NULL,
	    NULL), 6);
	assert_int_equal(qi("SELECT count(*) FROM syncv3_user_rooms WHERE "
	    "user_id = '@alice:hs'", NULL, NULL), 3);
	json = qs("SELECT membership || ' ' || coalesce(heroes, '') || ' ' || "
	    "notification_count FROM syncv3_user_rooms WHERE user_id = "
	    "'@alice:hs' AND room_id = '!r1:hs'", NULL, NULL);
	assert_string_equal(json, "join [\"@bob:hs\"] 3");
	free(json);
	json = qs("SELECT membership || ' ' || (invite_state IS NOT NULL) FROM "
	    "syncv3_user_rooms WHERE user_id = '@alice:hs' AND room_id = "
	    "'!inv:hs'", NULL, NULL);
	assert_string_equal(json, "invite true");
	free(json);
	json = qs("SELECT membership FROM syncv3_user_rooms WHERE user_id = "
	    "'@alice:hs' AND room_id = '!old:hs'", NULL, NULL);
	assert_string_equal(json, "ban");
	free(json);
	/* the position covers everything committed */
	assert_true(qi("SELECT pos FROM syncv3_position", NULL, NULL) >=
	    qi("SELECT max(nid) FROM syncv3_events", NULL, NULL));
	assert_int_equal(qi("SELECT count(*) FROM syncv3_devices WHERE "
	    "is_initial_done", NULL, NULL), 2);
	free(b);
}

static void
test_cas(void **state)
{
	struct store_msg m;
	size_t len;
	char *b, *since;

	(void)state;
	NEED_DB();
	b = slurp("initial.json", &len);
	since = qs("SELECT since FROM syncv3_devices WHERE user_id = "
	    "'@alice:hs' AND device_id = 'A1'", NULL, NULL);
	/* a resend of what is committed: ok, nothing stored twice */
	apply_raw(&m, "@alice:hs", "A1", "", since, b, len);
	assert_true(m.ok);
	assert_string_equal(m.since, since);
	store_msg_reset(&m);
	assert_int_equal(qi("SELECT count(*) FROM syncv3_to_device WHERE "
	    "user_id = '@alice:hs'", NULL, NULL), 2);
	/* another since: nack with the committed one */
	apply_raw(&m, "@alice:hs", "A1", "old", "other", b, len);
	assert_false(m.ok);
	assert_string_equal(m.error, "since mismatch");
	assert_string_equal(m.since, since);
	store_msg_reset(&m);
	apply_raw(&m, "@nobody:hs", "X", "", "s1", b, len);
	assert_false(m.ok);
	assert_string_equal(m.error, "unknown device");
	store_msg_reset(&m);
	/* not JSON: nack, since unchanged */
	apply_raw(&m, "@alice:hs", "A1", since, "next", "{oops", 5);
	assert_false(m.ok);
	assert_string_equal(m.error, "bad body");
	store_msg_reset(&m);
	free(b);
	b = qs("SELECT since FROM syncv3_devices WHERE user_id = '@alice:hs' "
	    "AND device_id = 'A1'", NULL, NULL);
	assert_string_equal(b, since);
	free(b);
	free(since);
}

static long long
cur_nid(const char *room, const char *type, const char *sk)
{
	char sql[256];

	snprintf(sql, sizeof(sql), "SELECT nid FROM syncv3_state WHERE "
	    "room_id = $1 AND type = $2 AND state_key = '%s' AND to_pos IS "
	    "NULL", sk);
	return qi(sql, room, type);
}

static bool
state_has(int64_t pos, long long want)
{
	int64_t *nids;
	size_t n;
	bool found = false;

	assert_int_equal(query_state_at(db, "!r1:hs", pos, &nids, &n), 0);
	for (size_t i = 0; i < n; i++)
		found |= nids[i] == want;
	free(nids);
	return found;
}

static void
test_state_at_position(void **state)
{
	char *v;

	(void)state;
	NEED_DB();
	apply_file("@alice:hs", "A1", "incremental.json");
	assert_int_equal(cur_nid("!r1:hs", "m.room.name", ""), nid("$name2"));
	assert_true(state_has(nid("$name2") - 1, nid("$name1")));
	assert_false(state_has(nid("$name2") - 1, nid("$name2")));
	assert_true(state_has(nid("$name2"), nid("$name2")));
	assert_false(state_has(nid("$name2"), nid("$name1")));
	/* before the room existed: nothing */
	assert_false(state_has(nid("$create") - 1, nid("$create")));
	v = qs("SELECT name || ' ' || (last_nid = $1::bigint)::text FROM "
	    "syncv3_rooms WHERE room_id = '!r1:hs'", "0", NULL);
	assert_non_null(strstr(v, "Room Two"));
	free(v);
	assert_int_equal(qi("SELECT last_nid FROM syncv3_rooms WHERE room_id "
	    "= '!r1:hs'", NULL, NULL), nid("$msg3"));
}

static void
test_limited_gap(void **state)
{
	long long rows;

	(void)state;
	NEED_DB();
	rows = qi("SELECT count(*) FROM syncv3_state WHERE type = "
	    "'m.room.topic'", NULL, NULL);
	apply_file("@alice:hs", "A1", "limited.json");
	/* the state block is the state before the timeline */
	assert_int_equal(cur_nid("!r1:hs", "m.room.name", ""), nid("$name3"));
	assert_true(nid("$name3") < nid("$msg4"));
	assert_int_equal(cur_nid("!r1:hs", "m.room.member", "@carol:hs"),
	    nid("$carol_join"));
	/* the known, unchanged topic is not re-applied */
	assert_int_equal(qi("SELECT count(*) FROM syncv3_state WHERE type = "
	    "'m.room.topic'", NULL, NULL), rows);
	/* a lagging poller (bob) replays the older incremental: no change */
	apply_file("@bob:hs", "B1", "incremental.json");
	assert_int_equal(cur_nid("!r1:hs", "m.room.name", ""), nid("$name3"));
	/* nor does its state block roll the name back */
	apply_str("@bob:hs", "B1", "{\"rooms\":{\"join\":{\"!r1:hs\":{\"state\":"
	    "{\"events\":[{\"type\":\"m.room.name\",\"state_key\":\"\","
	    "\"sender\":\"@alice:hs\",\"content\":{\"name\":\"Room Two\"},"
	    "\"event_id\":\"$name2\",\"origin_server_ts\":11}]},\"timeline\":"
	    "{\"limited\":true,\"events\":[]}}}}}");
	assert_int_equal(cur_nid("!r1:hs", "m.room.name", ""), nid("$name3"));
	assert_int_equal(qi("SELECT count(*) FROM syncv3_state WHERE room_id ="
	    " '!r1:hs' AND type = 'm.room.name' AND state_key = '' AND to_pos "
	    "IS NULL", NULL, NULL), 1);
}

static void
test_overlap_and_duplicates(void **state)
{
	long long before;

	(void)state;
	NEED_DB();
	before = qi("SELECT count(*) FROM syncv3_events", NULL, NULL);
	apply_file("@alice:hs", "A1", "overlap.json");
	/* $topic2 (state and timeline) and $msg5 (twice): once each */
	assert_int_equal(qi("SELECT count(*) FROM syncv3_events", NULL, NULL),
	    before + 2);
	assert_int_equal(qi("SELECT is_timeline::int FROM syncv3_events WHERE "
	    "event_id = '$topic2'", NULL, NULL), 1);
	assert_int_equal(cur_nid("!r1:hs", "m.room.topic", ""), nid("$topic2"));
	assert_int_equal(qi("SELECT from_pos FROM syncv3_state WHERE nid = "
	    "(SELECT nid FROM syncv3_events WHERE event_id = '$topic2')", NULL,
	    NULL), nid("$topic2"));
	assert_int_equal(qi("SELECT count(*) FROM syncv3_state GROUP BY "
	    "room_id, type, state_key, to_pos IS NULL HAVING to_pos IS NULL "
	    "ORDER BY 1 DESC LIMIT 1", NULL, NULL), 1);
}

static void
test_bad_events_rest_stored(void **state)
{
	(void)state;
	NEED_DB();
	apply_file("@carol:hs", "C1", "bad_events.json");
	assert_int_equal(qi("SELECT count(*) FROM syncv3_events WHERE event_id"
	    " LIKE '$bad%'", NULL, NULL), 0);
	assert_true(nid("$good") > 0);
	assert_int_equal(qi("SELECT count(*) FROM syncv3_to_device WHERE "
	    "user_id = '@carol:hs'", NULL, NULL), 1);
}

static bool
joined_at(const char *user, const char *room, int64_t pos)
{
	char **rooms;
	size_t n;
	bool found = false;

	assert_int_equal(query_joined_at(db, user, pos, &rooms, &n), 0);
	for (size_t i = 0; i < n; i++) {
		found |= strcmp(rooms[i], room) == 0;
		free(rooms[i]);
	}
	free(rooms);
	return found;
}

static char *
my_membership(void)
{
	return qs("SELECT membership FROM syncv3_user_rooms WHERE user_id = "
	    "'@alice:hs' AND room_id = '!m:hs'", NULL, NULL);
}

static void
test_membership_history(void **state)
{
	static const char *const steps[][2] = {{"m1_invite.json", "invite"},
	    {"m2_join.json", "join"}, {"m3_leave.json", "leave"},
	    {"m4_rejoin.json", "join"}, {"m5_ban.json", "ban"}};
	struct vrange r[8];
	size_t n;
	char *m;

	(void)state;
	NEED_DB();
	for (size_t i = 0; i < 5; i++) {
		apply_file("@alice:hs", "A2", steps[i][0]);
		m = my_membership();
		assert_string_equal(m, steps[i][1]);
		free(m);
	}
	assert_false(joined_at("@alice:hs", "!m:hs", nid("$m_inv")));
	assert_false(joined_at("@alice:hs", "!m:hs", nid("$m_join1") - 1));
	assert_true(joined_at("@alice:hs", "!m:hs", nid("$m_join1")));
	assert_true(joined_at("@alice:hs", "!m:hs", nid("$m_leave") - 1));
	assert_false(joined_at("@alice:hs", "!m:hs", nid("$m_leave")));
	assert_true(joined_at("@alice:hs", "!m:hs", nid("$m_join2")));
	assert_false(joined_at("@alice:hs", "!m:hs", nid("$m_ban")));
	assert_true(joined_at("@bob:hs", "!m:hs", nid("$m_ban")));
	/* visible ranges: [inv, inv], [join1, leave], [join2, ban] */
	assert_int_equal(query_visible_db(db, "@alice:hs", "!m:hs", 0,
	    nid("$m_ban") + 5, r, 8, &n), 0);
	assert_int_equal(n, 3);
	assert_int_equal(r[0].start, nid("$m_inv"));
	assert_int_equal(r[0].end, nid("$m_inv"));
	assert_int_equal(r[1].start, nid("$m_join1"));
	assert_int_equal(r[1].end, nid("$m_leave"));
	assert_int_equal(r[2].start, nid("$m_join2"));
	assert_int_equal(r[2].end, nid("$m_ban"));
	/* the user's membership position is their member event's */
	assert_int_equal(qi("SELECT pos FROM syncv3_user_rooms WHERE user_id ="
	    " '@alice:hs' AND room_id = '!m:hs'", NULL, NULL), nid("$m_ban"));
}

/* SEED-SPEC §7.8: the five documented examples (from = 0). */
static void
test_visible_ranges_examples(void **state)
{
	struct vlog a[] = {{1, "join"}};
	struct vlog b[] = {{5, "join"}};
	struct vlog c[] = {{9, "leave"}};
	struct vlog d[] = {{1, "join"}, {6, "leave"}, {8, "join"},
	    {10, "leave"}};
	struct vlog e[] = {{3, "invite"}, {13, "join"}};
	struct vrange r[8];

	(void)state;
	assert_int_equal(query_visible_ranges(a, 1, false, 0, 10, r), 1);
	assert_true(r[0].start == 1 && r[0].end == 10);
	assert_int_equal(query_visible_ranges(b, 1, false, 0, 10, r), 1);
	assert_true(r[0].start == 5 && r[0].end == 10);
	assert_int_equal(query_visible_ranges(c, 1, true, 0, 10, r), 1);
	assert_true(r[0].start == 0 && r[0].end == 9);
	assert_int_equal(query_visible_ranges(d, 4, false, 0, 10, r), 2);
	assert_true(r[0].start == 1 && r[0].end == 6);
	assert_true(r[1].start == 8 && r[1].end == 10);
	assert_int_equal(query_visible_ranges(e, 2, false, 0, 15, r), 2);
	assert_true(r[0].start == 3 && r[0].end == 3);
	assert_true(r[1].start == 13 && r[1].end == 15);
	assert_int_equal(query_visible_ranges(NULL, 0, true, 4, 7, r), 1);
	assert_true(r[0].start == 4 && r[0].end == 7);
}

static long long
typing_pos(void)
{
	return qi("SELECT pos FROM syncv3_typing WHERE room_id = '!t:hs'",
	    NULL, NULL);
}

static void
test_typing_bumps_only_on_change(void **state)
{
	const char *ab = "{\"rooms\":{\"join\":{\"!t:hs\":{\"ephemeral\":{"
	    "\"events\":[{\"type\":\"m.typing\",\"content\":{\"user_ids\":["
	    "\"@a:hs\",\"@b:hs\"]}}]}}}}}";
	const char *ba = "{\"rooms\":{\"join\":{\"!t:hs\":{\"ephemeral\":{"
	    "\"events\":[{\"type\":\"m.typing\",\"content\":{\"user_ids\":["
	    "\"@b:hs\",\"@a:hs\"]}}]}}}}}";
	const char *none = "{\"rooms\":{\"join\":{\"!t:hs\":{\"ephemeral\":{"
	    "\"events\":[{\"type\":\"m.typing\",\"content\":{\"user_ids\":"
	    "[]}}]}}}}}";
	long long p1, p2;
	char *v;

	(void)state;
	NEED_DB();
	/* an empty list for an unknown room writes nothing */
	apply_str("@alice:hs", "A1", none);
	assert_int_equal(typing_pos(), -1);
	apply_str("@alice:hs", "A1", ab);
	p1 = typing_pos();
	assert_true(p1 > 0);
	/* the same list from other pollers, in another order: no bump */
	apply_str("@bob:hs", "B1", ba);
	apply_str("@carol:hs", "C1", ab);
	assert_int_equal(typing_pos(), p1);
	apply_str("@bob:hs", "B1", none);
	p2 = typing_pos();
	assert_true(p2 > p1);
	v = qs("SELECT user_ids FROM syncv3_typing WHERE room_id = '!t:hs'",
	    NULL, NULL);
	assert_string_equal(v, "[]");
	free(v);
	assert_int_equal(qi("SELECT count(*) FROM syncv3_typing WHERE room_id "
	    "= '!t:hs'", NULL, NULL), 1);
}

static void
test_to_device_order(void **state)
{
	PGresult *r;
	const char *p[2] = {"0", "1"};

	(void)state;
	NEED_DB();
	apply_str("@bob:hs", "B1", "{\"to_device\":{\"events\":["
	    "{\"type\":\"m.t\",\"sender\":\"@x:hs\",\"content\":{\"n\":1}},"
	    "{\"type\":\"m.t\",\"sender\":\"@x:hs\",\"content\":{\"n\":2}},"
	    "{\"content\":{\"n\":3},\"type\":\"m.t\",\"sender\":\"@x:hs\"}]}}");
	r = PQexecParams(db, "SELECT pos, json FROM syncv3_to_device WHERE "
	    "user_id = '@bob:hs' AND json LIKE '%m.t\"%' AND pos > $1::bigint "
	    "ORDER BY pos LIMIT $2::int + 2", 2, NULL, p, NULL, NULL, 0);
	assert_int_equal(PQntuples(r), 3);
	assert_string_equal(PQgetvalue(r, 0, 1), "{\"type\":\"m.t\",\"sender\":"
	    "\"@x:hs\",\"content\":{\"n\":1}}");
	assert_string_equal(PQgetvalue(r, 2, 1), "{\"content\":{\"n\":3},"
	    "\"type\":\"m.t\",\"sender\":\"@x:hs\"}");
	assert_true(strtoll(PQgetvalue(r, 0, 0), NULL, 10) <
	    strtoll(PQgetvalue(r, 1, 0), NULL, 10));
	PQclear(r);
	/* another device of bob's gets none of them */
	assert_int_equal(qi("SELECT count(*) FROM syncv3_to_device WHERE "
	    "user_id = '@bob:hs' AND device_id <> 'B1'", NULL, NULL), 0);
}

/* One member event in a big room costs one state row (seed: a copy). */
static void
test_compact_state(void **state)
{
	size_t cap = 1 << 20, n = 0;
	char *b;
	long long before;

	(void)state;
	NEED_DB();
	b = xmalloc(cap);
	n += (size_t)snprintf(b + n, cap - n, "{\"rooms\":{\"join\":{\"!big:hs"
	    "\":{\"state\":{\"events\":[");
	for (int i = 0; i < 2000; i++)
		n += (size_t)snprintf(b + n, cap - n, "%s{\"type\":"
		    "\"m.room.member\",\"state_key\":\"@u%d:hs\",\"sender\":"
		    "\"@u%d:hs\",\"content\":{\"membership\":\"join\"},"
		    "\"event_id\":\"$big%d\"}", i ? "," : "", i, i, i);
	n += (size_t)snprintf(b + n, cap - n, "]}}}}}");
	apply_body("@alice:hs", "A1", b, n);
	before = qi("SELECT count(*) FROM syncv3_state WHERE room_id = "
	    "'!big:hs'", NULL, NULL);
	assert_int_equal(before, 2000);
	assert_int_equal(qi("SELECT joined_count FROM syncv3_rooms WHERE "
	    "room_id = '!big:hs'", NULL, NULL), 2000);
	apply_str("@alice:hs", "A1", "{\"rooms\":{\"join\":{\"!big:hs\":{"
	    "\"timeline\":{\"events\":[{\"type\":\"m.room.member\",\"state_key\":"
	    "\"@u7:hs\",\"sender\":\"@u7:hs\",\"content\":{\"membership\":"
	    "\"leave\"},\"event_id\":\"$big_leave\"}]}}}}}");
	assert_int_equal(qi("SELECT count(*) FROM syncv3_state WHERE room_id ="
	    " '!big:hs'", NULL, NULL), before + 1);
	assert_int_equal(qi("SELECT joined_count FROM syncv3_rooms WHERE "
	    "room_id = '!big:hs'", NULL, NULL), 1999);
	free(b);
}

static void
test_cleanup(void **state)
{
	int64_t *nids;
	size_t n1, n2;
	long long closed;

	(void)state;
	NEED_DB();
	assert_int_equal(query_state_at(db, "!r1:hs", store_pos(st), &nids,
	    &n1), 0);
	free(nids);
	closed = qi("SELECT count(*) FROM syncv3_state WHERE to_pos IS NOT "
	    "NULL", NULL, NULL);
	assert_true(closed > 0);
	/* a mark in the past, then a horizon of one hour */
	PQclear(PQexec(db, "INSERT INTO syncv3_pos_marks VALUES (now() - "
	    "interval '2 hours', (SELECT pos FROM syncv3_position))"));
	assert_true(store_cleanup(st, 3600) >= closed);
	assert_int_equal(qi("SELECT count(*) FROM syncv3_state WHERE to_pos IS"
	    " NOT NULL", NULL, NULL), 0);
	assert_int_equal(query_state_at(db, "!r1:hs", store_pos(st), &nids,
	    &n2), 0);
	free(nids);
	assert_int_equal(n1, n2);
}

static void
ex(const char *sql)
{
	PGresult *r = PQexec(db, sql);

	if (PQresultStatus(r) != PGRES_COMMAND_OK &&
	    PQresultStatus(r) != PGRES_TUPLES_OK)
		fail_msg("%s: %s", sql, PQerrorMessage(db));
	PQclear(r);
}

static long long
gaps_left(const char *room)
{
	return qi("SELECT count(*) FROM syncv3_order_gaps WHERE room_id = $1",
	    room, NULL);
}

/*
 * Gap rows of late placements (031_order.sql) go once no v3 session and
 * no sliding sync connection can be inside them: one created before a gap
 * was placed keeps it (the marks say when positions were current), and a
 * gap newer than the margin stays whatever the sessions.
 */
static void
test_cleanup_gaps(void **state)
{
	const long long keep = 30 * 86400; /* no horizon: gaps alone */

	(void)state;
	NEED_DB();
	ex("DELETE FROM syncv3_pos_marks; DELETE FROM syncv3_order_gaps; "
	    "DELETE FROM syncv3_sessions; DELETE FROM syncv3_ss_conns");
	ex("INSERT INTO syncv3_pos_marks VALUES (now() - interval '3 hours', "
	    "500), (now() - interval '2 hours', 1000), (now() - interval '30 "
	    "minutes', 2000)");
	ex("INSERT INTO syncv3_order_gaps VALUES ('!ga:hs', 400, 450), "
	    "('!gb:hs', 900, 950), ('!gc:hs', 1500, 1600), ('!gd:hs', 2500, "
	    "2600)");
	/* a session from between the marks may hold any since above 1000,
	 * a connection from before the second any pos above 500 */
	ex("INSERT INTO syncv3_sessions (user_id, device_id, created_at) "
	    "VALUES ('@alice:hs', 'A1', now() - interval '1 hour')");
	ex("INSERT INTO syncv3_ss_conns (user_id, device_id, conn_id, dialect,"
	    " created_at) VALUES ('@alice:hs', 'A1', 'c', 'msc', now() - "
	    "interval '150 minutes')");
	assert_true(store_cleanup(st, keep) >= 1);
	assert_int_equal(gaps_left("!ga:hs"), 0);
	assert_int_equal(gaps_left("!gb:hs"), 1);
	assert_int_equal(gaps_left("!gc:hs"), 1);
	/* the connection expires: the session still holds !gc */
	ex("DELETE FROM syncv3_ss_conns");
	assert_true(store_cleanup(st, keep) >= 1);
	assert_int_equal(gaps_left("!gb:hs"), 0);
	assert_int_equal(gaps_left("!gc:hs"), 1);
	/* and the session: only the gap newer than the margin's mark stays */
	ex("DELETE FROM syncv3_sessions");
	assert_true(store_cleanup(st, keep) >= 1);
	assert_int_equal(gaps_left("!gc:hs"), 0);
	assert_int_equal(gaps_left("!gd:hs"), 1);
	ex("DELETE FROM syncv3_order_gaps; DELETE FROM syncv3_pos_marks");
}

#define RDX_EV(id, target)                                                     \
	"{\"event_id\":\"" id "\",\"type\":\"m.room.redaction\",\"sender\":"  \
	"\"@dave:hs\",\"origin_server_ts\":1,\"redacts\":\"" target "\","      \
	"\"content\":{\"redacts\":\"" target "\"}}"
#define MSG_EV(id)                                                             \
	"{\"event_id\":\"" id "\",\"type\":\"m.room.message\",\"sender\":"    \
	"\"@dave:hs\",\"origin_server_ts\":1,\"content\":{\"body\":\"s\"}}"
#define RDX_BODY(ev)                                                           \
	"{\"next_batch\":\"x\",\"rooms\":{\"join\":{\"!rw:hs\":{\"timeline\":" \
	"{\"events\":[" ev "]}}}}}"

/*
 * A redaction whose target never arrives waits only until it has waited
 * longer than the horizon (034_rdx_wait.sql), whatever its json holds (a
 * lone surrogate escape, which Postgres's json refuses); one within it
 * still prunes its target when that arrives after it.
 */
static void
test_cleanup_redactions(void **state)
{
	char *v;

	(void)state;
	NEED_DB();
	add_device("@dave:hs", "DR");
	apply_str("@dave:hs", "DR", RDX_BODY("{\"event_id\":\"$rw_old\","
	    "\"type\":\"m.room.redaction\",\"sender\":\"@dave:hs\","
	    "\"origin_server_ts\":1,\"redacts\":\"$never\",\"content\":{"
	    "\"redacts\":\"$never\",\"reason\":\"\\ud800\"}}"));
	apply_str("@dave:hs", "DR", RDX_BODY(RDX_EV("$rw_new", "$late")));
	assert_int_equal(qi("SELECT count(*) FROM syncv3_redactions WHERE "
	    "room_id = '!rw:hs'", NULL, NULL), 2);
	ex("UPDATE syncv3_redactions SET at = now() - interval '2 hours' "
	    "WHERE target = '$never'");
	assert_true(store_cleanup(st, 3600) >= 1);
	assert_int_equal(qi("SELECT count(*) FROM syncv3_redactions WHERE "
	    "target = '$never'", NULL, NULL), 0);
	assert_int_equal(qi("SELECT count(*) FROM syncv3_redactions WHERE "
	    "target = '$late'", NULL, NULL), 1);
	/* the target of the one still waiting arrives: stored pruned */
	apply_str("@dave:hs", "DR", RDX_BODY(MSG_EV("$late")));
	v = qs("SELECT json FROM syncv3_events WHERE event_id = '$late'", NULL,
	    NULL);
	assert_non_null(v);
	assert_null(strstr(v, "\"body\""));
	assert_non_null(strstr(v, "redacted_because"));
	free(v);
	assert_int_equal(qi("SELECT count(*) FROM syncv3_redactions WHERE "
	    "room_id = '!rw:hs'", NULL, NULL), 0);
}

#define ORD_BODY(events)                                                       \
	"{\"next_batch\":\"x\",\"rooms\":{\"join\":{\"!ord:hs\":{\"timeline\":" \
	"{\"events\":[" events "]}}}}}"

/*
 * Placements at one spot until float8 has no room left between two keys
 * (031_order.sql): each chunk brings one new event right before the same
 * stored anchor, after the ones placed there before. Every one must still
 * be in upstream's order (the placed rows are given keys again, each below
 * its nid), with a gap row per placement and the renumbering counted.
 */
static void
test_order_exhausted(void **state)
{
	enum { N = 80 };
	char body[1024], want[N * 16 + 64], *got;
	size_t off;

	(void)state;
	NEED_DB();
	add_device("@dave:hs", "DO");
	apply_str("@dave:hs", "DO", ORD_BODY(MSG_EV("$o_b0") "," MSG_EV("$o_a")
	    "," MSG_EV("$o_z")));
	off = (size_t)snprintf(want, sizeof(want), "$o_b0");
	for (int i = 1; i <= N; i++) {
		snprintf(body, sizeof(body), ORD_BODY("{\"event_id\":\"$o_x%d\","
		    "\"type\":\"m.room.message\",\"sender\":\"@dave:hs\","
		    "\"origin_server_ts\":1,\"content\":{\"body\":\"x\"}},"
		    MSG_EV("$o_a")), i);
		apply_str("@dave:hs", "DO", body);
		off += (size_t)snprintf(want + off, sizeof(want) - off,
		    ",$o_x%d", i);
	}
	/* then before one of those placed, itself placed (its key an ord) */
	for (int i = 1; i <= N / 2; i++) {
		snprintf(body, sizeof(body), ORD_BODY("{\"event_id\":\"$o_y%d\","
		    "\"type\":\"m.room.message\",\"sender\":\"@dave:hs\","
		    "\"origin_server_ts\":1,\"content\":{\"body\":\"y\"}},"
		    MSG_EV("$o_x%d")), i, N);
		apply_str("@dave:hs", "DO", body);
	}
	off -= strlen(",$o_xNN");
	for (int i = 1; i <= N / 2; i++)
		off += (size_t)snprintf(want + off, sizeof(want) - off,
		    ",$o_y%d", i);
	snprintf(want + off, sizeof(want) - off, ",$o_x%d,$o_a,$o_z", N);
	got = qs("SELECT string_agg(event_id, ',' ORDER BY coalesce(ord, nid))"
	    " FROM syncv3_events WHERE room_id = '!ord:hs'", NULL, NULL);
	assert_string_equal(got, want);
	free(got);
	assert_int_equal(qi("SELECT count(*) FROM syncv3_events WHERE room_id "
	    "= '!ord:hs' AND ord >= nid", NULL, NULL), 0);
	assert_int_equal(qi("SELECT count(*) FROM syncv3_order_gaps WHERE "
	    "room_id = '!ord:hs'", NULL, NULL), N + N / 2);
	assert_true(store_stats(st)->order_renumbered >= 2);
}

/* Events and to-device messages go in by COPY: the bytes that COPY's
 * text format escapes (backslash, tab, CR, LF) come back exact. */
static void
test_copy_exact_bytes(void **state)
{
	const char *ev = "{\"event_id\":\"$ws\",\t\"type\":\"m.room.message\""
	    ",\r\n\"sender\":\"@dave:hs\",\"origin_server_ts\":1,\n\"content\""
	    ":{\"body\":\"a\\\\b\\n\\t\\\\N\"}\t}";
	const char *td = "{\"type\":\"m.x\",\n\"sender\":\"@x:hs\",\t"
	    "\"content\":{\"k\":\"\\\\.\"}}";
	char body[1024], *v;

	(void)state;
	NEED_DB();
	snprintf(body, sizeof(body), "{\"next_batch\":\"x\",\"rooms\":{\"join\":"
	    "{\"!ws:hs\":{\"timeline\":{\"events\":[%s]}}}},\"to_device\":{"
	    "\"events\":[%s]}}", ev, td);
	add_device("@dave:hs", "D3");
	apply_str("@dave:hs", "D3", body);
	v = qs("SELECT json FROM syncv3_events WHERE event_id = '$ws'", NULL,
	    NULL);
	assert_string_equal(v, ev);
	free(v);
	v = qs("SELECT json FROM syncv3_to_device WHERE user_id = '@dave:hs' "
	    "AND device_id = 'D3'", NULL, NULL);
	assert_string_equal(v, td);
	free(v);
}

/* Several messages in one batch, as the ingest loop gives them. */
static void
apply_batch(struct store_msg *ms, size_t n)
{
	assert_int_equal(store_batch_begin(st), 0);
	for (size_t i = 0; i < n; i++)
		store_apply(st, &ms[i]);
	assert_int_equal(store_batch_commit(st), 0);
}

static void
msg_init(struct store_msg *m, const char *user, const char *dev,
    const char *since_in, const char *next, const char *body)
{
	memset(m, 0, sizeof(*m));
	m->user_id = user;
	m->device_id = dev;
	m->since_in = since_in;
	m->next_batch = next;
	m->body = body;
	m->body_len = strlen(body);
}

#define G_EV(id, type, sk, content)                                            \
	"{\"event_id\":\"" id "\",\"type\":\"" type "\"," sk                   \
	"\"sender\":\"@dave:hs\",\"origin_server_ts\":1,\"content\":"          \
	content "}"
#define G_BODY(events)                                                         \
	"{\"next_batch\":\"x\",\"rooms\":{\"join\":{\"!g:hs\":{\"timeline\":"  \
	"{\"events\":[" events "]}}}}}"

/*
 * A group's writes are only sent (db_q0 in a pipeline) and checked at
 * its end, or, for a batch of one message, by the commit's pipeline: a
 * to-device row Postgres rejects (an injected fault) fails its message
 * alone in a batch of several, and fails a lone message's batch, which
 * leaves nothing behind (no row, since unchanged) and a store that
 * commits the next batch.
 */
#define G_TD(n)                                                                \
	"{\"next_batch\":\"x\",\"to_device\":{\"events\":[{"                   \
	"\"type\":\"m.x\",\"sender\":\"@z:hs\",\"content\":{\"n\":\"" n        \
	"\"}}]}}"
static void
test_later_failure(void **state)
{
	struct store_msg ms[2], lone;

	(void)state;
	NEED_DB();
	PQclear(PQexec(
	    db, "CREATE FUNCTION t_td_poison() RETURNS trigger "
	        "LANGUAGE plpgsql AS $$BEGIN RAISE EXCEPTION 'poison'; END$$"));
	PQclear(PQexec(
	    db, "CREATE TRIGGER t_td_poison BEFORE INSERT ON "
	        "syncv3_to_device FOR EACH ROW WHEN (NEW.json LIKE '%poison%') "
	        "EXECUTE FUNCTION t_td_poison()"));
	add_device("@lf1:hs", "L1");
	add_device("@lf2:hs", "L2");
	msg_init(&ms[0], "@lf1:hs", "L1", "", "l1", G_TD("poison"));
	msg_init(&ms[1], "@lf2:hs", "L2", "", "l1", G_TD("ok"));
	apply_batch(ms, 2);
	assert_false(ms[0].ok);
	assert_string_equal(ms[0].error, "db error");
	assert_true(ms[1].ok);
	store_msg_reset(&ms[0]);
	store_msg_reset(&ms[1]);

	msg_init(&lone, "@lf1:hs", "L1", "", "l2", G_TD("poison"));
	assert_int_equal(store_batch_begin(st), 0);
	store_apply(st, &lone);
	assert_int_equal(store_batch_commit(st), -1);
	store_msg_reset(&lone);
	assert_int_equal(qi("SELECT count(*) FROM syncv3_to_device WHERE "
	                    "user_id = '@lf1:hs'",
	                    NULL, NULL),
	                 0);
	assert_int_equal(qi("SELECT count(*) FROM syncv3_devices WHERE "
	                    "user_id = '@lf1:hs' AND since = ''",
	                    NULL, NULL),
	                 1);
	PQclear(PQexec(db, "DROP TRIGGER t_td_poison ON syncv3_to_device"));

	msg_init(&lone, "@lf1:hs", "L1", "", "l3", G_TD("again"));
	apply_batch(&lone, 1);
	assert_true(lone.ok);
	store_msg_reset(&lone);
	assert_int_equal(qi("SELECT count(*) FROM syncv3_to_device WHERE "
	                    "user_id = '@lf1:hs'",
	                    NULL, NULL),
	                 1);
	assert_int_equal(qi("SELECT count(*) FROM syncv3_to_device WHERE "
	                    "user_id = '@lf2:hs'",
	                    NULL, NULL),
	                 1);
}

/*
 * One batch whose messages depend on each other: the same events from two
 * users' pollers are stored once, a state row the first message opened is
 * closed by the second, a device's second message in the batch sees the
 * since its first one set, and the result is what applying them one by
 * one gives.
 */
static void
test_batch_group(void **state)
{
	struct store_msg ms[4];
	const char *b1 = G_BODY(
	    G_EV("$g_create", "m.room.create", "\"state_key\":\"\",", "{}") ","
	    G_EV("$g_join", "m.room.member", "\"state_key\":\"@dave:hs\",",
		"{\"membership\":\"join\"}") ","
	    G_EV("$g_t1", "m.room.topic", "\"state_key\":\"\",",
		"{\"topic\":\"one\"}") ","
	    G_EV("$g_m1", "m.room.message", "", "{\"body\":\"hi\"}"));
	const char *b2 = G_BODY(
	    G_EV("$g_t1", "m.room.topic", "\"state_key\":\"\",",
		"{\"topic\":\"one\"}") ","
	    G_EV("$g_m1", "m.room.message", "", "{\"body\":\"hi\"}") ","
	    G_EV("$g_t2", "m.room.topic", "\"state_key\":\"\",",
		"{\"topic\":\"two\"}"));
	const char *b3 = G_BODY(
	    G_EV("$g_m2", "m.room.message", "", "{\"body\":\"again\"}"));
	char *v;

	(void)state;
	NEED_DB();
	add_device("@dave:hs", "D1");
	add_device("@erin:hs", "E1");
	msg_init(&ms[0], "@dave:hs", "D1", "", "d1", b1);
	msg_init(&ms[1], "@erin:hs", "E1", "", "e1", b2);
	msg_init(&ms[2], "@dave:hs", "D1", "d1", "d2", b3);
	msg_init(&ms[3], "@erin:hs", "E1", "old", "e9", b3);
	apply_batch(ms, 4);
	assert_true(ms[0].ok);
	assert_true(ms[1].ok);
	assert_true(ms[2].ok);
	assert_string_equal(ms[2].since, "d2");
	assert_false(ms[3].ok);
	assert_string_equal(ms[3].error, "since mismatch");
	assert_string_equal(ms[3].since, "e1");
	for (int i = 0; i < 4; i++)
		store_msg_reset(&ms[i]);
	assert_int_equal(qi("SELECT count(*) FROM syncv3_events WHERE "
	    "room_id = '!g:hs'", NULL, NULL), 6);
	/* one current topic, $g_t1's range ends where $g_t2 starts */
	assert_int_equal(cur_nid("!g:hs", "m.room.topic", ""), nid("$g_t2"));
	assert_int_equal(qi("SELECT to_pos FROM syncv3_state WHERE nid = "
	    "(SELECT nid FROM syncv3_events WHERE event_id = $1)", "$g_t1",
	    NULL), nid("$g_t2"));
	v = qs("SELECT topic || ' ' || last_nid FROM syncv3_rooms WHERE "
	    "room_id = '!g:hs'", NULL, NULL);
	assert_non_null(v);
	assert_true(strncmp(v, "two ", 4) == 0);
	assert_int_equal(strtoll(v + 4, NULL, 10), nid("$g_m2"));
	free(v);
	assert_int_equal(qi("SELECT count(*) FROM syncv3_user_rooms WHERE "
	    "room_id = '!g:hs' AND membership = 'join'", NULL, NULL), 2);
	v = qs("SELECT since FROM syncv3_devices WHERE user_id = '@dave:hs'",
	    NULL, NULL);
	assert_string_equal(v, "d2");
	free(v);
}

/* Per-message failure isolation: Postgres rejects one message of a
 * batch (an injected fault); the others are acked and stored, it alone
 * is nacked and leaves nothing behind. */
static void
test_batch_isolation(void **state)
{
	struct store_msg ms[3];
	const char *good1 = G_BODY(G_EV("$i_ok1", "m.room.message", "",
	    "{\"body\":\"a\"}"));
	const char *bad = G_BODY(G_EV("$i_poison", "m.room.message", "",
	    "{\"body\":\"b\"}") "," G_EV("$i_with_bad", "m.room.message", "",
	    "{\"body\":\"c\"}"));
	const char *good2 = G_BODY(G_EV("$i_ok2", "m.room.message", "",
	    "{\"body\":\"d\"}"));
	char *v;

	(void)state;
	NEED_DB();
	PQclear(PQexec(db, "CREATE FUNCTION t_poison() RETURNS trigger "
	    "LANGUAGE plpgsql AS $$BEGIN RAISE EXCEPTION 'poison'; END$$"));
	PQclear(PQexec(db, "CREATE TRIGGER t_poison BEFORE INSERT ON "
	    "syncv3_events FOR EACH ROW WHEN (NEW.event_id = '$i_poison') "
	    "EXECUTE FUNCTION t_poison()"));
	add_device("@dave:hs", "D2");
	add_device("@erin:hs", "E2");
	add_device("@frank:hs", "F1");
	msg_init(&ms[0], "@dave:hs", "D2", "", "i1", good1);
	msg_init(&ms[1], "@erin:hs", "E2", "", "i1", bad);
	msg_init(&ms[2], "@frank:hs", "F1", "", "i1", good2);
	apply_batch(ms, 3);
	PQclear(PQexec(db, "DROP TRIGGER t_poison ON syncv3_events"));
	assert_true(ms[0].ok);
	assert_false(ms[1].ok);
	assert_string_equal(ms[1].error, "db error");
	assert_true(ms[2].ok);
	assert_int_equal(ms[1].notices.n, 0);
	assert_true(ms[0].notices.n > 0);
	for (int i = 0; i < 3; i++)
		store_msg_reset(&ms[i]);
	assert_true(nid("$i_ok1") > 0);
	assert_true(nid("$i_ok2") > 0);
	assert_int_equal(nid("$i_with_bad"), -1);
	v = qs("SELECT since FROM syncv3_devices WHERE user_id = '@erin:hs' "
	    "AND device_id = 'E2'", NULL, NULL);
	assert_string_equal(v, "");
	free(v);
	assert_true(qi("SELECT pos FROM syncv3_position", NULL, NULL) >=
	    nid("$i_ok2"));
}

/* A notice keeps its own copy of the ids (the body they come from is
 * freed before COMMIT), and only of the ids it has. */
static void
test_notice_copies(void **state)
{
	struct notice_list l = {0};
	char room[] = "!n:hs", user[] = "@n:hs";

	(void)state;
	notice_add(&l, &(struct proto_notice){.type = PROTO_NOTICE_MEMBERSHIP,
	    .pos = 7, .room_id = room, .user_id = user, .membership = "join"});
	notice_add(&l, &(struct proto_notice){.type = PROTO_NOTICE_HEARTBEAT,
	    .pos = 8});
	memset(room, 'x', sizeof(room) - 1);
	memset(user, 'x', sizeof(user) - 1);
	assert_int_equal(l.n, 2);
	assert_int_equal(l.v[0].type, PROTO_NOTICE_MEMBERSHIP);
	assert_int_equal(l.v[0].pos, 7);
	assert_string_equal(l.v[0].room_id, "!n:hs");
	assert_string_equal(l.v[0].user_id, "@n:hs");
	assert_string_equal(l.v[0].membership, "join");
	assert_null(l.v[0].device_id);
	assert_null(l.v[0].state);
	assert_null(l.v[1].room_id);
	assert_int_equal(l.v[1].pos, 8);
	notice_clear(&l);
	assert_int_equal(l.n, 0);
}

#define D_BODY(room, ev, td)                                                   \
	"{\"next_batch\":\"x\",\"rooms\":{\"join\":{\"" room "\":{"           \
	"\"timeline\":{\"events\":[" G_EV(ev, "m.room.message", "",            \
	"{\"body\":\"x\"}") "]}}}},\"to_device\":{\"events\":[{\"type\":"      \
	"\"m.t\",\"sender\":\"@x:hs\",\"content\":{\"n\":\"" td "\"}}]}}"

/* The notice types of m, in order, as a string ("200,202,..."). */
static void
notice_types(const struct store_msg *m, char *out, size_t len)
{
	size_t k = 0;

	out[0] = '\0';
	for (size_t i = 0; i < m->notices.n && k + 8 < len; i++)
		k += (size_t)snprintf(out + k, len - k, "%s%d", i ? "," : "",
		    (int)m->notices.v[i].type);
}

#define K_BODY(prev, limited, events)                                          \
	"{\"next_batch\":\"x\",\"rooms\":{\"join\":{\"!k:hs\":{\"timeline\":"  \
	"{\"prev_batch\":\"" prev "\",\"limited\":" limited                    \
	",\"events\":[" events "]}}}}}"
#define K_EV(id) G_EV(id, "m.room.message", "", "{\"body\":\"k\"}")

/* A chunk boundary of !k:hs (its event, is_end) as "token/limited". */
static char *
chunk_row(const char *event_id, const char *is_end)
{
	return qs(
	    "SELECT c.token || '/' || c.limited FROM syncv3_chunks c JOIN "
	    "syncv3_events e ON e.nid = c.nid WHERE c.room_id = '!k:hs' AND "
	    "e.event_id = $1 AND c.is_end = $2::bool",
	    event_id, is_end);
}

static void
assert_chunk(const char *event_id, const char *is_end, const char *want)
{
	char *v = chunk_row(event_id, is_end);

	if (want == NULL)
		assert_null(v);
	else {
		assert_non_null(v);
		assert_string_equal(v, want);
	}
	free(v);
}

/*
 * Each timeline keeps its boundaries (015_chunks.sql): before its first
 * event upstream's prev_batch, after its last the response's next_batch,
 * by the nid of that event also when another poller stored it first; a
 * second chunk starting at the same event keeps the first token and is
 * limited if either was.
 */
static void
test_chunks(void **state)
{
	char next[32];

	(void)state;
	NEED_DB();
	apply_str("@alice:hs", "A1",
	          K_BODY("pA", "false", K_EV("$k1") "," K_EV("$k2")));
	snprintf(next, sizeof(next), "n%d/false", counter);
	assert_chunk("$k1", "false", "pA/false");
	assert_chunk("$k2", "true", next);
	assert_chunk("$k1", "true", NULL);
	/* bob's poller: $k1 known, a longer chunk, limited */
	apply_str(
	    "@bob:hs", "B1",
	    K_BODY("pB", "true", K_EV("$k1") "," K_EV("$k2") "," K_EV("$k3")));
	assert_chunk("$k1", "false", "pA/true");
	assert_chunk("$k2", "true", next);
	snprintf(next, sizeof(next), "n%d/false", counter);
	assert_chunk("$k3", "true", next);
	/* a timeline without events has no boundaries */
	apply_str("@alice:hs", "A1", K_BODY("pE", "true", ""));
	assert_int_equal(qi("SELECT count(*) FROM syncv3_chunks WHERE token = "
	                    "'pE'",
	                    NULL, NULL),
	                 0);
}

/*
 * The cleanup pass keeps the newest ACC_CHUNKS_KEEP boundaries of each
 * room given boundaries since the last pass, and looks at no other room.
 */
static void
test_chunks_bounded(void **state)
{
	(void)state;
	NEED_DB();
	PQclear(PQexec(db, "INSERT INTO syncv3_chunks SELECT r, -n, false, "
	                   "'t' || n, false FROM (VALUES ('!k:hs'), "
	                   "('!many:hs')) v(r), generate_series(1, 600) n"));
	apply_str("@alice:hs", "A1", K_BODY("pN", "false", K_EV("$k9")));
	assert_true(store_cleanup(st, 3600) >= 600 - ACC_CHUNKS_KEEP);
	assert_int_equal(qi("SELECT count(*) FROM syncv3_chunks WHERE room_id "
	                    "= '!k:hs'",
	                    NULL, NULL),
	                 ACC_CHUNKS_KEEP);
	/* the newest stay */
	assert_int_equal(qi("SELECT count(*) FROM syncv3_chunks c JOIN "
	                    "syncv3_events e USING (nid) WHERE c.room_id = "
	                    "'!k:hs' AND e.event_id = '$k9'",
	                    NULL, NULL),
	                 2);
	assert_int_equal(qi("SELECT count(*) FROM syncv3_chunks WHERE room_id "
	                    "= '!many:hs'",
	                    NULL, NULL),
	                 600);
	/* nothing new: the next pass looks at nothing */
	assert_int_equal(store_cleanup(st, 3600), 0);
}

#define U_BODY(n)                                                              \
	"{\"next_batch\":\"x\",\"rooms\":{\"join\":{\"!k:hs\":{"               \
	"\"unread_notifications\":{\"notification_count\":" n ","              \
	"\"highlight_count\":0}}}}}"

/*
 * Unread counts that change alone (a read receipt from another device:
 * no event) go out as the user's membership notice for the room, which
 * wakes their waiting requests (api/longpoll.c); unchanged, nothing.
 */
static void
test_unread_notice(void **state)
{
	struct store_msg m;
	char *since, types[64];
	int i;

	(void)state;
	NEED_DB();
	for (i = 0; i < 3; i++) {
		since =
		    qs("SELECT since FROM syncv3_devices WHERE user_id = $1 "
		       "AND device_id = $2",
		       "@alice:hs", "A1");
		apply_raw(&m, "@alice:hs", "A1", since,
		          i == 0   ? "u1"
		          : i == 1 ? "u2"
		                   : "u3",
		          i < 2 ? U_BODY("3") : U_BODY("0"),
		          strlen(U_BODY("3")));
		assert_true(m.ok);
		notice_types(&m, types, sizeof(types));
		if (i == 1)
			assert_string_equal(types, "");
		else {
			assert_int_equal(m.notices.n, 1);
			assert_int_equal(m.notices.v[0].type,
			                 PROTO_NOTICE_MEMBERSHIP);
			assert_string_equal(m.notices.v[0].room_id, "!k:hs");
			assert_string_equal(m.notices.v[0].user_id,
			                    "@alice:hs");
			assert_string_equal(m.notices.v[0].membership, "join");
		}
		store_msg_reset(&m);
		free(since);
	}
}

/*
 * A device's messages in one batch: a body, its resend (as a poller sends
 * it when the ack is late) and the next body. The ingest loop used to keep
 * the second and third for later batches; now only the store sees to it
 * (store_apply), and each must end exactly as it does one batch at a time:
 * the same acks, sinces and notices, the resend's to-device message stored
 * once.
 */
/*
 * A poll state learnt with a token the device no longer has (a 401 for
 * the token a new login replaced) must not expire the device: the new
 * token would be refused (issue #9, found by the bounds work).
 */
/* Applies one PROTO_SYNC_RAW with its optional first and catchup meta. */
static void
apply_first(struct store_msg *m, const char *dev, const char *since_in,
            const char *next, const char *body, const char *first,
            int64_t catchup)
{
	memset(m, 0, sizeof(*m));
	m->user_id = "@sib:hs";
	m->device_id = dev;
	m->since_in = since_in;
	m->next_batch = next;
	m->body = body;
	m->body_len = strlen(body);
	m->first = first;
	m->catchup = catchup;
	assert_int_equal(store_batch_begin(st), 0);
	store_apply(st, m);
	assert_int_equal(store_batch_commit(st), 0);
	assert_true(m->ok);
}

static bool
sib_synced(const char *dev)
{
	char *v = qs("SELECT is_initial_done FROM syncv3_devices WHERE "
	             "user_id = '@sib:hs' AND device_id = $1",
	             dev, NULL);
	bool ok = v != NULL && v[0] == 't';

	free(v);
	return ok;
}

/* Whether m carries a PROTO_NOTICE_DEVICE for dev. */
static bool
has_device_notice(const struct store_msg *m, const char *dev)
{
	for (size_t i = 0; i < m->notices.n; i++)
		if (m->notices.v[i].type == PROTO_NOTICE_DEVICE &&
		    strcmp(m->notices.v[i].device_id, dev) == 0)
			return true;
	return false;
}

/*
 * Sibling devices (docs/DESIGN.md): a sibling-first sync leaves the device
 * unsynced with a cover position, announced on the catch-up channel at
 * commit; only a synced sibling's body carrying a catch-up at or past it
 * makes it synced (not its own polls, not another waiting device's, not
 * an older catch-up); a refill does too, without storing its to-device
 * messages or moving the since.
 */
static void
test_sibling_cover(void **state)
{
	struct store_msg m;
	PGnotify *n;
	long long cover, dcover;
	char *pos;

	(void)state;
	NEED_DB();
	add_device("@sib:hs", "S1");
	add_device("@sib:hs", "S2");
	add_device("@sib:hs", "S3");
	PQclear(PQexec(db, "LISTEN " PROTO_PG_CATCHUP_CHANNEL));
	apply_first(&m, "S1", "", "a1", D_BODY("!sib:hs", "$sib1", "1"), "", 0);
	store_msg_reset(&m);
	assert_true(sib_synced("S1"));
	apply_first(&m, "S2", "", "b1", "{\"next_batch\":\"b1\"}", "sibling",
	            0);
	assert_false(has_device_notice(&m, "S2"));
	store_msg_reset(&m);
	assert_false(sib_synced("S2"));
	cover = qi("SELECT cover_pos FROM syncv3_devices WHERE device_id = "
	           "'S2'",
	           NULL, NULL);
	assert_true(cover > 0);
	assert_true(cover <= store_pos(st));
	PQconsumeInput(db);
	assert_non_null(n = PQnotifies(db));
	assert_string_equal(n->relname, PROTO_PG_CATCHUP_CHANNEL);
	pos = xasprintf("@sib:hs %lld", cover);
	assert_string_equal(n->extra, pos);
	free(pos);
	PQfreemem(n);
	/* its own poll, and an older catch-up, are no witnesses */
	apply_first(&m, "S2", "b1", "b2", "{}", "", cover);
	store_msg_reset(&m);
	apply_first(&m, "S1", "a1", "a2", "{}", "", cover - 1);
	store_msg_reset(&m);
	assert_false(sib_synced("S2"));
	/* a device waiting itself is none either */
	apply_first(&m, "S3", "", "c1", "{}", "sibling", 0);
	store_msg_reset(&m);
	apply_first(&m, "S3", "c1", "c2", "{}", "", cover);
	store_msg_reset(&m);
	assert_false(sib_synced("S2"));
	/* the synced sibling polled after S2's first commit */
	apply_first(&m, "S1", "a2", "a2", "{}", "", cover);
	assert_true(has_device_notice(&m, "S2"));
	assert_false(has_device_notice(&m, "S3"));
	store_msg_reset(&m);
	assert_true(sib_synced("S2"));
	assert_int_equal(qi("SELECT count(*) FROM syncv3_devices WHERE "
	                    "device_id = 'S2' AND cover_pos IS NULL",
	                    NULL, NULL),
	                 1);
	/* S3 refills: rooms stored, to-device and since left alone */
	dcover = qi("SELECT cover_pos FROM syncv3_devices WHERE device_id = "
	            "'S3'",
	            NULL, NULL);
	assert_true(dcover > cover);
	apply_first(&m, "S3", "c2", "c2", D_BODY("!sib2:hs", "$sib2", "2"),
	            "refill", 0);
	assert_true(has_device_notice(&m, "S3"));
	store_msg_reset(&m);
	assert_true(sib_synced("S3"));
	assert_true(nid("$sib2") > 0);
	assert_int_equal(qi("SELECT count(*) FROM syncv3_to_device WHERE "
	                    "device_id = 'S3'",
	                    NULL, NULL),
	                 0);
	assert_int_equal(
	    qi("SELECT count(*) FROM syncv3_devices WHERE "
	       "device_id = 'S3' AND since = 'c2' AND cover_pos IS NULL",
	       NULL, NULL),
	    1);
	PQclear(PQexec(db, "UNLISTEN *"));
}

/*
 * A body of joined rooms !<prefix>N:hs, N = 1..n, whose one event has
 * ts N, and an invite.
 */
static char *
win_body(int n, const char *prefix)
{
	size_t cap = 256 + (size_t)n * 512, k;
	char *b = xmalloc(cap);

	k = (size_t)snprintf(
	    b, cap,
	    "{\"next_batch\":\"x\",\"rooms\":{"
	    "\"invite\":{\"!%sinv:hs\":{\"invite_state\":{\"events\":[]}}},"
	    "\"join\":{",
	    prefix);
	for (int i = 1; i <= n; i++)
		k += (size_t)snprintf(
		    b + k, cap - k,
		    "%s\"!%s%d:hs\":{"
		    "\"state\":{\"events\":[{\"event_id\":\"$%ss%d\","
		    "\"type\":\"m.room.name\",\"state_key\":\"\","
		    "\"sender\":\"@w:hs\",\"origin_server_ts\":0,"
		    "\"content\":{\"name\":\"%s%d\"}}]},"
		    "\"timeline\":{\"events\":[{\"event_id\":\"$%s%d\","
		    "\"type\":\"m.room.message\",\"sender\":\"@w:hs\","
		    "\"origin_server_ts\":%d,\"content\":{}}]}}",
		    i > 1 ? "," : "", prefix, i, prefix, i, prefix, i, prefix,
		    i, i);
	snprintf(b + k, cap - k,
	         "}},\"to_device\":{\"events\":[{\"type\":"
	         "\"m.t\",\"sender\":\"@x:hs\",\"content\":{}}]}}");
	return b;
}

/* The window message of user's device W1's initial sync. */
static void
window_msg(struct store_msg *wm, const char *user)
{
	memset(wm, 0, sizeof(*wm));
	wm->user_id = user;
	wm->device_id = "W1";
	wm->since_in = "";
	wm->next_batch = "w1";
}

static bool
in_view(const struct acc_changes *v, const char *room)
{
	for (size_t i = 0; i < v->nrooms; i++)
		if (strcmp(v->rooms[i].room_id, room) == 0)
			return true;
	return false;
}

/*
 * The first window first (docs/DESIGN.md): the k most recent joined
 * rooms, ties, invites and rooms already stored as recent go first, in
 * a transaction of their own that leaves the since and to-device alone
 * and records the window; the fill stores the rest with the since and
 * records the positions it took.
 */
static void
test_window_first(void **state)
{
	struct acc_changes all, win, rest;
	struct store_msg wm, fm;
	const char *err = NULL;
	char *body, *older;

	(void)state;
	NEED_DB();
	add_device("@w:hs", "W1");
	add_device("@other:hs", "O1");
	/* another user's poller stored !w2:hs with a newer event */
	older = xstrdup(
	    "{\"next_batch\":\"x\",\"rooms\":{\"join\":{"
	    "\"!w2:hs\":{\"timeline\":{\"events\":[{\"event_id\":\"$new2\","
	    "\"type\":\"m.room.message\",\"sender\":\"@w:hs\","
	    "\"origin_server_ts\":100,\"content\":{}}]}}}}}");
	apply_str("@other:hs", "O1", older);
	free(older);
	body = win_body(8, "w");
	assert_int_equal(normalise(body, strlen(body), "@w:hs", &all, &err), 0);
	window_msg(&wm, "@w:hs");
	assert_int_equal(store_window(st, &wm, &all, &win, &rest, 3), 1);
	/* ts 6, 7, 8; the invite; !w2 for its stored event at ts 100 */
	assert_int_equal(win.nrooms, 5);
	assert_true(in_view(&win, "!w8:hs") && in_view(&win, "!w6:hs"));
	assert_true(in_view(&win, "!winv:hs") && in_view(&win, "!w2:hs"));
	assert_int_equal(rest.nrooms, 4);
	assert_true(in_view(&rest, "!w5:hs") && !in_view(&rest, "!w2:hs"));
	assert_int_equal(rest.nto_device, 1);
	assert_int_equal(
	    qi("SELECT count(*) FROM syncv3_devices WHERE "
	       "device_id = 'W1' AND since = '' AND NOT is_initial_done AND "
	       "window_rooms = 3 AND window_pos = (SELECT pos FROM "
	       "syncv3_position)",
	       NULL, NULL),
	    1);
	assert_int_equal(qi("SELECT count(*) FROM syncv3_user_rooms WHERE "
	                    "user_id = '@w:hs'",
	                    NULL, NULL),
	                 5);
	assert_int_equal(qi("SELECT count(*) FROM syncv3_to_device WHERE "
	                    "device_id = 'W1'",
	                    NULL, NULL),
	                 0);
	store_msg_reset(&wm);
	/* the fill: the rest, the since, to-device, its own positions */
	memset(&fm, 0, sizeof(fm));
	fm.user_id = "@w:hs";
	fm.device_id = "W1";
	fm.since_in = "";
	fm.next_batch = "w1";
	fm.body = body;
	fm.body_len = strlen(body);
	fm.pre = &rest;
	fm.is_fill = true;
	assert_int_equal(store_batch_begin(st), 0);
	store_apply(st, &fm);
	assert_int_equal(store_batch_commit(st), 0);
	assert_true(fm.ok);
	store_msg_reset(&fm);
	assert_int_equal(qi("SELECT count(*) FROM syncv3_user_rooms WHERE "
	                    "user_id = '@w:hs'",
	                    NULL, NULL),
	                 9);
	assert_int_equal(
	    qi("SELECT count(*) FROM syncv3_devices WHERE "
	       "device_id = 'W1' AND since = 'w1' AND is_initial_done AND "
	       "fill_lo > window_pos AND fill_hi >= fill_lo",
	       NULL, NULL),
	    1);
	assert_int_equal(
	    qi("SELECT count(*) FROM syncv3_user_rooms u, "
	       "syncv3_devices d WHERE d.device_id = 'W1' AND u.user_id = "
	       "'@w:hs' AND u.pos BETWEEN d.fill_lo AND d.fill_hi",
	       NULL, NULL),
	    4);
	assert_int_equal(qi("SELECT count(*) FROM syncv3_to_device WHERE "
	                    "device_id = 'W1'",
	                    NULL, NULL),
	                 1);
	store_view_free(&win);
	store_view_free(&rest);
	/* a resend of the body once stored is no window */
	assert_int_equal(store_window(st, &wm, &all, &win, &rest, 3), 0);
	assert_true(wm.is_replay);
	store_msg_reset(&wm);
	/* too few rooms for a window: nothing done */
	assert_int_equal(store_window(st, &wm, &all, &win, &rest, 8), 0);
	assert_null(win.rooms);
	assert_null(rest.rooms);
	normalise_free(&all);
	free(body);
}

/*
 * The window's choice reads the rest's ids once (S_WIN_REST): one round
 * trip for the rooms Postgres holds as recent and for window_more, the
 * rooms of the rest new to the user's lists (not the one it has joined).
 */
static void
test_window_choose(void **state)
{
	struct acc_changes all;
	const char *err = NULL;
	unsigned long long rt;
	int64_t cut = 0, more = 0;
	bool in[9] = {false};
	char *body;

	(void)state;
	NEED_DB();
	add_device("@wc:hs", "W0");
	add_device("@wcother:hs", "O1");
	/* the user has joined !wc1 already; another's poller stored !wc2 */
	apply_str("@wc:hs", "W0",
	          "{\"next_batch\":\"x\",\"rooms\":{\"join\":{"
	          "\"!wc1:hs\":{\"timeline\":{\"events\":[{\"event_id\":"
	          "\"$wc1old\",\"type\":\"m.room.message\",\"sender\":"
	          "\"@wc:hs\",\"origin_server_ts\":1,\"content\":{}}]}}}}}");
	apply_str("@wcother:hs", "O1",
	          "{\"next_batch\":\"x\",\"rooms\":{\"join\":{"
	          "\"!wc2:hs\":{\"timeline\":{\"events\":[{\"event_id\":"
	          "\"$wc2new\",\"type\":\"m.room.message\",\"sender\":"
	          "\"@wc:hs\",\"origin_server_ts\":100,\"content\":{}}]}}}}}");
	body = win_body(8, "wc");
	assert_int_equal(normalise(body, strlen(body), "@wc:hs", &all, &err), 0);
	assert_int_equal(all.nrooms, 9);
	assert_int_equal(store_batch_begin(st), 0);
	rt = store_stats(st)->round_trips;
	assert_int_equal(
	    store_window_choose(st, "@wc:hs", &all, 3, in, &cut, &more), 0);
	assert_int_equal(store_stats(st)->round_trips - rt, 1);
	store_batch_rollback(st);
	assert_int_equal(cut, 6);
	/* the rest: !wc1, !wc3, !wc4, !wc5; !wc1 is the user's already */
	assert_int_equal(more, 3);
	for (size_t i = 0; i < all.nrooms; i++) {
		const char *id = all.rooms[i].room_id;
		bool rest = strcmp(id, "!wc1:hs") == 0 ||
		            strcmp(id, "!wc3:hs") == 0 ||
		            strcmp(id, "!wc4:hs") == 0 ||
		            strcmp(id, "!wc5:hs") == 0;
		assert_true(in[i] == !rest);
	}
	normalise_free(&all);
	free(body);
}

/* Drops a connection's notices (the schema's DROP ... CASCADE). */
static void
quiet(void *arg, const char *msg)
{
	(void)arg;
	(void)msg;
}

/* Runs sql on c; fails the test if it fails. */
static void
db_ok(PGconn *c, const char *sql)
{
	PGresult *r = PQexec(c, sql);
	ExecStatusType rs = PQresultStatus(r);

	if (rs != PGRES_COMMAND_OK && rs != PGRES_TUPLES_OK)
		fail_msg("%s: %s", sql, PQerrorMessage(c));
	PQclear(r);
}

/* Rows statement name read from table: actual rows times loops of each
 * node on it in EXPLAIN ANALYZE of EXECUTE name(args). */
static long
rows_read(PGconn *c, const char *name, const char *args, const char *table)
{
	char sql[512], on[64];
	PGresult *r;
	long n = 0;

	snprintf(sql, sizeof(sql),
	         "EXPLAIN (ANALYZE, COSTS OFF, TIMING OFF) EXECUTE %s(%s)", name,
	         args);
	snprintf(on, sizeof(on), " on %s ", table);
	r = PQexec(c, sql);
	if (PQresultStatus(r) != PGRES_TUPLES_OK)
		fail_msg("%s: %s", sql, PQerrorMessage(c));
	for (int i = 0; i < PQntuples(r); i++) {
		const char *l = PQgetvalue(r, i, 0), *a;
		long rows, loops;
		if (strstr(l, on) == NULL || (a = strstr(l, "actual rows=")) ==
		    NULL || sscanf(a, "actual rows=%ld loops=%ld", &rows,
		                   &loops) != 2)
			continue;
		n += rows * loops;
	}
	PQclear(r);
	return n;
}

/*
 * The group's lookups of current state (S_CUR) and of the user's rows
 * (S_UR_GET) read only their keys' rows even under a generic plan made
 * while the tables were empty, as a new stack's accumulator makes them
 * before autovacuum's first ANALYZE: on base that plan hash joined every
 * current state row and every user row, and kept doing so as the tables
 * grew (a cold login's window of 101 rooms: 165 ms over 90,000 rows).
 * Tables of the same definition in a schema of their own stand for the
 * new stack's, on a connection of the test's own (its search_path);
 * counts the rows each plan reads.
 */
static void
test_lookup_plans(void **state)
{
	static const struct {
		int id;
		const char *empty, *args, *table;
	} q[] = {
	    {S_CUR, "'{!lp0}', '{t}', '{}'",
	     "'{!lp1,!lp2,!lp3}', '{m.room.member,m.room.member,"
	     "m.room.member}', '{@lp1,@lp2,@lp3}'",
	     "syncv3_state"},
	    {S_UR_GET, "'{@lp}', '{!lp0}'", "'{@lp,@lp}', '{!lp1,!lp2}'",
	     "syncv3_user_rooms"},
	};
	char name[32], sql[256];
	PGconn *c;

	(void)state;
	NEED_DB();
	c = PQconnectdb(getenv("SYNCV3_TEST_DB"));
	assert_int_equal(PQstatus(c), CONNECTION_OK);
	PQsetNoticeProcessor(c, quiet, NULL);
	db_ok(c, "DROP SCHEMA IF EXISTS lp CASCADE; CREATE SCHEMA lp; "
	      "CREATE TABLE lp.syncv3_state (LIKE "
	      "public.syncv3_state INCLUDING ALL); CREATE TABLE "
	      "lp.syncv3_user_rooms (LIKE public.syncv3_user_rooms INCLUDING "
	      "ALL); SET search_path = lp, public; "
	      "SET plan_cache_mode = force_generic_plan");
	for (size_t i = 0; i < sizeof(q) / sizeof(q[0]); i++) {
		PGresult *r;
		snprintf(name, sizeof(name), "lp%zu", i);
		r = PQprepare(c, name, db_sql(q[i].id), 0, NULL);
		if (PQresultStatus(r) != PGRES_COMMAND_OK)
			fail_msg("%s: %s", name, PQerrorMessage(c));
		PQclear(r);
		/* the generic plan, made on the empty table */
		snprintf(sql, sizeof(sql), "EXECUTE %s(%s)", name, q[i].empty);
		db_ok(c, sql);
	}
	db_ok(c, "INSERT INTO syncv3_state SELECT '!lp' || i, 'm.room.member', "
	      "'@lp' || i, i, 1, NULL, 'join' FROM generate_series(1, 2000) i; "
	      "INSERT INTO syncv3_user_rooms (user_id, room_id, membership, "
	      "pos) SELECT '@lp', '!lp' || i, 'join', i FROM "
	      "generate_series(1, 2000) i");
	for (size_t i = 0; i < sizeof(q) / sizeof(q[0]); i++) {
		long n;
		snprintf(name, sizeof(name), "lp%zu", i);
		n = rows_read(c, name, q[i].args, q[i].table);
		if (n != (i == 0 ? 3 : 2))
			fail_msg("%s read %ld rows of %s", db_sql(q[i].id), n,
			         q[i].table);
	}
	db_ok(c, "DROP SCHEMA lp CASCADE");
	PQfinish(c);
}

/*
 * The same window chosen from normalise_light's pass (ingest.c): the
 * same rooms, each normalised in full (its state too), and the rest in
 * the light pass's order for the fill to take by index.
 */
static void
test_window_light(void **state)
{
	struct acc_changes light, win, rest;
	struct store_msg wm;
	char *body;

	(void)state;
	NEED_DB();
	add_device("@wl:hs", "W1");
	body = win_body(8, "wl");
	assert_int_equal(normalise_light(body, strlen(body), "@wl:hs", &light),
	                 0);
	window_msg(&wm, "@wl:hs");
	assert_int_equal(store_window(st, &wm, &light, &win, &rest, 3), 1);
	/* ts 6, 7, 8 and the invite, each with its state */
	assert_int_equal(win.nrooms, 4);
	assert_true(in_view(&win, "!wl8:hs") && in_view(&win, "!wl6:hs"));
	assert_true(in_view(&win, "!wlinv:hs") && !in_view(&win, "!wl5:hs"));
	for (size_t i = 0; i < win.nrooms; i++)
		assert_int_equal(win.rooms[i].state.n,
		                 win.rooms[i].section == ACC_JOIN ? 1 : 0);
	assert_int_equal(rest.nrooms, 5);
	/* a subsequence of light's rooms, sharing their strings */
	for (size_t i = 0, j = 0; j < rest.nrooms; i++) {
		assert_true(i < light.nrooms);
		if (rest.rooms[j].room_id == light.rooms[i].room_id)
			j++;
	}
	assert_int_equal(qi("SELECT count(*) FROM syncv3_state WHERE "
	                    "room_id = '!wl8:hs' AND type = 'm.room.name'",
	                    NULL, NULL),
	                 1);
	store_msg_reset(&wm);
	store_view_free(&win);
	store_view_free(&rest);
	normalise_free(&light);
	free(body);
}

static void
test_poll_state_token(void **state)
{
	struct proto_poll_state ps = {"@ps:hs", "D", "expired", "http 401", 0,
	    "@ps:hs/D"};
	const char *sql = "SELECT poll_state FROM syncv3_devices WHERE "
	    "user_id = $1";
	char *v;

	(void)state;
	NEED_DB();
	add_device("@ps:hs", "D");	/* token_hash "@ps:hs/D" */
	ps.token_fp = "0000000000000000";
	assert_int_equal(store_poll_state(st, &ps), 0);
	v = qs(sql, "@ps:hs", NULL);
	assert_string_equal(v, "new");
	free(v);
	ps.token_fp = "@ps:hs/D";	/* left(token_hash, 16) of that hash */
	assert_int_equal(store_poll_state(st, &ps), 1);
	v = qs(sql, "@ps:hs", NULL);
	assert_string_equal(v, "expired");
	free(v);
}

static void
test_batch_same_device(void **state)
{
	const char *dev[2] = {"@gina:hs", "@hank:hs"};
	const char *b[2][2] = {
	    {D_BODY("!sd1:hs", "$sd1_a", "1a"), D_BODY("!sd1:hs", "$sd1_b", "1b")},
	    {D_BODY("!sd2:hs", "$sd2_a", "2a"), D_BODY("!sd2:hs", "$sd2_b", "2b")}};
	struct store_msg ms[2][3];
	char types[2][3][128], *v;

	(void)state;
	NEED_DB();
	for (int d = 0; d < 2; d++) {
		add_device(dev[d], "G1");
		msg_init(&ms[d][0], dev[d], "G1", "", "s1", b[d][0]);
		msg_init(&ms[d][1], dev[d], "G1", "", "s1", b[d][0]);
		msg_init(&ms[d][2], dev[d], "G1", "s1", "s2", b[d][1]);
	}
	apply_batch(ms[0], 3);		/* gina: all three in one batch */
	for (int i = 0; i < 3; i++)	/* hank: one batch each */
		apply_batch(&ms[1][i], 1);
	for (int d = 0; d < 2; d++) {
		for (int i = 0; i < 3; i++) {
			assert_true(ms[d][i].ok);
			notice_types(&ms[d][i], types[d][i], sizeof(types[d][i]));
		}
		assert_string_equal(ms[d][0].since, "s1");
		assert_string_equal(ms[d][1].since, "s1");
		assert_string_equal(ms[d][2].since, "s2");
		assert_int_equal(ms[d][1].notices.n, 0);
		assert_true(ms[d][0].notices.n > 0);
		assert_int_equal(qi("SELECT count(*) FROM syncv3_to_device "
		    "WHERE user_id = $1", dev[d], NULL), 2);
		assert_int_equal(qi("SELECT count(DISTINCT json) FROM "
		    "syncv3_to_device WHERE user_id = $1", dev[d], NULL), 2);
		assert_int_equal(qi("SELECT count(*) FROM syncv3_user_rooms "
		    "WHERE user_id = $1", dev[d], NULL), 1);
	}
	for (int i = 0; i < 3; i++)
		assert_string_equal(types[0][i], types[1][i]);
	assert_true(nid("$sd1_a") > 0 && nid("$sd1_a") < nid("$sd1_b"));
	v = qs("SELECT since FROM syncv3_devices WHERE user_id = $1", dev[0],
	    NULL);
	assert_string_equal(v, "s2");
	free(v);
	for (int d = 0; d < 2; d++)
		for (int i = 0; i < 3; i++)
			store_msg_reset(&ms[d][i]);
}

/* A body of room !sk:hs from a member's poller: its timeline events. */
#define SK_BODY(tl)                                                            \
	"{\"rooms\":{\"join\":{\"!sk:hs\":{\"timeline\":{\"events\":[" tl      \
	"]}}}}}"
#define SK_JOIN(u)                                                             \
	"{\"type\":\"m.room.member\",\"state_key\":\"" u "\",\"event_id\":"    \
	"\"$skj" u "\",\"sender\":\"" u "\",\"origin_server_ts\":100,"         \
	"\"content\":{\"membership\":\"join\"}}"
#define SK_EV(id, type, ts)                                                    \
	"{\"type\":\"" type "\",\"event_id\":\"" id "\",\"sender\":"           \
	"\"@alice:hs\",\"origin_server_ts\":" ts ",\"content\":{}}"

/*
 * bob's row of !sk:hs has sort keys rl_ts, ss_bump_ts, ss_bump_nid, and
 * was updated n times since the probe (test_member_keys_once) was set.
 */
static void
sk_check(long long rl_ts, long long bump_ts, long long bump_nid, long long n)
{
	char want[96];
	char *v = qs("SELECT rl_ts || ' ' || ss_bump_ts || ' ' || ss_bump_nid "
	             "FROM syncv3_user_rooms WHERE user_id = '@bob:hs' AND "
	             "room_id = '!sk:hs'",
	             NULL, NULL);

	snprintf(want, sizeof(want), "%lld %lld %lld", rl_ts, bump_ts,
	         bump_nid);
	assert_non_null(v);
	assert_string_equal(v, want);
	free(v);
	assert_int_equal(qi("SELECT count(*) FROM sk_probe WHERE user_id = "
	                    "'@bob:hs'",
	                    NULL, NULL),
	                 n);
}

/*
 * A new event in a room moves the sort keys of every member's row
 * (rl_ts, and ss_bump_* of the joined ones for a bump event) in one row
 * version per batch, and none where the keys are already right: a probe
 * trigger counts the updates of bob's row while alice's poller stores
 * the events.
 */
static void
test_member_keys_once(void **state)
{
	(void)state;
	NEED_DB();
	apply_str("@alice:hs", "A1",
	          SK_BODY(SK_JOIN("@alice:hs") "," SK_JOIN("@bob:hs")));
	apply_str("@bob:hs", "B1",
	          SK_BODY(SK_JOIN("@alice:hs") "," SK_JOIN("@bob:hs")));
	PQclear(PQexec(db, "CREATE TABLE sk_probe (user_id text)"));
	PQclear(PQexec(db, "CREATE FUNCTION sk_probe() RETURNS trigger "
	                   "LANGUAGE plpgsql AS $$ BEGIN INSERT INTO sk_probe "
	                   "VALUES (NEW.user_id); RETURN NULL; END $$"));
	PQclear(PQexec(db, "CREATE TRIGGER sk_probe AFTER UPDATE ON "
	                   "syncv3_user_rooms FOR EACH ROW EXECUTE FUNCTION "
	                   "sk_probe()"));

	/* a bump event: both keys move, in one update */
	apply_str("@alice:hs", "A1",
	          SK_BODY(SK_EV("$sk1", "m.room.message", "5000")));
	sk_check(5000, 5000, nid("$sk1"), 1);
	/* not a bump event: recency alone moves */
	apply_str("@alice:hs", "A1",
	          SK_BODY(SK_EV("$sk2", "m.reaction", "6000")));
	sk_check(6000, 5000, nid("$sk1"), 2);
	/* neither a bump event nor new recency: nothing moves */
	apply_str("@alice:hs", "A1",
	          SK_BODY(SK_EV("$sk3", "m.reaction", "6000")));
	sk_check(6000, 5000, nid("$sk1"), 2);
	PQclear(PQexec(db, "DROP TRIGGER sk_probe ON syncv3_user_rooms"));

	/* bob's own row, stored: new unread counts update it, without the
	 * triggers that compute a new row's keys */
	PQclear(PQexec(db, "CREATE TABLE sk_probe_ins (user_id text)"));
	PQclear(PQexec(db, "CREATE FUNCTION sk_probe_ins() RETURNS trigger "
	                   "LANGUAGE plpgsql AS $$ BEGIN INSERT INTO "
	                   "sk_probe_ins VALUES (NEW.user_id); RETURN NEW; "
	                   "END $$"));
	PQclear(PQexec(db, "CREATE TRIGGER sk_probe_ins BEFORE INSERT ON "
	                   "syncv3_user_rooms FOR EACH ROW EXECUTE FUNCTION "
	                   "sk_probe_ins()"));
	apply_str("@bob:hs", "B1",
	          "{\"rooms\":{\"join\":{\"!sk:hs\":{"
	          "\"unread_notifications\":{\"notification_count\":3,"
	          "\"highlight_count\":1}}}}}");
	assert_int_equal(qi("SELECT notification_count FROM syncv3_user_rooms "
	                    "WHERE user_id = '@bob:hs' AND room_id = '!sk:hs'",
	                    NULL, NULL),
	                 3);
	assert_int_equal(qi("SELECT count(*) FROM sk_probe_ins", NULL, NULL),
	                 0);
	sk_check(6000, 5000, nid("$sk1"), 2);
	PQclear(PQexec(db, "DROP TRIGGER sk_probe_ins ON syncv3_user_rooms"));
}

/* A body of room !kc:hs: its timeline events in section sec. */
#define KC_BODY(sec, tl)                                                       \
	"{\"rooms\":{\"" sec "\":{\"!kc:hs\":{\"timeline\":{\"events\":[" tl   \
	"]}}}}}"
#define KC_MEMBER(u, m)                                                        \
	"{\"type\":\"m.room.member\",\"state_key\":\"" u "\",\"event_id\":"    \
	"\"$kc" m u "\",\"sender\":\"" u "\",\"origin_server_ts\":200,"        \
	"\"content\":{\"membership\":\"" m "\"}}"
#define KC_JOINS KC_MEMBER("@alice:hs", "join") "," KC_MEMBER("@bob:hs", "join")

/* bob's joined count of the first page (012) and of the lists (017). */
static long long
kc_counts(void)
{
	return qi("SELECT (SELECT joined FROM syncv3_rl_counts WHERE user_id "
	          "= '@bob:hs') * 1000 + (SELECT shown FROM syncv3_ss_counts "
	          "WHERE user_id = '@bob:hs')",
	          NULL, NULL);
}

/*
 * The room upsert's key update of the members' rows (022_ingest.sql)
 * moves no membership, so it runs none of the count triggers (030): a
 * probe after the upsert reads how many times the transaction called
 * them, with call tracking on inside syncv3_rl_room. A membership change
 * right after still counts.
 */
static void
test_member_keys_no_count(void **state)
{
	long long before;

	(void)state;
	NEED_DB();
	apply_str("@alice:hs", "A1", KC_BODY("join", KC_JOINS));
	apply_str("@bob:hs", "B1", KC_BODY("join", KC_JOINS));
	before = kc_counts();
	PQclear(PQexec(db, "ALTER FUNCTION syncv3_rl_room() SET "
	                   "track_functions = 'pl'"));
	PQclear(PQexec(db, "CREATE TABLE kc_probe (calls bigint)"));
	PQclear(PQexec(db, "CREATE FUNCTION kc_probe() RETURNS trigger "
	                   "LANGUAGE plpgsql AS $$ BEGIN INSERT INTO kc_probe "
	                   "SELECT coalesce(sum(calls), 0) FROM "
	                   "pg_stat_xact_user_functions WHERE funcname IN "
	                   "('syncv3_rl_count', 'syncv3_ss_count'); RETURN "
	                   "NULL; END $$"));
	/* after syncv3_rooms_rl_upd: triggers fire by name */
	PQclear(PQexec(db, "CREATE TRIGGER zz_kc_probe AFTER UPDATE ON "
	                   "syncv3_rooms FOR EACH STATEMENT EXECUTE FUNCTION "
	                   "kc_probe()"));

	apply_str("@alice:hs", "A1",
	          KC_BODY("join", SK_EV("$kc1", "m.room.message", "7000")));
	assert_int_equal(qi("SELECT rl_ts FROM syncv3_user_rooms WHERE "
	                    "user_id = '@bob:hs' AND room_id = '!kc:hs'",
	                    NULL, NULL),
	                 7000);
	assert_int_equal(qi("SELECT count(*) FROM kc_probe", NULL, NULL), 1);
	assert_int_equal(qi("SELECT calls FROM kc_probe", NULL, NULL), 0);
	assert_int_equal(kc_counts(), before);

	apply_str("@bob:hs", "B1",
	          KC_BODY("leave", KC_MEMBER("@bob:hs", "leave")));
	assert_int_equal(kc_counts(), before - 1001);
	PQclear(PQexec(db, "DROP TRIGGER zz_kc_probe ON syncv3_rooms"));
	PQclear(PQexec(db, "ALTER FUNCTION syncv3_rl_room() RESET "
	                   "track_functions"));
}

/* A body of room !so:hs: its timeline, with a prev_batch and counts. */
#define SO_BODY(pb, nc, tl)                                                    \
	"{\"rooms\":{\"join\":{\"!so:hs\":{\"timeline\":{\"prev_batch\":\"" pb  \
	"\",\"events\":[" tl "]},\"unread_notifications\":{"                  \
	"\"notification_count\":" nc ",\"highlight_count\":0}}}}}"
#define SO_JOINS                                                               \
	"{\"type\":\"m.room.member\",\"state_key\":\"@alice:hs\",\"event_id\":" \
	"\"$soja\",\"sender\":\"@alice:hs\",\"origin_server_ts\":100,"         \
	"\"content\":{\"membership\":\"join\"}},{\"type\":\"m.room.member\","  \
	"\"state_key\":\"@bob:hs\",\"event_id\":\"$sojb\",\"sender\":"         \
	"\"@bob:hs\",\"origin_server_ts\":100,\"content\":{\"membership\":"    \
	"\"join\"}}"

/*
 * u's row of !so:hs: "rl_ts ss_bump_ts ss_bump_nid rows-written", the
 * last from so_probe, which counts the row versions written since set.
 */
static char *
so_row(const char *u)
{
	return qs("SELECT rl_ts || ' ' || ss_bump_ts || ' ' || ss_bump_nid || "
	          "' ' || (SELECT count(*) FROM so_probe p WHERE p.user_id = "
	          "u.user_id) FROM syncv3_user_rooms u WHERE user_id = $1 AND "
	          "room_id = '!so:hs'",
	          u, NULL);
}

static void
so_check(const char *u, long long rl_ts, long long bump_ts,
    long long bump_nid, long long n)
{
	char want[128];
	char *v = so_row(u);

	snprintf(want, sizeof(want), "%lld %lld %lld %lld", rl_ts, bump_ts,
	         bump_nid, n);
	assert_non_null(v);
	assert_string_equal(v, want);
	free(v);
}

static long long
so_counts(void)
{
	return qi("SELECT (SELECT joined FROM syncv3_rl_counts WHERE user_id "
	          "= '@bob:hs') * 1000 + (SELECT shown FROM syncv3_ss_counts "
	          "WHERE user_id = '@bob:hs')",
	          NULL, NULL);
}

/*
 * bob's own poller brings a room's new events with a new prev_batch and
 * new unread counts: his row is written once for the batch, with the
 * room's new keys (032_ur_keys.sql), not once by the room upsert's key
 * update and again by his own row's update. alice's row, which no
 * poller of hers touched, gets the keys from the room upsert as before,
 * and bob's counts stay.
 */
static void
test_member_keys_own_once(void **state)
{
	long long before;

	(void)state;
	NEED_DB();
	apply_str("@alice:hs", "A1", SO_BODY("pa0", "0", SO_JOINS));
	apply_str("@bob:hs", "B1", SO_BODY("pb0", "0", SO_JOINS));
	before = so_counts();
	PQclear(PQexec(db, "CREATE TABLE so_probe (user_id text)"));
	PQclear(PQexec(db, "CREATE FUNCTION so_probe() RETURNS trigger "
	                   "LANGUAGE plpgsql AS $$ BEGIN INSERT INTO so_probe "
	                   "VALUES (NEW.user_id); RETURN NULL; END $$"));
	PQclear(PQexec(db, "CREATE TRIGGER so_probe AFTER UPDATE ON "
	                   "syncv3_user_rooms FOR EACH ROW EXECUTE FUNCTION "
	                   "so_probe()"));

	/* a bump event: both keys move */
	apply_str("@bob:hs", "B1",
	          SO_BODY("pb1", "2", SK_EV("$so1", "m.room.message", "5000")));
	so_check("@bob:hs", 5000, 5000, nid("$so1"), 1);
	so_check("@alice:hs", 5000, 5000, nid("$so1"), 1);
	assert_int_equal(qi("SELECT notification_count FROM syncv3_user_rooms "
	                    "WHERE user_id = '@bob:hs' AND room_id = '!so:hs'",
	                    NULL, NULL),
	                 2);
	/* not a bump event: recency alone */
	apply_str("@bob:hs", "B1",
	          SO_BODY("pb2", "2", SK_EV("$so2", "m.reaction", "6000")));
	so_check("@bob:hs", 6000, 5000, nid("$so1"), 2);
	so_check("@alice:hs", 6000, 5000, nid("$so1"), 2);
	/* an older bump event: recency is the last event's, the bump key
	 * does not move back */
	apply_str("@bob:hs", "B1",
	          SO_BODY("pb3", "3", SK_EV("$so3", "m.room.message", "4000")));
	so_check("@bob:hs", 4000, 5000, nid("$so1"), 3);
	so_check("@alice:hs", 4000, 5000, nid("$so1"), 3);
	assert_int_equal(so_counts(), before);
	PQclear(PQexec(db, "DROP TRIGGER so_probe ON syncv3_user_rooms"));
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_events_dedup_and_bytes),
	    cmocka_unit_test(test_cas),
	    cmocka_unit_test(test_state_at_position),
	    cmocka_unit_test(test_limited_gap),
	    cmocka_unit_test(test_overlap_and_duplicates),
	    cmocka_unit_test(test_bad_events_rest_stored),
	    cmocka_unit_test(test_membership_history),
	    cmocka_unit_test(test_visible_ranges_examples),
	    cmocka_unit_test(test_typing_bumps_only_on_change),
	    cmocka_unit_test(test_to_device_order),
	    cmocka_unit_test(test_compact_state),
	    cmocka_unit_test(test_cleanup),
	    cmocka_unit_test(test_cleanup_gaps),
	    cmocka_unit_test(test_cleanup_redactions),
	    cmocka_unit_test(test_order_exhausted),
	    cmocka_unit_test(test_copy_exact_bytes),
	    cmocka_unit_test(test_batch_group),
	    cmocka_unit_test(test_batch_isolation),
	    cmocka_unit_test(test_later_failure),
	    cmocka_unit_test(test_notice_copies),
	    cmocka_unit_test(test_batch_same_device),
	    cmocka_unit_test(test_poll_state_token),
	    cmocka_unit_test(test_sibling_cover),
	    cmocka_unit_test(test_window_first),
	    cmocka_unit_test(test_window_choose),
	    cmocka_unit_test(test_window_light),
	    cmocka_unit_test(test_lookup_plans),
	    cmocka_unit_test(test_chunks),
	    cmocka_unit_test(test_chunks_bounded),
	    cmocka_unit_test(test_unread_notice),
	    cmocka_unit_test(test_member_keys_once),
	    cmocka_unit_test(test_member_keys_no_count),
	    cmocka_unit_test(test_member_keys_own_once),
	};

	log_init("test", LOG_LEVEL_ERROR);
	return cmocka_run_group_tests(tests, setup, teardown);
}
