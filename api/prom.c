/*
 * prom.c: the api's metrics (README, "Metrics"), served at GET /metrics on
 * the api's own listener. Each answered request is counted once, by
 * endpoint and status, with its time from routing to the last byte
 * written (http.c calls prom_request from evhttp's completion, or with
 * status 0 when the client left first). Everything else is read at scrape
 * time from what the api keeps anyway (struct api_stats, the waiters,
 * the pass-through's counters), so the hot paths pay one clock read at
 * each end of a request and a few adds.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api.h"
#include "metrics.h"
#include "pg.h"
#include "util.h"

#define REQUESTS "syncv3_api_requests_total"
#define REQUESTS_HELP                                                          \
	"Requests answered, by endpoint and HTTP status (0: the client left "  \
	"before the answer)."
#define LATENCY "syncv3_api_request_seconds"
#define LATENCY_HELP                                                           \
	"Time from routing a request to the end of its answer (long polls "    \
	"included)."
/* Statuses cached per endpoint before lookups fall back to the registry. */
#define PROM_CODES 12

static const char *const ep_names[PROM_EP_COUNT] = {
    [PROM_EP_SYNC] = "sync",       [PROM_EP_SLIDING] = "sliding_sync",
    [PROM_EP_PROXY] = "proxy",     [PROM_EP_ADMIN] = "admin",
    [PROM_EP_CLIENT] = "client",   [PROM_EP_HEALTH] = "health",
    [PROM_EP_METRICS] = "metrics", [PROM_EP_OTHER] = "other",
};

/* Long polls hold requests up to SYNCV3_API_MAX_TIMEOUT_MS (60 s). */
static const double latency_le[] = {0.001, 0.0025, 0.005, 0.01, 0.025, 0.05,
                                    0.1,   0.25,   0.5,   1,    2.5,   5,
                                    10,    30,     60,    120};
/* A notice to the woken long poll's answer: milliseconds, we hope. */
static const double wake_le[] = {0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025,
                                 0.05,   0.1,   0.25,   0.5,   1,    5};
#define SS_HOP "syncv3_api_ss_hop_seconds"
#define SS_HOP_HELP                                                            \
	"A woken sliding sync round, step by step: the time since the "        \
	"previous step (the first: since the notice)."
static const double ss_hop_le[] = {0.0001, 0.00025, 0.0005, 0.001,
                                   0.0025, 0.005,   0.01,   0.025,
                                   0.05,   0.1,     0.25,   1};
static const char *const ss_hop_names[PROM_SS_HOP_COUNT] = {
    [PROM_SS_WAKE] = "wake",       [PROM_SS_LIST] = "list",
    [PROM_SS_ROOMS] = "rooms",     [PROM_SS_DETAIL] = "detail",
    [PROM_SS_MEMBERS] = "members", [PROM_SS_EXT] = "ext",
    [PROM_SS_IDLE] = "idle",       [PROM_SS_SAVE] = "save",
    [PROM_SS_WRITE] = "write",
};

struct prom_code {
	int status;
	struct metric *m;
};

/* A value another module keeps, copied at each scrape. */
struct prom_read {
	struct metric *m;
	const int *i;
	const unsigned long long *ull;
};
#define PROM_READS 16

struct prom {
	struct metrics *reg;
	struct prom_read read[PROM_READS];
	int nread;
	struct metric *latency[PROM_EP_COUNT];
	struct prom_code codes[PROM_EP_COUNT][PROM_CODES];
	int ncodes[PROM_EP_COUNT];
	struct metric *wake;
	struct metric *ss_hop[PROM_SS_HOP_COUNT];
};

static bool
has_prefix(const char *s, const char *prefix)
{
	return strncmp(s, prefix, strlen(prefix)) == 0;
}

