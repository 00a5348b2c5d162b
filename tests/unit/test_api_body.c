/*
 * proxy_body.c: a held-back request body read off a connection's input as
 * it arrives, in pieces of any size: Content-Length bodies end at their
 * length, chunked ones lose their framing (extensions and trailers
 * dropped), bad framing and bodies past the limit are said once, and an
 * empty input is "again", never the end.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>

#include "api.h"

struct fix {
	struct event_base *base;
	struct bufferevent *pair[2]; /* the client writes 0, the body reads 1 */
	int kicks;
};

static void
kick(void *arg)
{
	((struct fix *)arg)->kicks++;
}

static struct pbody *
open_body(struct fix *f, long long len, long long max)
{
	struct http_body info = {.len = len};

	f->base = event_base_new();
	assert_int_equal(bufferevent_pair_new(f->base, 0, f->pair), 0);
	bufferevent_enable(f->pair[0], EV_WRITE);
	bufferevent_enable(f->pair[1], EV_READ);
	f->kicks = 0;
	return pbody_new(f->pair[1], &info, max, 4096, kick, f);
}

static void
close_body(struct fix *f, struct pbody *b)
{
	pbody_free(b);
	bufferevent_free(f->pair[0]);
	bufferevent_free(f->pair[1]);
	event_base_free(f->base);
}

static void
feed(struct fix *f, const char *s)
{
	/* a bufferevent's input takes bytes only from its peer */
	bufferevent_write(f->pair[0], s, strlen(s));
}

/* Reads all there is, n bytes at a time, into out; the last result. */
static ev_ssize_t
drain(struct pbody *b, char *out, size_t cap, size_t n, size_t *len)
{
	ev_ssize_t got;

	while ((got = pbody_read(b, out + *len, n)) > 0) {
		*len += (size_t)got;
		assert_true(*len <= cap);
	}
	return got;
}

static void
test_length(void **state)
{
	struct fix f;
	struct pbody *b = open_body(&f, 11, 1000);
	char out[64];
	size_t len = 0;

	(void)state;
	pbody_start(b);
	assert_int_equal(pbody_read(b, out, sizeof(out)), PBODY_AGAIN);
	feed(&f, "hello");
	assert_int_equal(f.kicks, 1);
	assert_int_equal(drain(b, out, sizeof(out), 2, &len), PBODY_AGAIN);
	feed(&f, " worldNEXT");
	assert_int_equal(drain(b, out, sizeof(out), 3, &len), 0);
	assert_int_equal(len, 11);
	assert_memory_equal(out, "hello world", 11);
	assert_true(pbody_is_done(b));
	/* what follows the body is not the body's */
	assert_int_equal(evbuffer_get_length(bufferevent_get_input(f.pair[1])),
	                 4);
	close_body(&f, b);
}

static void
test_chunked(void **state)
{
	struct fix f;
	struct pbody *b = open_body(&f, -1, 1000);
	const char *wire = "5;ext=1\r\nhello\r\n1\r\n \r\nA\r\n0123456789\r\n"
	                   "0\r\nX-Trailer: dropped\r\n\r\n";
	char out[64], one[2] = {0};
	size_t len = 0;
	ev_ssize_t got = PBODY_AGAIN;

	(void)state;
	/* a byte at a time: every framing state waits for more */
	for (const char *p = wire; *p != '\0'; p++) {
		one[0] = *p;
		feed(&f, one);
		got = drain(b, out, sizeof(out), 7, &len);
		if (p[1] != '\0')
			assert_int_equal(got, PBODY_AGAIN);
	}
	assert_int_equal(got, 0);
	assert_int_equal(len, 16);
	assert_memory_equal(out, "hello 0123456789", 16);
	close_body(&f, b);
}

static void
test_bad_chunks(void **state)
{
	static const char *const bad[] = {
	    "zz\r\n",
	    "5\r\nhelloX\r\n",
	    "-1\r\n",
	    "5 junk\r\nhello\r\n",
	};
	char out[64];

	(void)state;
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		struct fix f;
		struct pbody *b = open_body(&f, -1, 1000);
		size_t len = 0;

		feed(&f, bad[i]);
		if (drain(b, out, sizeof(out), sizeof(out), &len) != PBODY_EBAD)
			fail_msg("%s: not refused", bad[i]);
		close_body(&f, b);
	}
}

static void
test_too_big(void **state)
{
	struct fix f;
	struct pbody *b = open_body(&f, -1, 8);
	char out[64];
	size_t len = 0;

	(void)state;
	feed(&f, "6\r\nabcdef\r\n6\r\nghijkl\r\n0\r\n\r\n");
	assert_int_equal(drain(b, out, sizeof(out), 4, &len), PBODY_ETOOBIG);
	/* said once: the rest can be read (and dropped) to the end */
	assert_int_equal(drain(b, out, sizeof(out), 4, &len), 0);
	assert_int_equal(len, 8);
	close_body(&f, b);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_length),
	    cmocka_unit_test(test_chunked),
	    cmocka_unit_test(test_bad_chunks),
	    cmocka_unit_test(test_too_big),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
