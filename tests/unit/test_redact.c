/*
 * redact.c: the redaction algorithm of each room version over every
 * event type the spec protects, the top-level keys, unsigned, and where
 * a redaction names its target.
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
#include "json_util.h"
#include "util.h"

/* An event of type with every content key any room version protects. */
static struct json_object *
full_event(const char *type)
{
	char *s;
	struct json_object *o;

	s = xasprintf(
	    "{\"event_id\":\"$e\",\"type\":\"%s\",\"room_id\":\"!r:x\","
	    "\"sender\":\"@b:x\",\"state_key\":\"\",\"origin\":\"x\","
	    "\"membership\":\"join\",\"prev_state\":[],\"depth\":3,"
	    "\"origin_server_ts\":5,\"hashes\":{},\"signatures\":{},"
	    "\"prev_events\":[],\"auth_events\":[],\"redacts\":\"$t\","
	    "\"extra\":1,\"unsigned\":{\"age\":7,\"prev_content\":{\"a\":1},"
	    "\"transaction_id\":\"t\"},\"content\":{\"body\":\"secret\","
	    "\"membership\":\"join\",\"join_authorised_via_users_server\":"
	    "\"@s:x\",\"third_party_invite\":{\"signed\":{\"x\":1},"
	    "\"display_name\":\"d\"},\"creator\":\"@b:x\",\"room_version\":"
	    "\"11\",\"type\":\"m.space\",\"join_rule\":\"restricted\","
	    "\"allow\":[],\"ban\":50,\"events\":{},\"events_default\":0,"
	    "\"invite\":0,\"kick\":50,\"redact\":50,\"state_default\":50,"
	    "\"users\":{},\"users_default\":0,\"notifications\":{},"
	    "\"aliases\":[\"#a:x\"],\"history_visibility\":\"shared\","
	    "\"redacts\":\"$t\",\"name\":\"n\",\"topic\":\"t\"}}",
	    type);
	o = json_tokener_parse(s);
	free(s);
	assert_non_null(o);
	return o;
}

/* The sorted, comma-joined keys of o, for comparing with a table. */
static void
keys_of(struct json_object *o, char *buf, size_t len)
{
	const char *k[64];
	size_t n = 0, l = 0;

	buf[0] = '\0';
	json_object_object_foreach(o, key, v)
	{
		(void)v;
		if (n < 64)
			k[n++] = key;
	}
	for (size_t i = 0; i < n; i++)
		for (size_t j = i + 1; j < n; j++)
			if (strcmp(k[j], k[i]) < 0) {
				const char *t = k[i];
				k[i] = k[j];
				k[j] = t;
			}
	for (size_t i = 0; i < n; i++)
		l += (size_t)snprintf(buf + l, len - l, "%s%s", i ? "," : "",
		                      k[i]);
}

static void
assert_content(const char *version, const char *type, const char *want)
{
	struct json_object *ev = full_event(type), *out;
	char got[1024];

	out = redact_prune(ev, version, NULL);
	assert_non_null(out);
	keys_of(json_get_obj(out, "content"), got, sizeof(got));
	if (strcmp(got, want) != 0)
		fail_msg("v%s %s: content keys %s, want %s",
		         version ? version : "(none)", type, got, want);
	json_object_put(out);
	json_object_put(ev);
}

/* The spec's content tables, per room version. */
static void
test_content_tables(void **state)
{
	static const struct {
		const char *v, *type, *want;
	} t[] = {
	    {"1", "m.room.message", ""},
	    {"1", "m.room.name", ""},
	    {"1", "m.room.member", "membership"},
	    {"1", "m.room.create", "creator"},
	    {"1", "m.room.join_rules", "join_rule"},
	    {"1", "m.room.power_levels",
	     "ban,events,events_default,kick,"
	     "redact,state_default,users,users_default"},
	    {"1", "m.room.aliases", "aliases"},
	    {"1", "m.room.history_visibility", "history_visibility"},
	    {"1", "m.room.redaction", ""},
	    {NULL, "m.room.aliases", "aliases"},
	    {"5", "m.room.aliases", "aliases"},
	    {"6", "m.room.aliases", ""},
	    {"7", "m.room.join_rules", "join_rule"},
	    {"8", "m.room.join_rules", "allow,join_rule"},
	    {"8", "m.room.member", "membership"},
	    {"9", "m.room.member",
	     "join_authorised_via_users_server,"
	     "membership"},
	    {"10", "m.room.power_levels",
	     "ban,events,events_default,kick,"
	     "redact,state_default,users,users_default"},
	    {"10", "m.room.create", "creator"},
	    {"11", "m.room.power_levels",
	     "ban,events,events_default,invite,"
	     "kick,redact,state_default,users,users_default"},
	    {"11", "m.room.member",
	     "join_authorised_via_users_server,"
	     "membership,third_party_invite"},
	    {"11", "m.room.redaction", "redacts"},
	    {"11", "m.room.aliases", ""},
	    {"11", "m.room.message", ""},
	    {"11", "m.room.topic", ""},
	    {"org.example.unstable", "m.room.redaction", "redacts"},
	};
	(void)state;
	for (size_t i = 0; i < sizeof(t) / sizeof(t[0]); i++)
		assert_content(t[i].v, t[i].type, t[i].want);
}

