/* Room names (spec calculation) and case-folded sort keys. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "api.h"

static void
check_name(const char *want, const char *name, const char *alias,
    const struct hero *h, int nh, long joined, long invited)
{
	char *got = room_name_calc(name, alias, h, nh, joined, invited);
	if (strcmp(got, want) != 0)
		fail_msg("got [%s] want [%s]", got, want);
	free(got);
}

static void
test_room_name(void **state)
{
	struct hero h[] = {{"@alice:hs", "Alice"}, {"@bob:hs", NULL},
	    {"@carol:hs", ""}, {"@dan:hs", "Dan"}, {"@eve:hs", "Eve"}};

	(void)state;
	check_name("Room", "Room", "#a:hs", h, 2, 3, 0);
	check_name("#a:hs", "", "#a:hs", h, 2, 3, 0);
	check_name("#a:hs", NULL, "#a:hs", NULL, 0, 0, 0);
	check_name("Alice", NULL, NULL, h, 1, 2, 0);
	check_name("Alice and @bob:hs", NULL, NULL, h, 2, 3, 0);
	check_name("Alice, @bob:hs and @carol:hs", NULL, NULL, h, 3, 3, 1);
	check_name("Alice, @bob:hs and 3 others", NULL, NULL, h, 2, 6, 0);
	check_name("Alice and 1 other", NULL, NULL, h, 1, 3, 0);
	check_name("Empty Room", NULL, NULL, NULL, 0, 1, 0);
	check_name("Empty Room (was Alice and @bob:hs)", NULL, NULL, h, 2, 1,
	    0);
}

static void
check_fold(const char *in, const char *want)
{
	char *got = casefold(in);
	if (strcmp(got, want) != 0)
		fail_msg("fold(%s) = [%s] want [%s]", in, got, want);
	free(got);
}

static void
test_casefold(void **state)
{
	(void)state;
	check_fold("Alice", "alice");
	check_fold("ÀÉÎÕÜ", "àéîõü");
	check_fold("Straße", "strasse");
	check_fold("STRASSE", "strasse");
	check_fold("ΣΊΣΥΦΟΣ", "σίσυφοσ");
	check_fold("σίσυφος", "σίσυφοσ");
	check_fold("ДМИТРИЙ", "дмитрий");
	check_fold("ſ", "s");
	check_fold("日本", "日本");
	check_fold("Zoë", "zoë");
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_room_name),
		cmocka_unit_test(test_casefold),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
