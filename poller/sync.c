/*
 * sync.c: one device's v2 /sync request. The easy handle is made once per
 * device and reused (keep-alive comes from the multi handle's connection
 * cache); each request only changes the URL and the timeout. The body is
 * collected up to max_body; curl_ev calls done_cb when it ends, which hands the
 * verdict to the caller's sync_done_fn.
 *
 * Once the response has begun, a stall check (stall_cb, every
 * low_speed_secs) abandons it when fewer than low_speed_limit bytes a
 * second arrived over the last period: a body that stops half way is
 * retried with backoff instead of holding the device until the request
 * timeout (30 minutes for an initial sync). curl's own LOW_SPEED options
 * cannot do this: they count from the start of the request, and the wait
 * for a long poll's answer or for Synapse to build an initial sync is
 * legitimately silent for much longer.
 */
#define _GNU_SOURCE /* mremap */
#include <sys/mman.h>
#include <sys/time.h>

#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "curl_ev.h"
#include "log.h"
#include "poller.h"
#include "util.h"

#define BODY_MAP_MIN ((size_t)1 << 20)
#define SLICE_MS 20 /* the most write_cb takes of one round of the loop */

/*
 * Grows d's body buffer to cap bytes. From BODY_MAP_MIN up the buffer is a
 * mapping of its own, grown by mremap: the kernel moves pages instead of
 * the loop copying tens of megabytes at each doubling (issue #13; an
 * allocator's realloc may copy, ASan's always does).
 */
