/* Since tokens: round trip, tampering, another device, malformed. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "api.h"

static const char *secret = "s3cret";

static void
test_round_trip(void **state)
{
	struct since s = {42, 100, 101, 102, 103}, o;
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

static void
test_tamper(void **state)
{
	struct since s = {7, 1, 2, 3, 4}, o;
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
	struct since s = {7, 1, 2, 3, 4};
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

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_round_trip),
		cmocka_unit_test(test_tamper),
		cmocka_unit_test(test_other_device),
		cmocka_unit_test(test_malformed),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
