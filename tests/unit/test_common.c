/*
 * common/: config tables (defaults, environment, flags, bad values),
 * token crypto (round trip, tamper detection, wrong key) and bounded JSON
 * parsing.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>
#include <zmq.h>

#include "config.h"
#include "crypto.h"
#include "json_util.h"
#include "zmq_ev.h"

struct tcfg {
	char *name;
	long long n;
	bool flag;
	char *secret;
};

static const struct cfg_row rows[] = {
	{"T_NAME", CFG_STR, offsetof(struct tcfg, name), "def", 0, 0,
	    CFG_REQUIRED, "a name"},
	{"T_N", CFG_INT, offsetof(struct tcfg, n), "5", 1, 10, 0, "n"},
	{"T_FLAG", CFG_BOOL, offsetof(struct tcfg, flag), "no", 0, 0, 0, ""},
	{"T_SECRET", CFG_STR, offsetof(struct tcfg, secret), NULL, 0, 0,
	    CFG_SECRET, ""},
	{NULL, 0, 0, NULL, 0, 0, 0, NULL},
};

static void
test_config(void **state)
{
	struct tcfg c = {0};
	char buf[512];
	FILE *fp;

	(void)state;
	unsetenv("T_NAME");
	setenv("T_N", "7", 1);
	setenv("T_FLAG", "on", 1);
	setenv("T_SECRET", "hunter2", 1);
	assert_int_equal(config_load(rows, &c), 0);
	assert_string_equal(c.name, "def");
	assert_int_equal(c.n, 7);
	assert_true(c.flag);
	/* Flags override the environment. */
	assert_int_equal(config_set(rows, &c, "T_N", "9"), 0);
	assert_int_equal(c.n, 9);
	/* Out of range, junk and unknown names are errors. */
	assert_int_equal(config_set(rows, &c, "T_N", "11"), -1);
	assert_int_equal(config_set(rows, &c, "T_N", "3x"), -1);
	assert_int_equal(config_set(rows, &c, "T_FLAG", "maybe"), -1);
	assert_int_equal(config_set(rows, &c, "T_NOPE", "1"), -1);
	assert_int_equal(c.n, 9);
	/* Printing masks secrets. */
	fp = fmemopen(buf, sizeof(buf), "w");
	config_print(rows, &c, fp);
	fclose(fp);
	assert_non_null(strstr(buf, "T_N=9\n"));
	assert_non_null(strstr(buf, "T_SECRET=********\n"));
	assert_null(strstr(buf, "hunter2"));
	assert_int_equal(config_check(rows, &c), 0);
	assert_int_equal(config_set(rows, &c, "T_NAME", ""), 0);
	assert_int_equal(config_check(rows, &c), -1);
	config_free(rows, &c);
	/* A bad environment value fails the load. */
	setenv("T_N", "0", 1);
	assert_int_equal(config_load(rows, &c), -1);
	config_free(rows, &c);
	unsetenv("T_N");
}

static void
hex(const unsigned char *v, size_t n, char *out)
{
	for (size_t i = 0; i < n; i++)
		snprintf(out + 2 * i, 3, "%02x", v[i]);
}

/* RFC 4231 case 2 and a second key, then the first again (re-keyed). */
static void
test_hmac(void **state)
{
	const char *jefe = "5bdcc146bf60754e6a042426089575c7"
	                   "5a003f089d2739839dec58b964ec3843";
	unsigned char md[32];
	char h[65];

	(void)state;
	crypto_hmac_sha256("Jefe", "what do ya want for nothing?", 28, md);
	hex(md, sizeof(md), h);
	assert_string_equal(h, jefe);
	crypto_hmac_sha256("key", "The quick brown fox jumps over the lazy dog",
	                   43, md);
	hex(md, sizeof(md), h);
	assert_string_equal(h, "f7bc83f430538424b13298e6aa6fb143"
	                       "ef4d59a14946175997479dbc2d1a3cd8");
	crypto_hmac_sha256("Jefe", "what do ya want for nothing?", 28, md);
	hex(md, sizeof(md), h);
	assert_string_equal(h, jefe);
}