/* Which endpoint a path is, for the labels (a handful of compares). */
enum prom_ep
prom_endpoint(const char *path)
{
	if (path == NULL)
		return PROM_EP_OTHER;
	if (strcmp(path, "/_matrix/client/v3/sync") == 0)
		return PROM_EP_SYNC;
	if (strcmp(path, "/_matrix/client/unstable/"
	                 "org.matrix.simplified_msc3575/sync") == 0 ||
	    strcmp(path, "/_matrix/client/v4/sync") == 0)
		return PROM_EP_SLIDING;
	if (has_prefix(path, "/_matrix/") ||
	    has_prefix(path, "/.well-known/matrix/"))
		return PROM_EP_PROXY;
	if (has_prefix(path, "/_syncv3/admin/"))
		return PROM_EP_ADMIN;
	if (has_prefix(path, "/_syncv3/client"))
		return PROM_EP_CLIENT;
	if (strcmp(path, "/health") == 0)
		return PROM_EP_HEALTH;
	if (strcmp(path, "/metrics") == 0)
		return PROM_EP_METRICS;
	return PROM_EP_OTHER;
}

/* The counter of (ep, status): from the endpoint's cache when it is there. */
static struct metric *
code_metric(struct prom *pr, enum prom_ep ep, int status)
{
	struct prom_code *c = pr->codes[ep];
	char buf[16];
	struct metric *m;

	for (int i = 0; i < pr->ncodes[ep]; i++) {
		if (c[i].status == status)
			return c[i].m;
	}
	snprintf(buf, sizeof(buf), "%d", status);
	m = metrics_get2(pr->reg, METRIC_COUNTER, REQUESTS, REQUESTS_HELP,
	                 "endpoint", ep_names[ep], "status", buf);
	if (pr->ncodes[ep] < PROM_CODES) {
		c[pr->ncodes[ep]].status = status;
		c[pr->ncodes[ep]++].m = m;
	}
	return m;
}

void
prom_request(struct api *api, enum prom_ep ep, int status, long long us)
{
	struct prom *pr = api->prom;

	if (pr == NULL || (unsigned)ep >= PROM_EP_COUNT)
		return;
	metric_inc(code_metric(pr, ep, status));
	metric_observe(pr->latency[ep], (double)us / 1e6);
}

void
prom_wake(struct api *api, long long ms)
{
	if (api->prom != NULL)
		metric_observe(api->prom->wake, (double)ms / 1000.0);
}

void
prom_ss_hop(struct api *api, enum prom_ss_hop h, long long us)
{
	if (api->prom != NULL && (unsigned)h < PROM_SS_HOP_COUNT)
		metric_observe(api->prom->ss_hop[h], (double)us / 1e6);
}

static void
counter(struct metrics *reg, const char *name, const char *help,
        unsigned long long v)
{
	metrics_set(reg, METRIC_COUNTER, name, help, (double)v);
}

static void
gauge(struct metrics *reg, const char *name, const char *help, double v)
{
	metrics_set(reg, METRIC_GAUGE, name, help, v);
}

/* Copies what the api counts anyway, just before each render. */
static void
collect_cb(struct metrics *reg, void *arg)
{
	struct api *api = arg;
	const struct api_stats *st = &api->stats;

	gauge(reg, "syncv3_api_long_polls", "Requests held waiting for news.",
	      lp_count(api));
	gauge(reg, "syncv3_api_connections", "Client connections open.",
	      (double)api->nconns);
	gauge(reg, "syncv3_api_position", "The position the api serves at.",
	      (double)api->cur_pos);
	gauge(reg, "syncv3_api_db_up", "1 while the Postgres pool can serve.",
	      pg_pool_is_up(api->pool) ? 1 : 0);
	counter(reg, "syncv3_api_wakeups_total",
	        "Long polls woken by a notice or a re-read.", st->wakeups);
	counter(
	    reg, "syncv3_api_whoami_calls_total",
	    "Upstream /whoami calls (tokens not known here or in Postgres).",
	    st->whoami_calls);
	counter(reg, "syncv3_api_whoami_cache_hits_total",
	        "Tokens resolved from the api's memory.",
	        st->whoami_cache_hits);
	counter(reg, "syncv3_api_token_lookups_total",
	        "Tokens looked up in Postgres (not in memory).",
	        st->token_lookups);
	counter(reg, "syncv3_api_whoami_limited_total",
	        "Requests refused (429) by the whoami rate limits.",
	        st->whoami_limited);
	counter(reg, "syncv3_api_notices_total", "Change notices received.",
	        st->notices);
	counter(reg, "syncv3_api_notice_gaps_total",
	        "Notice sequence gaps (positions re-read).", st->gaps);
	counter(reg, "syncv3_api_sessions_evicted_total",
	        "Sessions expired over SYNCV3_API_SESSIONS_PER_DEVICE.",
	        st->sessions_evicted);
	counter(reg, "syncv3_api_tokens_evicted_total",
	        "Tokens forgotten over SYNCV3_API_TOKENS_MAX.",
	        st->tokens_evicted);
	for (int i = 0; i < api->prom->nread; i++) {
		const struct prom_read *rd = &api->prom->read[i];

		metric_set(rd->m,
		           rd->i != NULL ? (double)*rd->i : (double)*rd->ull);
	}
}

