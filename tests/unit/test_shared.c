/*
 * The pieces the three daemons share: map.c (put/get/del/each, int64
 * values, growth, destructor), hash_fnv1a (published test vectors),
 * pg_lit.c (array literals, COPY rows, int64 text), config_getopt
 * (table-driven flags, -n, -v, bad values) and the device state names.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "config.h"
#include "map.h"
#include "pg_lit.h"
#include "proto.h"
#include "util.h"

static void
count_cb(const char *key, void *val, void *arg)
{
	size_t *n = arg;

	assert_non_null(key);
	assert_ptr_equal(val, (void *)(intptr_t)key[0]);
	(*n)++;
}

static int nfreed;

static void
val_free(void *v)
{
	nfreed++;
	free(v);
}

static void
test_map(void **state)
{
	struct map m = {0};
	char key[32];
	size_t n = 0;
	int64_t v;

	(void)state;
	assert_null(map_get(&m, "absent"));
	assert_null(map_del(&m, "absent"));
	assert_false(map_get_i64(&m, "absent", NULL));
	map_each(&m, count_cb, &n);
	assert_int_equal(n, 0);
	/* Past several doublings, each key still finds its own value. */
	for (int i = 0; i < 1000; i++) {
		snprintf(key, sizeof(key), "k%d", i);
		assert_null(map_put(&m, key, (void *)(intptr_t)key[0]));
	}
	assert_int_equal(map_count(&m), 1000);
	map_each(&m, count_cb, &n);
	assert_int_equal(n, 1000);
	assert_ptr_equal(map_put(&m, "k7", (void *)(intptr_t)'x'),
	                 (void *)(intptr_t)'k');
	assert_ptr_equal(map_get(&m, "k7"), (void *)(intptr_t)'x');
	assert_ptr_equal(map_del(&m, "k7"), (void *)(intptr_t)'x');
	assert_null(map_get(&m, "k7"));
	assert_int_equal(map_count(&m), 999);
	map_free(&m, NULL);
	assert_int_equal(map_count(&m), 0);
	assert_null(map_get(&m, "k1"));

	/* int64 values: 0 and negatives are values, not "absent". */
	map_put_i64(&m, "zero", 0);
	map_put_i64(&m, "neg", -42);
	assert_true(map_get_i64(&m, "zero", &v));
	assert_int_equal(v, 0);
	assert_true(map_get_i64(&m, "neg", &v));
	assert_int_equal(v, -42);
	map_put_i64(&m, "neg", 7);
	assert_true(map_get_i64(&m, "neg", &v));
	assert_int_equal(v, 7);
	map_free(&m, NULL);

	/* The destructor sees each remaining value once. */
	map_init(&m);
	map_put(&m, "a", xstrdup("1"));
	map_put(&m, "b", xstrdup("2"));
	free(map_del(&m, "a"));
	nfreed = 0;
	map_free(&m, val_free);
	assert_int_equal(nfreed, 1);
}

static void
test_map_key3(void **state)
{
	char *a = map_key3("ab", "c", "d"), *b = map_key3("a", "bc", "d");
	char *c = map_key3("a", "b", NULL), *d = map_key3("a", "b", "");

	(void)state;
	assert_string_not_equal(a, b);
	assert_string_equal(c, d);
	free(a);
	free(b);
	free(c);
	free(d);
}

static void
test_fnv1a(void **state)
{
	(void)state;
	/* The FNV-1a 64-bit test vectors (offset basis, "a", "foobar"). */
	assert_true(hash_fnv1a("", 0) == 0xcbf29ce484222325ULL);
	assert_true(hash_fnv1a("a", 1) == 0xaf63dc4c8601ec8cULL);
	assert_true(hash_fnv1a("foobar", 6) == 0x85944171f73967e8ULL);
	/* Length, not NUL, ends the input. */
	assert_true(hash_fnv1a("a\0b", 3) != hash_fnv1a("a", 1));
}

/* The poller's lease flush array test, moved here with the builder. */
static void
test_pg_array(void **state)
{
	const char *items[] = {"@a:x", "q\"uo\\te", ""};
	char *s;

	(void)state;
	s = pg_text_array(items, 3);
	assert_string_equal(s, "{\"@a:x\",\"q\\\"uo\\\\te\",\"\"}");
	free(s);
	s = pg_text_array(items, 0);
	assert_string_equal(s, "{}");
	free(s);
}

