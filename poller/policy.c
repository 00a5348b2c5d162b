/*
 * policy.c: the poller's pure decisions, kept apart from curl, Postgres
 * and ZeroMQ so unit tests can drive them: backoff delays, the v2 request
 * URL, classifying a finished request, validating a /sync body (and
 * finding its next_batch without building a tree), matching acks, and the
 * fair share of devices per poller.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "json_util.h"
#include "poller.h"
#include "util.h"

/*
 * Exponential backoff with full jitter: a delay drawn from [floor, ceil)
 * where ceil = base * 2^(attempt-1), capped. The floor (a tenth of the
 * ceiling, at least 50 ms) keeps a failing device from spinning when the
 * draw is close to zero. rnd is a random 32-bit value (injected for tests).
 */
uint32_t
policy_backoff_ms(int attempt, uint32_t base_ms, uint32_t cap_ms, uint32_t rnd)
{
	uint64_t ceil = base_ms, floor;

	if (attempt < 1)
		attempt = 1;
	for (int i = 1; i < attempt && ceil < cap_ms; i++)
		ceil *= 2;
	if (ceil > cap_ms)
		ceil = cap_ms;
	if (ceil == 0)
		return 0;
	floor = ceil / 10;
	if (floor < 50)
		floor = ceil < 50 ? ceil : 50;
	if (ceil <= floor)
		return (uint32_t)ceil;
	return (uint32_t)(floor + (uint64_t)rnd % (ceil - floor));
}

static char *
escape(const char *s)
{
	char *e = curl_easy_escape(NULL, s, (int)strlen(s));
	char *out;

	if (e == NULL)
		fatalx("curl_easy_escape: out of memory");
	out = xstrdup(e);
	curl_free(e);
	return out;
}

/*
 * GET {server}/_matrix/client/v3/sync with the inline filter and
 * set_presence=offline; since only when not empty; timeout only for
 * incremental syncs (timeout_ms < 0 leaves it out).
 */
char *
policy_sync_url(const char *server, const char *since, long timeout_ms,
    const char *filter)
{
	char *f = escape(filter), *s = NULL, *url, tbuf[40] = "";
	size_t slen = strlen(server);

	while (slen > 0 && server[slen - 1] == '/')
		slen--;
	if (since != NULL && since[0] != '\0')
		s = escape(since);
	if (timeout_ms >= 0)
		snprintf(tbuf, sizeof(tbuf), "timeout=%ld&", timeout_ms);
	url = xasprintf("%.*s/_matrix/client/v3/sync?%sset_presence=offline"
	    "&filter=%s%s%s", (int)slen, server, tbuf, f, s ? "&since=" : "",
	    s ? s : "");
	free(f);
	free(s);
	return url;
}

/* errcode and retry_after_ms of a small Matrix error body, if any. */
static void
error_body(const char *body, size_t len, char *errcode, size_t errlen,
    long long *retry_ms)
{
	struct json_object *o;
	const char *ec;
	int64_t v;

	errcode[0] = '\0';
	if (body == NULL || len == 0 || len > 64 * 1024)
		return;
	if ((o = json_parse_bounded(body, len, NULL)) == NULL)
		return;
	if ((ec = json_get_str(o, "errcode")) != NULL)
		snprintf(errcode, errlen, "%s", ec);
	if (retry_ms != NULL && json_get_int(o, "retry_after_ms", &v) &&
	    v >= 0)
		*retry_ms = v;
	json_object_put(o);
}

static void
classify_status(long status, const char *body, size_t len,
    long retry_after_s, struct verdict_info *out)
{
	char ec[64];
	long long retry = -1;

	error_body(body, len, ec, sizeof(ec), &retry);
	snprintf(out->error, sizeof(out->error), "http %ld%s%s", status,
	    ec[0] ? " " : "", ec);
	if (status == 401 || (status == 403 &&
	    strcmp(ec, "M_UNKNOWN_TOKEN") == 0)) {
		out->verdict = V_EXPIRED;
		return;
	}
	if (status == 429) {
		out->verdict = V_RATELIMIT;
		if (retry < 0 && retry_after_s >= 0)
			retry = (long long)retry_after_s * 1000;
		if (retry > 3600 * 1000LL)
			retry = 3600 * 1000LL;
		out->retry_ms = retry; /* < 0: use exponential backoff */
		return;
	}
	out->verdict = V_RETRY;
}

void
policy_classify(CURLcode res, long status, const char *body, size_t len,
    long retry_after_s, struct verdict_info *out)
{
	const char *why = NULL;

	memset(out, 0, sizeof(*out));
	out->retry_ms = -1;
	if (res != CURLE_OK) {
		out->verdict = V_RETRY;
		snprintf(out->error, sizeof(out->error), "network: %s",
		    curl_easy_strerror(res));
		return;
	}
	if (status != 200) {
		classify_status(status, body, len, retry_after_s, out);
		return;
	}
	switch (policy_scan_body(body, len, &out->next_batch)) {
	case 0:
		out->verdict = V_OK;
		return;
	case -1:
		why = "body is not JSON";
		break;
	default:
		why = "body has no next_batch";
		break;
	}
	out->verdict = V_RETRY;
	snprintf(out->error, sizeof(out->error), "http 200: %s", why);
}