static void
body_grow(struct device *d, size_t cap)
{
	void *b;

	if (cap < BODY_MAP_MIN) {
		d->body = xrealloc(d->body, cap);
	} else if (d->is_body_mapped) {
		b = mremap(d->body, d->body_cap, cap, MREMAP_MAYMOVE);
		if (b == MAP_FAILED)
			fatal("mremap %zu bytes", cap);
		d->body = b;
	} else {
		b = mmap(NULL, cap, PROT_READ | PROT_WRITE,
		         MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
		if (b == MAP_FAILED)
			fatal("mmap %zu bytes", cap);
		memcpy(b, d->body, d->body_len);
		free(d->body);
		d->body = b;
		d->is_body_mapped = true;
	}
	d->body_cap = cap;
}

/* Frees d's body buffer, however it was made. */
void
sync_body_free(struct device *d)
{
	if (d->is_body_mapped)
		munmap(d->body, d->body_cap);
	else
		free(d->body);
	d->body = NULL;
	d->body_len = d->body_cap = 0;
	d->is_body_mapped = false;
}

/*
 * Whether write_cb has taken SLICE_MS of this round of the loop. curl
 * reads a socket for as long as data is waiting, so a fast sender keeps
 * one curl_multi_socket_action call, and the parse in write_cb, going for
 * seconds; the loop's cached time tells one round from the next
 * (policy_slice_over).
 */
static bool
is_slice_over(struct poller *p)
{
	struct timeval round;

	if (event_base_gettimeofday_cached(p->base, &round) == -1)
		return false;
	return policy_slice_over(&p->slice, &round, now_us(),
	                         SLICE_MS * 1000LL);
}

/* The next round: take the data curl held while d was paused. */
static void
resume_cb(evutil_socket_t fd, short what, void *arg)
{
	struct device *d = arg;

	(void)fd;
	(void)what;
	if (d->has_inflight_easy)
		curl_easy_pause(d->easy, CURLPAUSE_CONT);
}

static size_t
write_cb(char *ptr, size_t size, size_t nmemb, void *arg)
{
	struct device *d = arg;
	size_t n = size * nmemb, need = d->body_len + n + 1;
	size_t max = (size_t)d->p->cfg.max_body;

	if (d->body_len + n > max)
		return 0; /* CURLE_WRITE_ERROR: retried with backoff */
	if (is_slice_over(d->p)) {
		/* curl keeps this chunk and hands it over again on resume. */
		static const struct timeval next_round = {0, 0};

		evtimer_add(d->resume_ev, &next_round);
		return CURL_WRITEFUNC_PAUSE;
	}
	if (need > d->body_cap) {
		size_t cap = d->body_cap ? d->body_cap : 2048;

		while (cap < need)
			cap *= 2;
		if (cap > max + 1)
			cap = max + 1;
		body_grow(d, cap);
	}
	d->rx_bytes += n;
	memcpy(d->body + d->body_len, ptr, n);
	d->body_len += n;
	d->body[d->body_len] = '\0';
	policy_scan_feed(&d->scan, ptr, n);
	return n;
}

static void
stall_arm(struct device *d)
{
	long long secs = d->p->cfg.low_speed_secs;
	struct timeval tv = {secs, 0};

	d->is_receiving = true;
	d->rx_mark = d->rx_bytes;
	if (d->p->cfg.low_speed_limit > 0)
		evtimer_add(d->stall_ev, &tv);
}

/* Too little arrived over the last period: give up on this response. */
static void
stall_cb(evutil_socket_t fd, short what, void *arg)
{
	struct device *d = arg;
	struct poller *p = d->p;
	struct verdict_info vi;

	(void)fd;
	(void)what;
	if (!d->has_inflight_easy)
		return;
	if (d->rx_bytes - d->rx_mark >=
	    (size_t)(p->cfg.low_speed_limit * p->cfg.low_speed_secs)) {
		stall_arm(d);
		return;
	}
	sync_abort(d);
	memset(&vi, 0, sizeof(vi));
	vi.verdict = V_RETRY;
	vi.retry_ms = -1;
	snprintf(vi.error, sizeof(vi.error),
	         "network: stalled: under %lld "
	         "bytes/s for %llds",
	         p->cfg.low_speed_limit, p->cfg.low_speed_secs);
	log_debug("device %s/%s: %zu bytes so far, %s", d->user_id,
	          d->device_id, d->body_len, vi.error);
	d->sync_done(d, &vi);
}

/*
 * Counts header bytes as progress (the stall check starts with the first
 * byte of the response) and keeps the Retry-After header for a 429.
 */
static size_t
header_cb(char *buf, size_t size, size_t nitems, void *arg)
{
	struct device *d = arg;
	size_t n = size * nitems;
	static const char name[] = "retry-after:";
	long long v;
	char tmp[32];
	size_t vlen;

	d->rx_bytes += n;
	if (!d->is_receiving) {
		/* the upstream's share of a cold login ends about here */
		log_debug("device %s/%s: first bytes after %lld ms", d->user_id,
		          d->device_id, now_ms() - d->req_start_ms);
		stall_arm(d);
	}
	if (n > sizeof(name) - 1 &&
	    strncasecmp(buf, name, sizeof(name) - 1) == 0) {
		const char *s = buf + sizeof(name) - 1;

		while (*s == ' ' && s < buf + n)
			s++;
		vlen = (size_t)(buf + n - s);
		while (vlen > 0 && (s[vlen - 1] == '\r' ||
		                    s[vlen - 1] == '\n' || s[vlen - 1] == ' '))
			vlen--;
		if (vlen > 0 && vlen < sizeof(tmp)) {
			memcpy(tmp, s, vlen);
			tmp[vlen] = '\0';
			if (parse_i64(tmp, &v) == 0 && v >= 0)
				d->retry_after_s = (long)v;
		}
	}
	return n;
}

static void
done_cb(CURL *easy, CURLcode res, void *arg)
{
	struct device *d = arg;
	struct verdict_info vi;
	long status = 0;

	d->has_inflight_easy = false;
	evtimer_del(d->stall_ev);
	evtimer_del(d->resume_ev);
	curl_easy_getinfo(easy, CURLINFO_RESPONSE_CODE, &status);
	policy_classify_scan(res, status, d->body, d->body_len,
	                     d->retry_after_s, &d->scan, &vi);
	log_debug("device %s/%s: http %ld, %zu bytes, curl %d, %lld ms",
	          d->user_id, d->device_id, status, d->body_len, (int)res,
	          now_ms() - d->req_start_ms);
	prom_response(d->p, status, now_ms() - d->req_start_ms);
	d->sync_done(d, &vi); /* a drop only frees d later (device.c) */
	free(vi.next_batch);
}

static void
easy_setup(struct device *d)
{
	CURL *e;

	if ((e = d->easy = curl_easy_init()) == NULL)
		fatalx("curl_easy_init failed");
	curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, write_cb);
	curl_easy_setopt(e, CURLOPT_WRITEDATA, d);
	curl_easy_setopt(e, CURLOPT_HEADERFUNCTION, header_cb);
	curl_easy_setopt(e, CURLOPT_HEADERDATA, d);
	curl_easy_setopt(e, CURLOPT_ACCEPT_ENCODING, "");
	curl_easy_setopt(e, CURLOPT_USERAGENT, POLLER_USER_AGENT);
	curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(e, CURLOPT_TCP_KEEPALIVE, 1L);
	curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS, 10000L);
	/* Small receive buffer: thousands of idle long-polls each own one. */
	curl_easy_setopt(e, CURLOPT_BUFFERSIZE, 8192L);
	if (d->stall_ev == NULL &&
	    (d->stall_ev = evtimer_new(d->p->base, stall_cb, d)) == NULL)
		fatalx("evtimer_new failed");
	if (d->resume_ev == NULL &&
	    (d->resume_ev = evtimer_new(d->p->base, resume_cb, d)) == NULL)
		fatalx("evtimer_new failed");
}

