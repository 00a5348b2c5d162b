/*
 * Sticky parameters: the seed's TestRequestApplyDeltas cases (with our
 * field-level stickiness), clearing next_page, dropping a stream with null,
 * validation errors and negotiation.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "api.h"
#include "json_util.h"

static struct json_object *
J(const char *s)
{
	struct json_object *o = json_parse_bounded(s, strlen(s), NULL);
	assert_non_null(o);
	return o;
}

/* merges delta into stored (JSON text); returns changed, checks result */
static bool
merge(struct json_object *stored, const char *delta, const char *want)
{
	struct json_object *d = J(delta), *w = J(want);
	const char *ec, *em;
	bool changed;

	assert_int_equal(params_merge(stored, d, &changed, &ec, &em), 0);
	if (!json_object_equal(stored, w))
		fail_msg("got %s want %s", json_plain(stored, NULL), want);
	json_object_put(d);
	json_object_put(w);
	return changed;
}

static void
test_apply_deltas(void **state)
{
	struct json_object *s = json_object_new_object();

	(void)state;
	/* combining two streams keeps both */
	assert_true(merge(s, "{\"typing\":{\"room_id\":\"!a\"}}",
	    "{\"typing\":{\"room_id\":\"!a\"}}"));
	assert_true(merge(s, "{\"to_device\":{\"limit\":5}}",
	    "{\"typing\":{\"room_id\":\"!a\"},\"to_device\":{\"limit\":5}}"));
	/* replacing a field of the same stream */
	assert_true(merge(s, "{\"typing\":{\"room_id\":\"!b\"}}",
	    "{\"typing\":{\"room_id\":\"!b\"},\"to_device\":{\"limit\":5}}"));
	/* identical delta: unchanged */
	assert_false(merge(s, "{\"typing\":{\"room_id\":\"!b\"}}",
	    "{\"typing\":{\"room_id\":\"!b\"},\"to_device\":{\"limit\":5}}"));
	/* a stream left out, or {} continues as it was (fields sticky) */
	assert_false(merge(s, "{}",
	    "{\"typing\":{\"room_id\":\"!b\"},\"to_device\":{\"limit\":5}}"));
	assert_false(merge(s, "{\"typing\":{}}",
	    "{\"typing\":{\"room_id\":\"!b\"},\"to_device\":{\"limit\":5}}"));
	/* a field set to null is cleared */
	assert_true(merge(s, "{\"typing\":{\"room_id\":null}}",
	    "{\"typing\":{},\"to_device\":{\"limit\":5}}"));
	/* a stream set to null is dropped */
	assert_true(merge(s, "{\"to_device\":null}", "{\"typing\":{}}"));
	json_object_put(s);
}

static void
test_next_page(void **state)
{
	struct json_object *s = json_object_new_object();

	(void)state;
	merge(s, "{\"room_member\":{\"room_id\":\"!a\",\"limit\":5,"
	    "\"sort\":\"by_name\"}}", "{\"room_member\":{\"room_id\":\"!a\","
	    "\"limit\":5,\"sort\":\"by_name\"}}");
	/* only next_page: room_id etc. are kept (seed bug #2 fixed) */
	assert_true(merge(s, "{\"room_member\":{\"next_page\":\"1\"}}",
	    "{\"room_member\":{\"room_id\":\"!a\",\"limit\":5,\"sort\":"
	    "\"by_name\",\"next_page\":\"1\"}}"));
	/* next_page can be cleared, with "" or null (seed bug #1 fixed) */
	assert_true(merge(s, "{\"room_member\":{\"next_page\":\"\"}}",
	    "{\"room_member\":{\"room_id\":\"!a\",\"limit\":5,\"sort\":"
	    "\"by_name\"}}"));
	merge(s, "{\"room_members\":{\"next_page\":\"2\"}}",
	    "{\"room_member\":{\"room_id\":\"!a\",\"limit\":5,\"sort\":"
	    "\"by_name\",\"next_page\":\"2\"}}");
	assert_true(merge(s, "{\"room_member\":{\"next_page\":null}}",
	    "{\"room_member\":{\"room_id\":\"!a\",\"limit\":5,\"sort\":"
	    "\"by_name\"}}"));
	json_object_put(s);
}