/*
 * A validating single-pass JSON scanner: checks the syntax (RFC 8259,
 * UTF-8 in strings, depth at most JSON_MAX_DEPTH like json_parse_bounded)
 * and remembers where the top-level "next_batch" string is. It builds no
 * tree, so a 100 MB initial sync costs no extra memory here; the
 * accumulator parses it once for real.
 */
struct scan {
	const unsigned char *p, *end;
	int depth;
	const unsigned char *nb;	/* top-level next_batch token */
	size_t nb_len;
	bool is_nb_str;
};

static void
skip_ws(struct scan *s)
{
	while (s->p < s->end && (*s->p == ' ' || *s->p == '\t' ||
	    *s->p == '\n' || *s->p == '\r'))
		s->p++;
}

static int
utf8_char(struct scan *s)
{
	unsigned c = *s->p, n, min, cp;

	if (c < 0x80) {
		s->p++;
		return 0;
	}
	if (c >= 0xC2 && c <= 0xDF)
		n = 1, min = 0x80, cp = c & 0x1F;
	else if (c >= 0xE0 && c <= 0xEF)
		n = 2, min = 0x800, cp = c & 0x0F;
	else if (c >= 0xF0 && c <= 0xF4)
		n = 3, min = 0x10000, cp = c & 0x07;
	else
		return -1;
	if ((size_t)(s->end - s->p) <= n)
		return -1;
	for (unsigned i = 1; i <= n; i++) {
		if ((s->p[i] & 0xC0) != 0x80)
			return -1;
		cp = (cp << 6) | (s->p[i] & 0x3F);
	}
	if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF))
		return -1;
	s->p += n + 1;
	return 0;
}

static int
hex4(const unsigned char *p)
{
	for (int i = 0; i < 4; i++)
		if (!((p[i] >= '0' && p[i] <= '9') ||
		    ((p[i] | 0x20) >= 'a' && (p[i] | 0x20) <= 'f')))
			return -1;
	return 0;
}

static int
scan_string(struct scan *s)
{
	s->p++; /* opening quote */
	while (s->p < s->end) {
		unsigned char c = *s->p;

		if (c == '"') {
			s->p++;
			return 0;
		}
		if (c < 0x20)
			return -1;
		if (c == '\\') {
			if (s->end - s->p < 2)
				return -1;
			c = s->p[1];
			if (c == 'u') {
				if (s->end - s->p < 6 || hex4(s->p + 2) == -1)
					return -1;
				s->p += 6;
			} else if (strchr("\"\\/bfnrt", c) != NULL && c) {
				s->p += 2;
			} else
				return -1;
			continue;
		}
		if (utf8_char(s) == -1)
			return -1;
	}
	return -1;
}

static int
scan_digits(struct scan *s)
{
	const unsigned char *start = s->p;

	while (s->p < s->end && *s->p >= '0' && *s->p <= '9')
		s->p++;
	return s->p > start ? 0 : -1;
}

static int
scan_number(struct scan *s)
{
	if (*s->p == '-')
		s->p++;
	if (s->p < s->end && *s->p == '0')
		s->p++;
	else if (scan_digits(s) == -1)
		return -1;
	if (s->p < s->end && *s->p == '.') {
		s->p++;
		if (scan_digits(s) == -1)
			return -1;
	}
	if (s->p < s->end && (*s->p == 'e' || *s->p == 'E')) {
		s->p++;
		if (s->p < s->end && (*s->p == '+' || *s->p == '-'))
			s->p++;
		if (scan_digits(s) == -1)
			return -1;
	}
	return 0;
}

static int
scan_literal(struct scan *s, const char *lit)
{
	size_t n = strlen(lit);

	if ((size_t)(s->end - s->p) < n || memcmp(s->p, lit, n) != 0)
		return -1;
	s->p += n;
	return 0;
}

static int scan_value(struct scan *s);

static int
scan_object(struct scan *s)
{
	bool is_top = s->depth == 1;

	s->p++;
	skip_ws(s);
	if (s->p < s->end && *s->p == '}') {
		s->p++;
		return 0;
	}
	for (;;) {
		const unsigned char *key, *key_end, *val;

		skip_ws(s);
		if (s->p >= s->end || *s->p != '"')
			return -1;
		key = s->p;
		if (scan_string(s) == -1)
			return -1;
		key_end = s->p;
		skip_ws(s);
		if (s->p >= s->end || *s->p++ != ':')
			return -1;
		skip_ws(s);
		val = s->p;
		if (scan_value(s) == -1)
			return -1;
		if (is_top && key_end - key == 12 &&
		    memcmp(key, "\"next_batch\"", 12) == 0) {
			s->nb = val;
			s->nb_len = (size_t)(s->p - val);
			s->is_nb_str = *val == '"';
		}
		skip_ws(s);
		if (s->p >= s->end)
			return -1;
		if (*s->p == '}') {
			s->p++;
			return 0;
		}
		if (*s->p++ != ',')
			return -1;
	}
}