/*
 * What d's next request asks (docs/DESIGN.md, "Sibling devices"): a
 * refill is a full initial sync (no since) beside the since it has; a
 * sibling-first initial sync asks for no rooms, any other first sync for
 * first_timeline events per room (policy_first_filter); a catch-up is answered
 * at once (zero timeout) with whatever upstream has. Records in d what the body
 * is (req_first, req_catchup) for its PROTO_SYNC_RAW.
 */
static const char *
plan(struct device *d, const char **filter, long *poll_ms)
{
	const char *since = d->since;

	*filter = POLLER_FILTER;
	*poll_ms = (long)d->p->cfg.poll_timeout_ms;
	d->req_first = "";
	d->req_catchup = 0;
	if (d->since[0] != '\0' && d->is_refill_due) {
		since = "";
		*poll_ms = 0;
		d->req_first = "refill";
	} else if (d->since[0] == '\0' && d->is_sibling_first) {
		*filter = POLLER_SIBLING_FILTER;
		d->req_first = "sibling";
	} else if (d->since[0] == '\0') {
		*filter = d->p->first_filter; /* the light first sync */
	}
	if (d->since[0] != '\0' && d->catchup > 0) {
		d->req_catchup = d->catchup;
		d->catchup = 0;
		*poll_ms = 0;
	}
	return since;
}

/*
 * Starts d's next /sync with the since it holds. The easy handle and the
 * Authorization header are made once per device (the header again after a
 * new token); a request only changes the URL and the timeout, which is
 * longer for an initial sync. done is called once the request ends.
 */
int
sync_start(struct device *d, sync_done_fn done)
{
	struct poller *p = d->p;
	const char *filter, *since;
	bool is_initial;
	long long timeout_ms;
	long poll_ms;
	char *url, *auth;

	if (d->easy == NULL)
		easy_setup(d);
	if (d->headers == NULL) {
		auth = xasprintf("Authorization: Bearer %s", d->token);
		d->headers = curl_slist_append(NULL, auth);
		memset(auth, 0, strlen(auth));
		free(auth);
		if (d->headers == NULL)
			fatalx("curl_slist_append failed");
		curl_easy_setopt(d->easy, CURLOPT_HTTPHEADER, d->headers);
	}
	since = plan(d, &filter, &poll_ms);
	is_initial = since[0] == '\0';
	url = policy_sync_url(p->cfg.server, since, poll_ms, filter);
	curl_easy_setopt(d->easy, CURLOPT_URL, url);
	free(url);
	timeout_ms = policy_request_timeout_ms(
	    is_initial, p->cfg.poll_timeout_ms, p->cfg.initial_timeout_s);
	curl_easy_setopt(d->easy, CURLOPT_TIMEOUT_MS, (long)timeout_ms);
	d->body_len = 0;
	policy_scan_free(&d->scan);
	policy_scan_init(&d->scan);
	d->retry_after_s = -1;
	d->rx_bytes = d->rx_mark = 0;
	d->is_receiving = false;
	d->req_start_ms = now_ms();
	d->sync_done = done;
	if (curl_ev_add(p->curl, d->easy, done_cb, d) == -1)
		return -1;
	d->has_inflight_easy = true;
	return 0;
}

void
sync_abort(struct device *d)
{
	if (d->has_inflight_easy) {
		curl_ev_remove(d->p->curl, d->easy);
		d->has_inflight_easy = false;
	}
	if (d->stall_ev != NULL)
		evtimer_del(d->stall_ev);
	if (d->resume_ev != NULL)
		evtimer_del(d->resume_ev);
	policy_scan_free(&d->scan);
}

void
sync_easy_free(struct device *d)
{
	sync_abort(d);
	if (d->easy != NULL)
		curl_easy_cleanup(d->easy);
	d->easy = NULL;
	curl_slist_free_all(d->headers);
	d->headers = NULL;
	if (d->stall_ev != NULL)
		event_free(d->stall_ev);
	d->stall_ev = NULL;
	if (d->resume_ev != NULL)
		event_free(d->resume_ev);
	d->resume_ev = NULL;
}