static void
test_pg_lit(void **state)
{
	struct pg_lit b = {0};
	char buf[PG_I64_LEN];

	(void)state;
	assert_string_equal(pg_arr_end(&b), "{}");
	pg_lit_reset(&b);
	pg_arr_str(&b, "x");
	pg_arr_str(&b, NULL);
	pg_arr_i64(&b, INT64_MIN);
	pg_arr_bool(&b, true);
	pg_arr_strn(&b, "yz", 1);
	assert_string_equal(pg_arr_end(&b),
	                    "{\"x\",NULL,-9223372036854775808,t,\"y\"}");

	pg_lit_reset(&b);
	pg_copy_str(&b, "a\tb\\c\nd\re");
	pg_copy_str(&b, NULL);
	pg_copy_i64(&b, 12);
	pg_copy_bool(&b, false);
	pg_copy_row_end(&b);
	pg_copy_str(&b, "2");
	pg_copy_row_end(&b);
	assert_int_equal(b.n, strlen("a\\tb\\\\c\\nd\\re\t\\N\t12\tf\n2\n"));
	assert_memory_equal(b.p, "a\\tb\\\\c\\nd\\re\t\\N\t12\tf\n2\n", b.n);
	pg_lit_free(&b);
	assert_null(b.p);

	assert_string_equal(pg_i64(buf, INT64_MAX), "9223372036854775807");
	assert_string_equal(pg_i64(buf, -1), "-1");
}

struct ocfg {
	char *db;
	char *id;
	long long n;
};

static const struct cfg_row orows[] = {
    {"O_DB", CFG_STR, offsetof(struct ocfg, db), "dbname=x", 0, 0, CFG_OPT('d'),
     ""},
    {"O_ID", CFG_STR, offsetof(struct ocfg, id), NULL, 0, 0, CFG_OPT('I'), ""},
    {"O_N", CFG_INT, offsetof(struct ocfg, n), "5", 1, 10, CFG_OPT('b'), ""},
    {"O_QUIET", CFG_STR, offsetof(struct ocfg, db), NULL, 0, 0, 0, ""},
    {NULL, 0, 0, NULL, 0, 0, 0, NULL},
};

static int
run_getopt(struct ocfg *c, struct cfg_cli *cli, char **argv)
{
	int argc = 0;

	while (argv[argc] != NULL)
		argc++;
	memset(c, 0, sizeof(*c));
	if (config_load(orows, c) == -1)
		return -100;
	return config_getopt(orows, c, argc, argv, cli);
}

static void
test_config_getopt(void **state)
{
	char *a1[] = {"x",  "-vv", "-d", "db2", "-n",
	              "-I", "me",  "-b", "9",   NULL};
	char *a2[] = {"x", NULL};
	char *a3[] = {"x", "-b", "11", NULL};
	char *a4[] = {"x", "-q", NULL};
	char *a5[] = {"x", "-d", NULL};
	struct ocfg c;
	struct cfg_cli cli;

	(void)state;
	assert_int_equal(run_getopt(&c, &cli, a1), 0);
	assert_string_equal(c.db, "db2");
	assert_string_equal(c.id, "me");
	assert_int_equal(c.n, 9);
	assert_true(cli.is_check);
	assert_int_equal(cli.verbose, 2);
	config_free(orows, &c);

	assert_int_equal(run_getopt(&c, &cli, a2), 0);
	assert_string_equal(c.db, "dbname=x");
	assert_null(c.id);
	assert_false(cli.is_check);
	assert_int_equal(cli.verbose, 0);
	config_free(orows, &c);

	/* A flag's value is checked like its variable's. */
	assert_int_equal(run_getopt(&c, &cli, a3), -1);
	config_free(orows, &c);
	/* A row without CFG_OPT has no flag; -q is unknown. */
	assert_int_equal(run_getopt(&c, &cli, a4), CFG_EUSAGE);
	config_free(orows, &c);
	assert_int_equal(run_getopt(&c, &cli, a5), CFG_EUSAGE);
	config_free(orows, &c);
}

static void
test_dev_state(void **state)
{
	(void)state;
	for (int s = DEV_STATE_NEW; s <= DEV_STATE_SYNCED; s++) {
		assert_string_not_equal(dev_state_name(s), "?");
		assert_int_equal(dev_state_parse(dev_state_name(s)), s);
	}
	/* The stored values, which migrations and the api's SQL spell out. */
	assert_string_equal(dev_state_name(DEV_STATE_NEW), "new");
	assert_string_equal(dev_state_name(DEV_STATE_EXPIRED), "expired");
	assert_string_equal(dev_state_name(DEV_STATE_SYNCED), "synced");
	assert_int_equal(dev_state_parse("Expired"), -1);
	assert_int_equal(dev_state_parse(""), -1);
	assert_string_equal(dev_state_name((enum dev_state)99), "?");
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_map),
	    cmocka_unit_test(test_map_key3),
	    cmocka_unit_test(test_fnv1a),
	    cmocka_unit_test(test_pg_array),
	    cmocka_unit_test(test_pg_lit),
	    cmocka_unit_test(test_config_getopt),
	    cmocka_unit_test(test_dev_state),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
