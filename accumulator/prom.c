/*
 * The accumulator's metrics (README, "Metrics") and their listener
 * (SYNCV3_PROM). Nothing here runs on a hot path: every value is read
 * at scrape time from the counters ingest, the store and notify keep
 * anyway (ingest_counts, notify_counts), on the loop thread.
 */
#include <stdlib.h>

#include "accumulator.h"
#include "util.h"

struct acc_prom {
	struct metrics *reg;
	struct metrics_http *http;
	struct ingest *in;
	struct notify *nt;
	struct metric *batch_size, *commit_secs;
};

/* One unlabelled series of the scrape: its kind, name, help and value. */
struct acc_series {
	enum metric_type type;
	const char *name, *help;
	double v;
};

/* The counters of ingest (c) and notify (sent, failed) as series. */
static void
series_set(struct metrics *reg, const struct ingest_counts *c,
           unsigned long long sent, unsigned long long failed)
{
	const char *outcome[] = {"applied", "replayed", "rejected"};
	const unsigned long long by_outcome[] = {c->applied, c->replayed,
	                                         c->rejected};
	const struct acc_series series[] = {
	    {METRIC_COUNTER, "syncv3_acc_bad_bodies_total",
	     "Bodies that were not a JSON object (part of rejected).",
	     (double)c->st.bad_bodies},
	    {METRIC_COUNTER, "syncv3_acc_bad_messages_total",
	     "Frames from pollers that did not decode, dropped.",
	     (double)c->bad_msgs},
	    {METRIC_COUNTER, "syncv3_acc_events_total",
	     "Room events in the bodies applied and committed.",
	     (double)c->events},
	    {METRIC_COUNTER, "syncv3_acc_state_rows_total",
	     "syncv3_state rows (state versions) written and committed.",
	     (double)c->state_rows},
	    {METRIC_COUNTER, "syncv3_acc_bad_events_total",
	     "Room events dropped as malformed.", (double)c->st.bad_events},
	    {METRIC_COUNTER, "syncv3_acc_to_device_total",
	     "To-device messages in the bodies applied and committed.",
	     (double)c->to_device},
	    {METRIC_COUNTER, "syncv3_acc_batches_total",
	     "Transactions the store started.", (double)c->st.batches},
	    {METRIC_COUNTER, "syncv3_acc_notices_total",
	     "Change notices published.", (double)sent},
	    {METRIC_COUNTER, "syncv3_acc_notices_failed_total",
	     "Change notices the PUB socket refused.", (double)failed},
	    {METRIC_COUNTER, "syncv3_acc_order_renumbered_total",
	     "Late placements that found no order key left at their place "
	     "and gave the placed rows around it keys again.",
	     (double)c->st.order_renumbered},
	    {METRIC_COUNTER, "syncv3_acc_pg_errors_total",
	     "Statements Postgres failed.", (double)c->st.pg_errors},
	    {METRIC_COUNTER, "syncv3_acc_pg_round_trips_total",
	     "Round trips to Postgres of the store's batches and polls.",
	     (double)c->st.round_trips},
	    {METRIC_GAUGE, "syncv3_acc_queued",
	     "Bodies read and not yet answered.", (double)c->queued},
	    {METRIC_GAUGE, "syncv3_acc_loop_stall_max_ms",
	     "Longest time the event loop was held by one step.",
	     (double)c->loop_stall_max_ms},
	    {METRIC_COUNTER, "syncv3_acc_notice_slices_total",
	     "Times a body's notices were left for the next loop turn.",
	     (double)c->pub_slices},
	    {METRIC_COUNTER, "syncv3_acc_frees_detached_total",
	     "Large bodies freed (and trimmed) off the loop's thread.",
	     (double)c->frees_detached},
	};

	for (size_t i = 0; i < sizeof(outcome) / sizeof(outcome[0]); i++)
		metric_set(
		    metrics_get(reg, METRIC_COUNTER, "syncv3_acc_bodies_total",
		                "v2 bodies answered, by outcome: applied, "
		                "replayed (a resend of what was committed, "
		                "acked again) or rejected (nacked).",
		                "outcome", outcome[i]),
		    (double)by_outcome[i]);
	for (size_t i = 0; i < sizeof(series) / sizeof(series[0]); i++)
		metrics_set(reg, series[i].type, series[i].name, series[i].help,
		            series[i].v);
}

static void
collect_cb(struct metrics *reg, void *arg)
{
	struct acc_prom *ap = arg;
	struct ingest_counts c;
	unsigned long long sent, failed;

	ingest_counts(ap->in, &c);
	notify_counts(ap->nt, &sent, &failed);
	series_set(reg, &c, sent, failed);
	ap->batch_size->h = c.batch_size;
	ap->commit_secs->h = c.commit_secs;
}

static bool
health_cb(void *arg)
{
	struct acc_prom *ap = arg;

	return !ingest_is_stopping(ap->in);
}

struct acc_prom *
prom_new(struct event_base *base, const char *addr, struct ingest *in,
         struct notify *nt)
{
	struct acc_prom *ap = xcalloc(1, sizeof(*ap));

	ap->in = in;
	ap->nt = nt;
	ap->reg = metrics_new();
	ap->batch_size = metrics_histogram(ap->reg, "syncv3_acc_batch_size",
	                                   "Messages per batch (transaction).",
	                                   ingest_batch_le, ingest_batch_nle);
	ap->commit_secs =
	    metrics_histogram(ap->reg, "syncv3_acc_commit_seconds",
	                      "Time a batch took from BEGIN to COMMIT.",
	                      ingest_commit_le, ingest_commit_nle);
	metrics_set_collect(ap->reg, collect_cb, ap);
	if ((ap->http = metrics_listen(base, addr, ap->reg, health_cb, ap)) ==
	    NULL) {
		prom_free(ap);
		return NULL;
	}
	return ap;
}

void
prom_free(struct acc_prom *ap)
{
	if (ap == NULL)
		return;
	metrics_http_free(ap->http);
	metrics_free(ap->reg);
	free(ap);
}