static void
expect_err(const char *delta, const char *code)
{
	struct json_object *s = J("{\"typing\":{\"room_id\":\"!a\"}}");
	struct json_object *d = J(delta);
	const char *ec = NULL, *em = NULL;
	bool changed;

	assert_int_equal(params_merge(s, d, &changed, &ec, &em), -1);
	if (strcmp(ec, code) != 0)
		fail_msg("%s: got %s want %s", delta, ec, code);
	/* nothing was applied */
	assert_string_equal(json_plain(s, NULL),
	    "{\"typing\":{\"room_id\":\"!a\"}}");
	json_object_put(s);
	json_object_put(d);
}

static void
test_errors(void **state)
{
	(void)state;
	expect_err("[]", "M_BAD_JSON");
	expect_err("{\"typing\":5}", "M_BAD_JSON");
	expect_err("{\"typing\":{\"room_id\":5}}", "M_BAD_JSON");
	expect_err("{\"to_device\":{\"limit\":-1}}", "M_INVALID_PARAM");
	expect_err("{\"to_device\":{\"limit\":\"5\"}}", "M_INVALID_PARAM");
	expect_err("{\"to_device\":{\"limit\":5.0}}", "M_INVALID_PARAM");
	expect_err("{\"room_member\":{\"sort\":\"by_size\"}}",
	    "M_INVALID_PARAM");
	expect_err("{\"room_member\":{\"next_page\":\"-1\"}}",
	    "M_INVALID_PARAM");
	expect_err("{\"room_member\":{\"next_page\":\"x\"}}",
	    "M_INVALID_PARAM");
	expect_err("{\"room_member\":{\"next_page\":3}}", "M_INVALID_PARAM");
	expect_err("{\"room_list\":{\"sort\":[\"by_name\",\"by_tag\"]}}",
	    "M_INVALID_PARAM");
	expect_err("{\"room_list\":{\"sort\":[1]}}", "M_BAD_JSON");
	expect_err("{\"room_list\":{\"state_events\":[[\"m.room.name\"]]}}",
	    "M_BAD_JSON");
	expect_err("{\"room_list\":{\"spaces\":\"!s\"}}", "M_BAD_JSON");
	expect_err("{\"room_list\":{\"limit\":-5}}", "M_INVALID_PARAM");
}

/* delta (raw bytes, length n) is refused with code, the message naming field */
static void
expect_bad_str(const char *delta, size_t n, const char *code,
    const char *field)
{
	struct json_object *s = json_object_new_object();
	struct json_object *d = json_parse_bounded(delta, n, NULL);
	const char *ec = NULL, *em = NULL;
	bool changed;

	assert_non_null(d);
	assert_int_equal(params_merge(s, d, &changed, &ec, &em), -1);
	assert_string_equal(ec, code);
	if (strstr(em, field) == NULL)
		fail_msg("%s: message [%s] does not name %s", delta, em, field);
	assert_string_equal(json_plain(s, NULL), "{}");
	json_object_put(s);
	json_object_put(d);
}
#define BAD_STR(lit, code, field) \
	expect_bad_str(lit, sizeof(lit) - 1, code, field)

