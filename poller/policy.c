/*
 * policy.c: the poller's pure decisions, kept apart from curl, Postgres
 * and ZeroMQ so unit tests can drive them: backoff delays, the v2 request
 * URL and request timeout, classifying a finished request, validating a
 * /sync body (its next_batch, whether it carries anything), spotting an
 * upstream that answers at once without moving, matching acks, and the
 * fair share of devices per poller.
 */
#include <sys/time.h>

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
 * set_presence=offline; since only when not empty. Every request carries
 * a timeout, the initial one too: Synapse answers an initial sync as soon
 * as it is built whatever the timeout, but with none it answers an empty
 * account's first sync at once, again and again.
 */
char *
policy_sync_url(const char *server, const char *since, long timeout_ms,
                const char *filter)
{
	char *f = escape(filter), *s = NULL, *url;
	size_t slen = strlen(server);

	while (slen > 0 && server[slen - 1] == '/')
		slen--;
	if (since != NULL && since[0] != '\0')
		s = escape(since);
	url = xasprintf("%.*s/_matrix/client/v3/sync?timeout=%ld"
	                "&set_presence=offline&filter=%s%s%s",
	                (int)slen, server, timeout_ms > 0 ? timeout_ms : 0, f,
	                s ? "&since=" : "", s ? s : "");
	free(f);
	free(s);
	return url;
}

/*
 * How long curl may take over one request. An initial sync gets the long
 * initial timeout (Synapse may build a big one for minutes), but never
 * less than an incremental one: upstream may hold it for the poll timeout
 * too. An incremental sync gets the poll timeout plus half of it (at
 * least 10 s) for the answer to arrive.
 */
long long
policy_request_timeout_ms(bool is_initial, long long poll_ms,
                          long long initial_s)
{
	long long ms = poll_ms + (poll_ms / 2 > 10000 ? poll_ms / 2 : 10000);

	if (is_initial && initial_s * 1000 > ms)
		ms = initial_s * 1000;
	return ms;
}

/*
 * errcode, retry_after_ms and soft_logout of a small Matrix error body,
 * if any.
 */
static void
error_body(const char *body, size_t len, char *errcode, size_t errlen,
           long long *retry_ms, bool *is_soft)
{
	struct json_object *o;
	const char *ec;
	int64_t v;
	bool b;

	errcode[0] = '\0';
	*is_soft = false;
	if (body == NULL || len == 0 || len > 64 * 1024)
		return;
	if ((o = json_parse_bounded(body, len, NULL)) == NULL)
		return;
	if ((ec = json_get_str(o, "errcode")) != NULL)
		snprintf(errcode, errlen, "%s", ec);
	if (retry_ms != NULL && json_get_int(o, "retry_after_ms", &v) && v >= 0)
		*retry_ms = v;
	*is_soft = json_get_bool(o, "soft_logout", &b) && b;
	json_object_put(o);
}

/*
 * A non-200 answer: 401, or 403 M_UNKNOWN_TOKEN, is an expired token
 * (contract 5), its error ending in POLL_ERROR_SOFT_LOGOUT when upstream
 * said "soft_logout": true (Synapse's expired token, as opposed to one
 * logged out or revoked), which the api tells the client too; 429 waits
 * retry_after_ms from the body, else the Retry-After header, capped at
 * an hour; anything else is retried with backoff.
 */
static void
classify_status(long status, const char *body, size_t len, long retry_after_s,
                struct verdict_info *out)
{
	char ec[64];
	long long retry = -1;
	bool is_soft, is_expired;

