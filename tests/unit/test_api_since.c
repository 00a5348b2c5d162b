/*
 * Since tokens: round trip, tampering, another device, malformed; and the
 * query string's verdict on them (query.c).
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "api.h"
#include "util.h"

static const char *secret = "s3cret";

static void
test_round_trip(void **state)
{
	struct since s = {42, 100, 101, 102, 103, 0}, o;
	char tok[SINCE_MAX];

	(void)state;
	since_format(&s, secret, "@a:hs", "DEV", tok);
	assert_int_equal(since_parse(tok, &o), 0);
	assert_int_equal(o.sid, 42);
	assert_int_equal(o.m, 100);
	assert_int_equal(o.l, 101);
	assert_int_equal(o.t, 102);
	assert_int_equal(o.d, 103);
	assert_true(since_verify(tok, secret, "@a:hs", "DEV"));
}

/* A typing list shown before its commit: <typing> is <pos>.<seq>. */
static void
test_typing_early(void **state)
{
	struct since s = {42, 100, 101, 102, 103, 7}, o;
	char tok[SINCE_MAX];
	static const char *const bad[] = {"s1_2_3_4._5_", "s1_2_3_4.0_5_",
	                                  "s1_2_3_.4_5_", "s1_2_3_4.5.6_5_"};

	(void)state;
	since_format(&s, secret, "@a:hs", "DEV", tok);
	assert_int_equal(since_parse(tok, &o), 0);
	assert_int_equal(o.t, 102);
	assert_int_equal(o.te, 7);
	assert_int_equal(o.d, 103);
	assert_true(since_verify(tok, secret, "@a:hs", "DEV"));
	/* without a seq the token is the one it always was */
	s.te = 0;
	since_format(&s, secret, "@a:hs", "DEV", tok);
	assert_non_null(strstr(tok, "_102_103_"));
	assert_int_equal(since_parse(tok, &o), 0);
	assert_int_equal(o.te, 0);
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		char b[SINCE_MAX];
		snprintf(b, sizeof(b), "%s0123456789abcdef", bad[i]);
		assert_int_equal(since_parse(b, &o), -1);
	}
}

static void
test_tamper(void **state)
{
	struct since s = {7, 1, 2, 3, 4, 0}, o;
	char tok[SINCE_MAX], bad[SINCE_MAX];

	(void)state;
	since_format(&s, secret, "@a:hs", "DEV", tok);
	strcpy(bad, tok);
	bad[1] = '8'; /* another session */
	assert_int_equal(since_parse(bad, &o), 0);
	assert_false(since_verify(bad, secret, "@a:hs", "DEV"));
	strcpy(bad, tok);
	bad[strlen(bad) - 1] = bad[strlen(bad) - 1] == 'a' ? 'b' : 'a';
	assert_false(since_verify(bad, secret, "@a:hs", "DEV"));
	assert_false(since_verify(tok, "other", "@a:hs", "DEV"));
}

static void
test_other_device(void **state)
{
	struct since s = {7, 1, 2, 3, 4, 0};
	char tok[SINCE_MAX];

	(void)state;
	since_format(&s, secret, "@a:hs", "DEV", tok);
	assert_false(since_verify(tok, secret, "@a:hs", "DEV2"));
	assert_false(since_verify(tok, secret, "@b:hs", "DEV"));
}

static void
test_malformed(void **state)
{
	struct since o;
	static const char *bad[] = {"", "s", "V3_S1_F6_12_19_11",
	    "s1_2_3_4_5", "s1_2_3_4_5_zzzzzzzzzzzzzzzz",
	    "s0_0_0_0_0_0123456789abcdef", "s-1_0_0_0_0_0123456789abcdef",
	    "s1_0_0_0_0_0123456789abcdef0", "s1__0_0_0_0123456789abcdef",
	    "s99999999999999999999_0_0_0_0_0123456789abcdef", NULL};

	(void)state;
	for (int i = 0; bad[i] != NULL; i++)
		assert_int_equal(since_parse(bad[i], &o), -1);
	assert_int_equal(since_parse("s1_0_0_0_0_0123456789abcdef", &o), 0);
}

/* issue #9: a since that does not parse is an unknown session, not a bad
 * parameter: M_UNKNOWN_SYNC_SESSION is what makes a client start again */
static void
test_query_since(void **state)
{
	static const char *const bad[] = {"since=garbage",
	    "since=s1_0_0_0_0_0123456789abcdef_1", "since=s0_0_0_0_0_0123456789abcdef",
	    "timeout=0&since=t1_2_3_4_5_0123456789abcdef"};
	struct since s = {3, 1, 2, 3, 4, 0};
	char tok[SINCE_MAX], *q;
	const char *ec, *em;
	struct query out;

	(void)state;
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		assert_int_equal(query_parse(bad[i], 60000, &out, &ec, &em), -1);
		assert_string_equal(ec, "M_UNKNOWN_SYNC_SESSION");
		assert_null(out.since);
	}
	assert_int_equal(query_parse("timeout=x&since=garbage", 60000, &out,
	    &ec, &em), -1);
	assert_string_equal(ec, "M_INVALID_PARAM");
	since_format(&s, secret, "@a:hs", "DEV", tok);
	q = xasprintf("timeout=5&since=%s", tok);
	assert_int_equal(query_parse(q, 60000, &out, &ec, &em), 0);
	assert_string_equal(out.since, tok);
	assert_int_equal(out.from.sid, 3);
	query_free(&out);
	free(q);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_round_trip),
	    cmocka_unit_test(test_tamper),
	    cmocka_unit_test(test_typing_early),
	    cmocka_unit_test(test_other_device),
	    cmocka_unit_test(test_malformed),
	    cmocka_unit_test(test_query_since),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