/* issue #9: strings the tokener lets through but C or Postgres cannot take */
static void
test_strings(void **state)
{
	char big[400];
	struct json_object *s = json_object_new_object();

	(void)state;
	/* overlong forms, surrogates, past U+10FFFF, bad lead bytes */
	BAD_STR("{\"typing\":{\"room_id\":\"!\xc0\xaf:hs\"}}", "M_BAD_JSON",
	    "typing.room_id");
	BAD_STR("{\"room_member\":{\"room_id\":\"!\xe0\x80\xaf\"}}",
	    "M_BAD_JSON", "room_member.room_id");
	BAD_STR("{\"room_list\":{\"spaces\":[\"!ok\",\"!\xed\xa0\x80\"]}}",
	    "M_BAD_JSON", "room_list.spaces");
	BAD_STR("{\"room_list\":{\"state_events\":[[\"\xf4\x90\x80\x80\","
	    "\"\"]]}}", "M_BAD_JSON", "room_list.state_events");
	BAD_STR("{\"typing\":{\"room_id\":\"\xf5\x80\x80\x80\"}}", "M_BAD_JSON",
	    "typing.room_id");
	BAD_STR("{\"typing\":{\"room_id\":\"\xf0\x80\x80\xaf\"}}", "M_BAD_JSON",
	    "typing.room_id");
	/* NUL inside: C would see a shorter string */
	BAD_STR("{\"typing\":{\"room_id\":\"!a\\u0000:evil\"}}", "M_BAD_JSON",
	    "typing.room_id");
	BAD_STR("{\"room_member\":{\"room_id\":\"!a\",\"next_page\":"
	    "\"1\\u0000x\"}}", "M_BAD_JSON", "room_member.next_page");
	BAD_STR("{\"room_member\":{\"sort\":\"by_name\\u0000x\"}}",
	    "M_BAD_JSON", "room_member.sort");
	BAD_STR("{\"room_list\":{\"sort\":[\"by_name\\u0000\"]}}",
	    "M_BAD_JSON", "room_list.sort");
	BAD_STR("{\"room_list\":{\"state_events\":[[\"m.room.name\","
	    "\"\\u0000\"]]}}", "M_BAD_JSON", "room_list.state_events");
	/* the spec's 255-byte limit */
	snprintf(big, sizeof(big), "{\"typing\":{\"room_id\":\"!%0255d\"}}",
	    0);
	expect_bad_str(big, strlen(big), "M_INVALID_PARAM", "typing.room_id");
	snprintf(big, sizeof(big), "{\"room_list\":{\"spaces\":[\"!%0255d\"]}}",
	    0);
	expect_bad_str(big, strlen(big), "M_INVALID_PARAM", "room_list.spaces");
	/* what is fine stays fine: 255 bytes, every UTF-8 length */
	snprintf(big, sizeof(big), "{\"typing\":{\"room_id\":\"!%0254d\"}}",
	    0);
	merge(s, big, big);
	merge(s, "{\"typing\":{\"room_id\":\"!\xc3\xa9\xe2\x98\x83\xf0\x9f\x98"
	    "\x80\xf4\x8f\xbf\xbf:hs\"}}", "{\"typing\":{\"room_id\":\"!\xc3\xa9"
	    "\xe2\x98\x83\xf0\x9f\x98\x80\xf4\x8f\xbf\xbf:hs\"}}");
	merge(s, "{\"typing\":{\"room_id\":\"\\u00e9\\ud83d\\ude00\"}}",
	    "{\"typing\":{\"room_id\":\"\xc3\xa9\xf0\x9f\x98\x80\"}}");
	json_object_put(s);
}

static void
test_negotiation(void **state)
{
	struct params p;
	struct json_object *o;

	(void)state;
	o = J("{\"to_device\":{},\"room_member\":{\"room_id\":\"!a\"},"
	    "\"room_list\":{},\"typing\":{}}");
	params_parse(o, &p);
	assert_true(p.has_typing && p.has_to_device && p.has_member &&
	    p.has_list);
	assert_string_equal(p.typing_room, "");
	assert_int_equal(p.td_limit, 100);
	assert_int_equal(p.m_limit, 50);
	assert_int_equal(p.m_sort, SORT_BY_PL);
	assert_int_equal(p.m_page, -1);
	assert_int_equal(p.l_limit, 20);
	assert_int_equal(p.l_nsorts, 1);
	assert_int_equal(p.l_sorts[0], SORT_BY_RECENCY);
	json_object_put(o);
	o = J("{\"to_device\":{\"limit\":99999},\"room_member\":{\"limit\":"
	    "5000,\"sort\":\"by_name\",\"next_page\":\"3\"},\"room_list\":"
	    "{\"limit\":0,\"sort\":[\"by_name\",\"by_recency\"],"
	    "\"state_events\":[[\"m.room.topic\",\"\"],[\"*\",\"*\"]],"
	    "\"spaces\":[\"!s\"],\"next_page\":\"2\"}}");
	params_parse(o, &p);
	assert_int_equal(p.td_limit, 1000);
	assert_int_equal(p.m_limit, 1000);
	assert_int_equal(p.m_sort, SORT_BY_NAME);
	assert_int_equal(p.m_page, 3);
	assert_int_equal(p.l_limit, 20);
	assert_int_equal(p.l_nsorts, 2);
	assert_int_equal(p.l_sorts[0], SORT_BY_NAME);
	assert_int_equal(p.l_sorts[1], SORT_BY_RECENCY);
	assert_int_equal(p.l_nst, 2);
	assert_string_equal(p.l_st_type[1], "*");
	assert_int_equal(p.l_nspaces, 1);
	assert_int_equal(p.l_page, 2);
	json_object_put(o);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_apply_deltas),
		cmocka_unit_test(test_next_page),
		cmocka_unit_test(test_errors),
		cmocka_unit_test(test_strings),
		cmocka_unit_test(test_negotiation),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