static struct prom_read *
read_add(struct api *api, enum metric_type type, const char *name,
         const char *help)
{
	struct prom *pr = api->prom;
	struct prom_read *rd;

	if (pr->nread == PROM_READS)
		fatalx("prom: more than %d read metrics", PROM_READS);
	rd = &pr->read[pr->nread++];
	rd->m = metrics_get(pr->reg, type, name, help, NULL, NULL);
	return rd;
}

void
prom_gauge_int(struct api *api, const char *name, const char *help,
               const int *v)
{
	read_add(api, METRIC_GAUGE, name, help)->i = v;
}

void
prom_counter_ull(struct api *api, const char *name, const char *help,
                 const unsigned long long *v)
{
	read_add(api, METRIC_COUNTER, name, help)->ull = v;
}

/*
 * Every endpoint's latency histogram and its 200s exist from the start,
 * so a dashboard's rate() has a series before the first request.
 */
void
prom_init(struct api *api)
{
	struct prom *pr = xcalloc(1, sizeof(*pr));

	pr->reg = metrics_new();
	for (int ep = 0; ep < PROM_EP_COUNT; ep++)
		code_metric(pr, ep, 200);
	for (int ep = 0; ep < PROM_EP_COUNT; ep++)
		pr->latency[ep] = metrics_histogram_labelled(
		    pr->reg, LATENCY, LATENCY_HELP, latency_le,
		    sizeof(latency_le) / sizeof(latency_le[0]), "endpoint",
		    ep_names[ep]);
	pr->wake = metrics_histogram(
	    pr->reg, "syncv3_api_wake_seconds",
	    "From the notice that woke a long poll to its answer.", wake_le,
	    sizeof(wake_le) / sizeof(wake_le[0]));
	for (int h = 0; h < PROM_SS_HOP_COUNT; h++)
		pr->ss_hop[h] = metrics_histogram_labelled(
		    pr->reg, SS_HOP, SS_HOP_HELP, ss_hop_le,
		    sizeof(ss_hop_le) / sizeof(ss_hop_le[0]), "step",
		    ss_hop_names[h]);
	metrics_set_collect(pr->reg, collect_cb, api);
	api->prom = pr;
}

void
prom_shutdown(struct api *api)
{
	if (api->prom == NULL)
		return;
	metrics_free(api->prom->reg);
	free(api->prom);
	api->prom = NULL;
}

/* GET /metrics: the text exposition format 0.0.4, like the other daemons. */
void
prom_handle(struct api *api, struct evhttp_request *req)
{
	struct evbuffer *b = evbuffer_new();

	metrics_render(api->prom->reg, b);
	evhttp_add_header(evhttp_request_get_output_headers(req),
	                  "Content-Type", "text/plain; version=0.0.4");
	evhttp_send_reply(req, 200, "OK", b);
	evbuffer_free(b);
}
