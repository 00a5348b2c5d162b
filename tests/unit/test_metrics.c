/*
 * common/metrics.c: the Prometheus text exposition format 0.0.4 as the
 * registry writes it (HELP/TYPE once per name, label and HELP escaping,
 * cumulative histogram buckets with +Inf, _sum and _count), the collect
 * callback, and the process metrics.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <event2/buffer.h>
#include <event2/event.h>

#include "metrics.h"

/* The rendering as a NUL-terminated string the caller frees. */
static char *
render(struct metrics *reg)
{
	struct evbuffer *b = evbuffer_new();
	size_t n;
	char *s;

	metrics_render(reg, b);
	n = evbuffer_get_length(b);
	s = malloc(n + 1);
	evbuffer_remove(b, s, n);
	s[n] = '\0';
	evbuffer_free(b);
	return s;
}

static size_t
count_of(const char *hay, const char *needle)
{
	size_t n = 0;

	for (const char *p = hay; (p = strstr(p, needle)) != NULL; p++)
		n++;
	return n;
}

static void
test_counter_and_labels(void **state)
{
	struct metrics *reg = metrics_new();
	struct metric *a, *b;
	char *s;

	(void)state;
	a = metrics_get(reg, METRIC_COUNTER, "x_total", "Things.", "status",
	                "200");
	b = metrics_get(reg, METRIC_COUNTER, "x_total", "Things.", "status",
	                "500");
	metrics_get(reg, METRIC_GAUGE, "y", "A gauge.", NULL, NULL);
	/* same series again: the same metric, not a duplicate */
	assert_ptr_equal(metrics_get(reg, METRIC_COUNTER, "x_total", "Things.",
	                             "status", "200"),
	                 a);
	metric_inc(a);
	metric_inc(a);
	metric_add(b, 5);
	s = render(reg);
	assert_int_equal(count_of(s, "# HELP x_total Things.\n"), 1);
	assert_int_equal(count_of(s, "# TYPE x_total counter\n"), 1);
	assert_non_null(strstr(
	    s, "# TYPE x_total counter\n"
	       "x_total{status=\"200\"} 2\nx_total{status=\"500\"} 5\n"));
	assert_non_null(strstr(s, "# TYPE y gauge\ny 0\n"));
	assert_int_equal(s[strlen(s) - 1], '\n');
	free(s);
	metrics_free(reg);
}

/* Two label pairs, and a histogram with a label before its le. */
static void
test_two_labels(void **state)
{
	static const double b[] = {1};
	struct metrics *reg = metrics_new();
	struct metric *a, *h;
	char *s;

	(void)state;
	a = metrics_get2(reg, METRIC_COUNTER, "r_total", "Requests.", "ep",
	                 "sync", "status", "200");
	assert_ptr_equal(metrics_get2(reg, METRIC_COUNTER, "r_total",
	                              "Requests.", "ep", "sync", "status",
	                              "200"),
	                 a);
	assert_ptr_not_equal(metrics_get2(reg, METRIC_COUNTER, "r_total",
	                                  "Requests.", "ep", "sync", "status",
	                                  "404"),
	                     a);
	assert_ptr_not_equal(metrics_get(reg, METRIC_COUNTER, "r_total",
	                                 "Requests.", "ep", "sync"),
	                     a);
	metric_add(a, 3);
	h = metrics_histogram_labelled(reg, "t_seconds", "Time.", b, 1, "ep",
	                               "sync");
	metric_observe(h, 0.5);
	s = render(reg);
	assert_int_equal(count_of(s, "# TYPE r_total counter\n"), 1);
	assert_non_null(strstr(s, "r_total{ep=\"sync\",status=\"200\"} 3\n"));
	assert_non_null(strstr(s, "r_total{ep=\"sync\",status=\"404\"} 0\n"));
	assert_non_null(strstr(s, "r_total{ep=\"sync\"} 0\n"));
	assert_non_null(strstr(s,
	                       "t_seconds_bucket{ep=\"sync\",le=\"1\"} 1\n"
	                       "t_seconds_bucket{ep=\"sync\",le=\"+Inf\"} 1\n"
	                       "t_seconds_sum{ep=\"sync\"} 0.5\n"
	                       "t_seconds_count{ep=\"sync\"} 1\n"));
	free(s);
	metrics_free(reg);
}