static void
test_crypto(void **state)
{
	char h[TOKEN_HASH_LEN + 1], *enc, *dec;

	(void)state;
	token_hash("abc", 3, h);
	assert_string_equal(h, "ba7816bf8f01cfea414140de5dae2223"
			       "b00361a396177a9cb410ff61f20015ad");
	enc = token_encrypt("s3cret", "syt_token_value");
	assert_non_null(enc);
	assert_null(strstr(enc, "syt_token"));
	dec = token_decrypt("s3cret", enc);
	assert_non_null(dec);
	assert_string_equal(dec, "syt_token_value");
	free(dec);
	/* Wrong key and tampered data are refused. */
	assert_null(token_decrypt("other", enc));
	enc[20] = enc[20] == 'A' ? 'B' : 'A';
	assert_null(token_decrypt("s3cret", enc));
	assert_null(token_decrypt("s3cret", "not base64!"));
	assert_null(token_decrypt("s3cret", ""));
	assert_null(token_decrypt("s3cret", "AAAA"));
	free(enc);
	/* Same token, two encryptions: different nonces. */
	char *e1 = token_encrypt("k", "t"), *e2 = token_encrypt("k", "t");
	assert_string_not_equal(e1, e2);
	free(e1);
	free(e2);
}

static void
test_json(void **state)
{
	const char *err;
	struct json_object *o;
	int64_t n;
	char deep[300];

	(void)state;
	o = json_parse_bounded("{\"a\":1,\"s\":\"x\"} \n", 17, &err);
	assert_non_null(o);
	assert_true(json_get_int(o, "a", &n) && n == 1);
	assert_null(json_get_str(o, "a"));
	assert_string_equal(json_get_str(o, "s"), "x");
	json_object_put(o);
	assert_null(json_parse_bounded("{\"a\":1} x", 9, &err));
	assert_non_null(err);
	assert_null(json_parse_bounded("{\"a\":", 5, &err));
	assert_string_equal(err, "truncated JSON");
	assert_null(json_parse_bounded("", 0, &err));
	assert_null(json_parse_bounded("\"\xff\"", 3, &err));
	memset(deep, '[', sizeof(deep));
	assert_null(json_parse_bounded(deep, sizeof(deep), &err));
	/* \u0000 inside a string is kept and serialised back. */
	o = json_parse_bounded("{\"k\":\"a\\u0000b\"}", 16, &err);
	assert_non_null(o);
	size_t len;
	const char *s = json_plain(o, &len);
	assert_string_equal(s, "{\"k\":\"a\\u0000b\"}");
	json_object_put(o);
}

/*
 * zmq_ev: a burst of messages longer than a batch: the second message
 * makes a pipe readable, as a request arriving beside a burst of notices
 * (issue #13). The pipe is served before the burst is read to its end.
 */
struct burst {
	int fds[2];
	int got, got_at_fd;
};

static void
burst_read_cb(void *sock, void *arg)
{
	struct burst *b = arg;
	char c;

	if (zmq_recv(sock, &c, 1, ZMQ_DONTWAIT) == 1 && ++b->got == 2)
		assert_int_equal(write(b->fds[1], "x", 1), 1);
}

static void
burst_fd_cb(evutil_socket_t fd, short what, void *arg)
{
	struct burst *b = arg;
	char c;

	(void)what;
	assert_int_equal(read(fd, &c, 1), 1);
	b->got_at_fd = b->got;
}

static void
test_zmq_ev_yields(void **state)
{
	struct burst b = {.got_at_fd = -1};
	const int total = 40;
	void *zctx = zmq_ctx_new(), *pull, *push;
	struct event_base *base = event_base_new();
	struct event *ev;
	struct zmq_ev *ze;

	(void)state;
	pull = zmq_socket(zctx, ZMQ_PULL);
	push = zmq_socket(zctx, ZMQ_PUSH);
	assert_int_equal(zmq_bind(pull, "inproc://burst"), 0);
	assert_int_equal(zmq_connect(push, "inproc://burst"), 0);
	for (int i = 0; i < total; i++)
		assert_int_equal(zmq_send(push, "n", 1, 0), 1);
	assert_int_equal(pipe(b.fds), 0);
	ev = event_new(base, b.fds[0], EV_READ, burst_fd_cb, &b);
	event_add(ev, NULL);
	ze = zmq_ev_new(base, pull, 4, burst_read_cb, &b);
	for (int i = 0; i < 1000 && (b.got < total || b.got_at_fd < 0); i++)
		event_base_loop(base, EVLOOP_NONBLOCK);
	assert_int_equal(b.got, total);
	assert_in_range(b.got_at_fd, 2, total - 1);
	zmq_ev_free(ze);
	event_free(ev);
	event_base_free(base);
	close(b.fds[0]);
	close(b.fds[1]);
	zmq_close(push);
	zmq_close(pull);
	zmq_ctx_term(zctx);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_config),
		cmocka_unit_test(test_crypto),
		cmocka_unit_test(test_hmac),
		cmocka_unit_test(test_json),
		cmocka_unit_test(test_zmq_ev_yields),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
