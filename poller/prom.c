/*
 * The poller's metrics (README, "Metrics"). Counted on the loop thread:
 * backoffs (device.c), upstream responses by status and their latency
 * (sync.c, through prom_response). Everything else is read at scrape
 * time from what the poller keeps anyway (device table, curl multi,
 * struct poller_stats), so it costs the hot paths nothing. A timer ticking
 * every LAG_TICK_MS measures how late the loop runs it: the longest stall
 * (a callback holding the loop) is a gauge, since one longer than the
 * liveness deadline costs every device (issue #13).
 */
#include <stdio.h>
#include <stdlib.h>

#include "curl_ev.h"
#include "log.h"
#include "poller.h"
#include "util.h"

#define RESPONSES "syncv3_poller_upstream_responses_total"
#define RESPONSES_HELP                                                         \
	"v2 /sync responses by HTTP status (0: no response, e.g. a timeout)."

#define LAG_TICK_MS 50
#define LAG_LOG_MS 100 /* stalls logged at debug */

/* Long-polls last up to SYNCV3_POLL_TIMEOUT_MS, initial syncs minutes. */
static const double latency_le[] = {0.01, 0.05, 0.1, 0.25, 0.5, 1,  2.5,
                                    5,    10,   20,  30,   45,  60, 300};

static void
collect_cb(struct metrics *reg, void *arg)
{
	struct poller *p = arg;
	struct device *d;
	size_t nack = 0;

	TAILQ_FOREACH(d, &p->devices, entry)
	{
		if (d->cycle == DEV_ACK_WAIT)
			nack++;
	}
	metrics_set(reg, METRIC_GAUGE, "syncv3_poller_devices",
	            "Devices this poller holds.", (double)p->ndevices);
	metrics_set(reg, METRIC_GAUGE, "syncv3_poller_polls_in_flight",
	            "v2 /sync requests in flight.", curl_ev_running(p->curl));
	metrics_set(reg, METRIC_GAUGE, "syncv3_poller_bodies_awaiting_ack",
	            "Responses sent to the accumulator, not yet acked.",
	            (double)nack);
	metrics_set(reg, METRIC_GAUGE, "syncv3_poller_initial_syncs",
	            "Initial syncs running (at most SYNCV3_MAX_INITIAL).",
	            p->initial_inflight);
	metrics_set(reg, METRIC_GAUGE, "syncv3_poller_loop_stall_max_ms",
	            "Longest time the event loop was held by one step.",
	            (double)p->lag_max_ms);
	metrics_set(reg, METRIC_COUNTER, "syncv3_poller_polls_ok_total",
	            "Responses the accumulator acked.",
	            (double)p->stats.polls_ok);
	metrics_set(reg, METRIC_COUNTER, "syncv3_poller_polls_failed_total",
	            "Polls that failed and were retried or stopped.",
	            (double)p->stats.polls_failed);
	metrics_set(reg, METRIC_COUNTER, "syncv3_poller_nacks_total",
	            "Responses the accumulator rejected.",
	            (double)p->stats.nacks);
	metrics_set(reg, METRIC_COUNTER, "syncv3_poller_resends_total",
	            "Responses sent to the accumulator again (ack overdue).",
	            (double)p->stats.resends);
}

static bool
health_cb(void *arg)
{
	struct poller *p = arg;

	return !p->is_lapsed && !p->is_stopping;
}

/* One response of the homeserver: status 0 when none came. */
void
prom_response(struct poller *p, long status, long long ms)
{
	char buf[24];

	if (status == 200)
		metric_inc(p->m_status200);
	else {
		snprintf(buf, sizeof(buf), "%ld", status);
		metric_inc(metrics_get(p->metrics, METRIC_COUNTER, RESPONSES,
		                       RESPONSES_HELP, "status", buf));
	}
	metric_observe(p->m_latency, (double)ms / 1000.0);
}

/* How late this tick ran: the loop was held that long by something. */
static void
lag_cb(evutil_socket_t fd, short what, void *arg)
{
	struct poller *p = arg;
	long long late_ms;

	(void)fd;
	(void)what;
	late_ms = lag_tick(&p->lag_last_us, &p->lag_max_ms, LAG_TICK_MS);
	if (late_ms >= LAG_LOG_MS)
		log_debug("loop stalled %lld ms (longest %lld ms)", late_ms,
		          p->lag_max_ms);
}

/*
 * The registry always exists (the counters are plain adds); the
 * listener only when SYNCV3_PROM is set. A bad or busy address is a
 * startup error, like any malformed setting.
 */
void
prom_init(struct poller *p)
{
	p->metrics = metrics_new();
	p->m_status200 = metrics_get(p->metrics, METRIC_COUNTER, RESPONSES,
	                             RESPONSES_HELP, "status", "200");
	p->m_latency = metrics_histogram(
	    p->metrics, "syncv3_poller_upstream_latency_seconds",
	    "Time from a v2 /sync request to its response.", latency_le,
	    sizeof(latency_le) / sizeof(latency_le[0]));
	p->m_backoffs = metrics_get(
	    p->metrics, METRIC_COUNTER, "syncv3_poller_backoffs_total",
	    "Backoffs started (errors, 429, nacks).", NULL, NULL);
	metrics_set_collect(p->metrics, collect_cb, p);
	/* The first tick only starts the clock: startup may block. */
	if ((p->lag_ev = event_new(p->base, -1, EV_PERSIST, lag_cb, p)) ==
	        NULL ||
	    event_add(p->lag_ev, &(struct timeval){0, LAG_TICK_MS * 1000}) ==
	        -1)
		fatalx("lag timer: event_new failed");
	if (p->cfg.prom == NULL || p->cfg.prom[0] == '\0')
		return;
	if ((p->prom = metrics_listen(p->base, p->cfg.prom, p->metrics,
	                              health_cb, p)) == NULL)
		fatalx("SYNCV3_PROM: cannot listen on %s", p->cfg.prom);
}

void
prom_shutdown(struct poller *p)
{
	if (p->lag_ev != NULL)
		event_free(p->lag_ev);
	p->lag_ev = NULL;
	metrics_http_free(p->prom);
	p->prom = NULL;
	metrics_free(p->metrics);
	p->metrics = NULL;
}