/* v11 keeps the whole create content; third_party_invite only signed. */
static void
test_v11_whole_create(void **state)
{
	struct json_object *ev = full_event("m.room.create"), *out, *c;
	char a[2048], b[2048];

	(void)state;
	out = redact_prune(ev, "11", NULL);
	keys_of(json_get_obj(out, "content"), a, sizeof(a));
	keys_of(json_get_obj(ev, "content"), b, sizeof(b));
	assert_string_equal(a, b);
	json_object_put(out);
	json_object_put(ev);
	ev = full_event("m.room.member");
	out = redact_prune(ev, "11", NULL);
	c = json_get_obj(json_get_obj(out, "content"), "third_party_invite");
	keys_of(c, a, sizeof(a));
	assert_string_equal(a, "signed");
	json_object_put(out);
	json_object_put(ev);
}

static void
test_top_level(void **state)
{
	struct json_object *ev = full_event("m.room.message"), *out, *by;
	char got[1024];

	(void)state;
	by = json_tokener_parse(
	    "{\"event_id\":\"$r\",\"type\":"
	    "\"m.room.redaction\",\"content\":{\"reason\":\"r\"}}");
	out = redact_prune(ev, "1", by);
	keys_of(out, got, sizeof(got));
	assert_string_equal(
	    got, "auth_events,content,depth,event_id,hashes,"
	         "membership,origin,origin_server_ts,prev_events,prev_state,"
	         "room_id,sender,signatures,state_key,type,unsigned");
	keys_of(json_get_obj(out, "unsigned"), got, sizeof(got));
	assert_string_equal(got, "age,redacted_because");
	assert_string_equal(
	    json_get_str(
	        json_get_obj(json_get_obj(out, "unsigned"), "redacted_because"),
	        "event_id"),
	    "$r");
	json_object_put(out);
	out = redact_prune(ev, "11", NULL);
	keys_of(out, got, sizeof(got));
	assert_string_equal(
	    got, "auth_events,content,depth,event_id,hashes,"
	         "origin_server_ts,prev_events,room_id,sender,signatures,"
	         "state_key,type,unsigned");
	json_object_put(out);
	json_object_put(by);
	json_object_put(ev);
}

/* A missing or non-object content leaves {}; a non-object is no event. */
static void
test_odd_input(void **state)
{
	struct json_object *ev, *out, *s;

	(void)state;
	ev = json_tokener_parse("{\"type\":\"m.room.member\",\"content\":1}");
	out = redact_prune(ev, "1", NULL);
	assert_int_equal(
	    json_object_object_length(json_get_obj(out, "content")), 0);
	json_object_put(out);
	json_object_put(ev);
	s = json_object_new_string("x");
	assert_null(redact_prune(s, "1", NULL));
	json_object_put(s);
}

static void
test_target(void **state)
{
	struct json_object *o;

	(void)state;
	o = json_tokener_parse("{\"redacts\":\"$a\",\"content\":{}}");
	assert_string_equal(redact_target(o), "$a");
	json_object_put(o);
	o = json_tokener_parse("{\"content\":{\"redacts\":\"$b\"}}");
	assert_string_equal(redact_target(o), "$b");
	json_object_put(o);
	o = json_tokener_parse(
	    "{\"redacts\":5,\"content\":{\"redacts\":\"\"}}");
	assert_null(redact_target(o));
	json_object_put(o);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_content_tables),
	    cmocka_unit_test(test_v11_whole_create),
	    cmocka_unit_test(test_top_level),
	    cmocka_unit_test(test_odd_input),
	    cmocka_unit_test(test_target),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