static int
scan_array(struct scan *s)
{
	s->p++;
	skip_ws(s);
	if (s->p < s->end && *s->p == ']') {
		s->p++;
		return 0;
	}
	for (;;) {
		skip_ws(s);
		if (scan_value(s) == -1)
			return -1;
		skip_ws(s);
		if (s->p >= s->end)
			return -1;
		if (*s->p == ']') {
			s->p++;
			return 0;
		}
		if (*s->p++ != ',')
			return -1;
	}
}

static int
scan_value(struct scan *s)
{
	int rc;

	if (s->p >= s->end)
		return -1;
	switch (*s->p) {
	case '{':
	case '[':
		if (++s->depth > JSON_MAX_DEPTH)
			return -1;
		rc = *s->p == '{' ? scan_object(s) : scan_array(s);
		s->depth--;
		return rc;
	case '"':
		return scan_string(s);
	case 't':
		return scan_literal(s, "true");
	case 'f':
		return scan_literal(s, "false");
	case 'n':
		return scan_literal(s, "null");
	default:
		if (*s->p == '-' || (*s->p >= '0' && *s->p <= '9'))
			return scan_number(s);
		return -1;
	}
}

/*
 * Returns 0 and a new *next_batch when buf is one JSON object with a
 * non-empty string next_batch; -1 when it is not JSON (or not an object);
 * -2 when next_batch is missing, empty or not a string.
 */
int
policy_scan_body(const char *buf, size_t len, char **next_batch)
{
	struct scan s = {(const unsigned char *)buf,
	    (const unsigned char *)buf + len, 0, NULL, 0, false};
	struct json_object *o;
	const char *v;

	*next_batch = NULL;
	if (buf == NULL)
		return -1;
	skip_ws(&s);
	if (s.p >= s.end || *s.p != '{' || scan_value(&s) == -1)
		return -1;
	skip_ws(&s);
	if (s.p != s.end)
		return -1;
	if (s.nb == NULL || !s.is_nb_str || s.nb_len <= 2)
		return -2;
	if (memchr(s.nb, '\\', s.nb_len) == NULL) {
		*next_batch = xstrndup((const char *)s.nb + 1, s.nb_len - 2);
		return 0;
	}
	/* Escapes: let json-c decode just this one string. */
	if ((o = json_parse_bounded((const char *)s.nb, s.nb_len, NULL)) ==
	    NULL)
		return -1;
	v = json_object_get_string(o);
	if (v != NULL && v[0] != '\0' && strlen(v) ==
	    (size_t)json_object_get_string_len(o))
		*next_batch = xstrdup(v);
	json_object_put(o);
	return *next_batch != NULL ? 0 : -2;
}

/*
 * What an ack means for a device waiting on (since_in -> next_batch). An
 * ok for next_batch commits it. A nack whose committed since is already
 * next_batch (our resend raced the first copy) commits it too. A mismatch
 * whose committed since is still since_in cannot be about this message
 * (the compare-and-set would have passed), so it answers an older
 * duplicate. Anything else rejects: reload the since and poll again.
 */
enum ack_action
policy_ack(const char *since_in, const char *next_batch, bool ok,
    const char *ack_since, const char *error)
{
	if (ack_since == NULL)
		ack_since = "";
	if (strcmp(ack_since, next_batch) == 0)
		return ACK_ADVANCE;
	if (ok)
		return ACK_STALE;
	if (strcmp(ack_since, since_in) == 0 && error != NULL &&
	    strstr(error, "mismatch") != NULL)
		return ACK_STALE;
	return ACK_RELOAD;
}

/* A text[] literal {"a","b"} for unnest($1::text[]). */
char *
policy_pg_array(const char *const *items, size_t n)
{
	size_t cap = 3, len = 0;
	char *out;

	for (size_t i = 0; i < n; i++)
		cap += 2 * strlen(items[i]) + 3;
	out = xmalloc(cap);
	out[len++] = '{';
	for (size_t i = 0; i < n; i++) {
		if (i > 0)
			out[len++] = ',';
		out[len++] = '"';
		for (const char *c = items[i]; *c; c++) {
			if (*c == '"' || *c == '\\')
				out[len++] = '\\';
			out[len++] = *c;
		}
		out[len++] = '"';
	}
	out[len++] = '}';
	out[len] = '\0';
	return out;
}

/*
 * How many devices this poller should hold: an even split of the active
 * devices among the live pollers, rounded up, and never above max (0: no
 * limit).
 */
long long
policy_share(long long active, long long live, long long max)
{
	long long share;

	if (live < 1)
		live = 1;
	share = (active + live - 1) / live;
	if (max > 0 && share > max)
		share = max;
	return share;
}

const char *
poll_state_name(enum poll_state ps)
{
	switch (ps) {
	case PS_NONE:
		return "new";
	case PS_POLLING:
		return "polling";
	case PS_BACKOFF:
		return "backoff";
	case PS_EXPIRED:
		return "expired";
	case PS_IDLE:
		return "idle";
	}
	return "?";
}