	error_body(body, len, ec, sizeof(ec), &retry, &is_soft);
	is_expired = status == 401 ||
	             (status == 403 && strcmp(ec, "M_UNKNOWN_TOKEN") == 0);
	snprintf(out->error, sizeof(out->error), "http %ld%s%s%s", status,
	         ec[0] ? " " : "", ec,
	         is_expired && is_soft ? " " POLL_ERROR_SOFT_LOGOUT : "");
	if (is_expired) {
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

/*
 * The verdict on a finished request, from curl's result, the HTTP status
 * and the body: the only place that decides what an upstream answer means
 * to the device's state machine.
 */
void
policy_classify(CURLcode res, long status, const char *body, size_t len,
                long retry_after_s, struct verdict_info *out)
{
	struct body_scan s;

	policy_scan_init(&s);
	if (res == CURLE_OK && status == 200 && body != NULL)
		policy_scan_feed(&s, body, len);
	policy_classify_scan(res, status, body, len, retry_after_s, &s, out);
}

/*
 * The same, with the body already fed to scan as it arrived (sync.c);
 * scan is freed.
 */
void
policy_classify_scan(CURLcode res, long status, const char *body, size_t len,
                     long retry_after_s, struct body_scan *scan,
                     struct verdict_info *out)
{
	const char *why = NULL;

	memset(out, 0, sizeof(*out));
	out->retry_ms = -1;
	if (res != CURLE_OK) {
		policy_scan_free(scan);
		out->verdict = V_RETRY;
		snprintf(out->error, sizeof(out->error), "network: %s",
		         curl_easy_strerror(res));
		return;
	}
	if (status != 200) {
		policy_scan_free(scan);
		classify_status(status, body, len, retry_after_s, out);
		return;
	}
	switch (policy_scan_end(scan, &out->next_batch, &out->is_empty)) {
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

/* Keys every /sync answer carries, news or not. */
static bool
is_always_there(const char *key)
{
	static const char *const keys[] = {
	    "next_batch", "device_one_time_keys_count",
	    "device_unused_fallback_key_types",
	    "org.matrix.msc2732.device_unused_fallback_key_types"};

	for (size_t i = 0; i < sizeof(keys) / sizeof(keys[0]); i++)
		if (strcmp(key, keys[i]) == 0)
			return true;
	return false;
}

/*
 * Whether the body carries nothing but the keys every answer has: each
 * other top-level value is null, [], {} or objects of those only.
 */
static bool
is_empty_scan(const struct jsonv *v)
{
	for (size_t i = 0; i < v->nmem; i++)
		if (!is_always_there(v->mem[i].key) && v->mem[i].has_news)
			return false;
	return true;
}

/*
 * The body is validated as it arrives (issue #13): write_cb feeds each
 * chunk to a validator that builds no tree (common/jsonv.c), so a 50 MB
 * initial sync costs the loop many short steps and a few hundred bytes,
 * where json-c's tokener built a tree of hundreds of megabytes (and then
 * had to free it off the loop). What it accepts json_parse_bounded
 * accepts too (tests/fuzz/fuzz_poller_scan.c), so the accumulator never
 * gets a body it cannot parse.
 */
void
policy_scan_init(struct body_scan *s)
{
	memset(s, 0, sizeof(*s));
	jsonv_init(&s->v);
}

/* Feeds the next len bytes of the body; a refused body ignores the rest. */
void
policy_scan_feed(struct body_scan *s, const char *buf, size_t len)
{
	if (s->v.err != NULL || len == 0)
		return;
	s->len += len;
	if (s->len > INT32_MAX) {
		/* json-c, which the accumulator parses with, takes an int */
		s->v.err = "too large";
		return;
	}
	jsonv_feed(&s->v, buf, len);
}

void
policy_scan_free(struct body_scan *s)
{
	jsonv_free(&s->v);
	memset(s, 0, sizeof(*s));
}

/*
 * Once the body has ended: 0 and a new *next_batch when it was one JSON
 * object with a non-empty string next_batch; -1 when it is not JSON (or
 * not an object); -2 when next_batch is missing, empty or not a string.
 * A body the accumulator would refuse is never forwarded. *is_empty (if
 * not NULL) tells whether the body carries anything besides next_batch
 * and the key counts. Frees what s holds.
 */
int
policy_scan_end(struct body_scan *s, char **next_batch, bool *is_empty)
{
	const struct jsonv_member *nb;
	int rc = -1;

	*next_batch = NULL;
	if (is_empty != NULL)
		*is_empty = false;
	if (s->v.err == NULL && jsonv_end(&s->v) == -1)
		goto out;
	if (s->v.err != NULL)
		goto out;
	rc = -2;
	nb = jsonv_get(&s->v, "next_batch");
	if (nb != NULL && nb->str != NULL && nb->str_len > 0 &&
	    strlen(nb->str) == nb->str_len) {
		*next_batch = xstrdup(nb->str);
		rc = 0;
	}
	if (is_empty != NULL)
		*is_empty = is_empty_scan(&s->v);
out:
	policy_scan_free(s);
	return rc;
}

/* A whole body at once: the same scan, one chunk. */
static int
scan_body(const char *buf, size_t len, char **next_batch, bool *is_empty)
{
	struct body_scan s;

	*next_batch = NULL;
	if (buf == NULL)
		return -1;
	policy_scan_init(&s);
	policy_scan_feed(&s, buf, len);
	return policy_scan_end(&s, next_batch, is_empty);
}

int
policy_scan_body(const char *buf, size_t len, char **next_batch)
{
	return scan_body(buf, len, next_batch, NULL);
}

/*
 * An answer that did not move: next_batch is the since we sent, the body
 * has nothing in it, and it came back well before the timeout we asked
 * for (a long poll that ran its course also comes back unchanged, after
 * waiting, and needs no delay). Such an upstream does not wait, so polling
 * it again at once is a tight loop.
 */
bool
policy_is_unchanged(const char *since, const struct verdict_info *vi,
                    long long elapsed_ms, long long timeout_ms)
{
	if (vi->verdict != V_OK || vi->next_batch == NULL || since == NULL ||
	    !vi->is_empty || strcmp(since, vi->next_batch) != 0)
		return false;
	return elapsed_ms < (timeout_ms / 2 > 100 ? timeout_ms / 2 : 100);
}

/*
 * The delay before polling an upstream that answered unchanged for the
 * attempt-th time in a row: the usual backoff, but never above the poll
 * timeout (or the first backoff, if the timeout is shorter), so such a
 * device costs at most what an idle long poll costs and news still
 * arrives within one timeout.
 */
uint32_t
policy_unchanged_ms(int attempt, uint32_t base_ms, uint32_t cap_ms,
                    long long timeout_ms, uint32_t rnd)
{
	uint64_t cap =
	    timeout_ms > (long long)base_ms ? (uint64_t)timeout_ms : base_ms;

	if (cap < cap_ms)
		cap_ms = (uint32_t)cap;
	return policy_backoff_ms(attempt, base_ms, cap_ms, rnd);
}

/*
 * What an ack means for a device waiting on (since_in -> next_batch). An
 * ok for next_batch commits it. A nack whose committed since is already
 * next_batch (our resend raced the first copy) commits it too. A mismatch
 * whose committed since is still since_in cannot be about this message
 * (the compare-and-set would have passed), so it answers an older
 * duplicate. Anything else rejects: reload the since and poll again.
 * A body that does not move the since (a catch-up upstream had nothing
 * new for, a refill) is committed only by an ok: a nack naming the same
 * since says it was not stored.
 */
enum ack_action
policy_ack(const char *since_in, const char *next_batch, bool ok,
           const char *ack_since, const char *error)
{
	if (ack_since == NULL)
		ack_since = "";
	if (strcmp(ack_since, next_batch) == 0 &&
	    (ok || strcmp(next_batch, since_in) != 0))
		return ACK_ADVANCE;
	if (ok)
		return ACK_STALE;
	if (strcmp(ack_since, since_in) == 0 && error != NULL &&
	    strstr(error, "mismatch") != NULL)
		return ACK_STALE;
	return ACK_RELOAD;
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

/*
 * Whether a claim round that took n devices, holding held before it, may
 * leave more to claim at once: only when the batch capped it below the
 * share. A round that reached the share has nothing left (the claim
 * computes the share itself), and running one more blocking claim on the
 * loop delayed the first upstream request of the device just claimed
 * (issue #13, a new device's path); a change of the share is the
 * heartbeat's to find.
 */
bool
policy_claim_more(long long n, long long held, long long share, long long batch)
{
	return n >= batch && held + n < share;
}

/*
 * The filter of a device's first sync when no sibling covers it (the
 * light first sync, docs/DESIGN.md "The first window first"): the rooms
 * with their whole state but only timeline_limit events each; the poller
 * then continues from its next_batch, and older history is paged from
 * upstream through prev_batch. Members are not lazy-loaded: the member
 * state of every room is what heroes, required_state and the member
 * lists are built from, and nothing would fill it in behind.
 */
char *
policy_first_filter(long long timeline_limit)
{
	struct json_object *f = json_object_new_object();
	struct json_object *room = json_object_new_object();
	struct json_object *tl = json_object_new_object();
	char *out;

	json_object_object_add(tl, "limit",
	                       json_object_new_int64(timeline_limit));
	json_object_object_add(room, "timeline", tl);
	json_object_object_add(f, "room", room);
	out =
	    xstrdup(json_object_to_json_string_ext(f, JSON_C_TO_STRING_PLAIN));
	json_object_put(f);
	return out;
}

/*
 * Whether write_cb has had its share of this loop round (sync.c). The
 * loop's cached time only names the round: libevent makes it from a
 * coarse monotonic clock plus an offset to the wall clock it corrects
 * every few seconds, so it may read a clock tick or more ahead of
 * gettimeofday, and compared with it a round looked over before it began
 * (the poller then paused and resumed a body for milliseconds, issue
 * #13). The time is measured on CLOCK_MONOTONIC (now_us) from the
 * round's first call instead. Rounds that begin within one tick of the
 * coarse clock share a name, so a slice may end up to a tick early; the
 * round after a pause (20 ms on, more than a tick) has a new one.
 */
bool
policy_slice_over(struct policy_slice *s, const struct timeval *round,
                  long long now_us, long long budget_us)
{
	if (s->round.tv_sec != round->tv_sec ||
	    s->round.tv_usec != round->tv_usec) {
		s->round = *round;
		s->start_us = now_us;
		return false;
	}
	return now_us - s->start_us >= budget_us;
}