static void
test_escaping(void **state)
{
	struct metrics *reg = metrics_new();
	struct metric *m;
	char *s;

	(void)state;
	m = metrics_get(reg, METRIC_GAUGE, "e", "back\\slash \"q\"\nline", "l",
	                "a\\b\"c\nd");
	metric_set(m, 1.5);
	s = render(reg);
	/* HELP: backslash and newline only; labels: also the quote */
	assert_non_null(strstr(s, "# HELP e back\\\\slash \"q\"\\nline\n"));
	assert_non_null(strstr(s, "e{l=\"a\\\\b\\\"c\\nd\"} 1.5\n"));
	free(s);
	metrics_free(reg);
}

static const double le[] = {0.5, 1, 10};

static void
test_histogram(void **state)
{
	struct metrics *reg = metrics_new();
	struct metric *h;
	char *s;

	(void)state;
	h = metrics_histogram(reg, "lat_seconds", "Latency.", le, 3);
	metric_observe(h, 0.25);
	metric_observe(h, 0.5); /* le is inclusive */
	metric_observe(h, 5);
	metric_observe(h, 50); /* only +Inf */
	s = render(reg);
	assert_non_null(strstr(s, "# TYPE lat_seconds histogram\n"
	                          "lat_seconds_bucket{le=\"0.5\"} 2\n"
	                          "lat_seconds_bucket{le=\"1\"} 2\n"
	                          "lat_seconds_bucket{le=\"10\"} 3\n"
	                          "lat_seconds_bucket{le=\"+Inf\"} 4\n"
	                          "lat_seconds_sum 55.75\n"
	                          "lat_seconds_count 4\n"));
	free(s);
	metrics_free(reg);
}

static void
collect_cb(struct metrics *reg, void *arg)
{
	int *calls = arg;

	metric_set(
	    metrics_get(reg, METRIC_GAUGE, "c", "Collected.", NULL, NULL),
	    ++*calls);
}

static void
test_collect_and_process(void **state)
{
	struct metrics *reg = metrics_new();
	int calls = 0;
	char *s;

	(void)state;
	metrics_set_collect(reg, collect_cb, &calls);
	free(render(reg));
	s = render(reg);
	assert_int_equal(calls, 2);
	assert_non_null(strstr(s, "\nc 2\n"));
	assert_int_equal(count_of(s, "# TYPE c gauge\n"), 1);
	assert_non_null(
	    strstr(s, "# TYPE process_cpu_seconds_total counter\n"));
	assert_non_null(strstr(s, "\nprocess_resident_memory_bytes "));
	assert_non_null(strstr(s, "\nprocess_open_fds "));
	assert_non_null(strstr(s, "\nprocess_start_time_seconds "));
	free(s);
	metrics_free(reg);
}

/* A bad SYNCV3_PROM is refused (the daemons then exit), a good one binds. */
static void
test_listen_addr(void **state)
{
	struct event_base *base = event_base_new();
	struct metrics *reg = metrics_new();
	const char *bad[] = {"",           "9100",        ":9100",
	                     "127.0.0.1:", "127.0.0.1:x", "127.0.0.1:70000",
	                     "[::1]"};
	struct metrics_http *mh;

	(void)state;
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		assert_null(metrics_listen(base, bad[i], reg, NULL, NULL));
	mh = metrics_listen(base, "127.0.0.1:0", reg, NULL, NULL);
	assert_non_null(mh);
	metrics_http_free(mh);
	metrics_free(reg);
	event_base_free(base);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_counter_and_labels),
	    cmocka_unit_test(test_two_labels),
	    cmocka_unit_test(test_escaping),
	    cmocka_unit_test(test_histogram),
	    cmocka_unit_test(test_collect_and_process),
	    cmocka_unit_test(test_listen_addr),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
