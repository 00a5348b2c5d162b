/*
 * A tiny metrics registry rendered in the Prometheus text exposition
 * format 0.0.4, and the small evhttp listener (SYNCV3_PROM) that serves
 * it with /health. Values are plain numbers updated on the loop thread
 * that owns the registry: an increment is one add, no lock, no atomic.
 * What another thread counts reaches the registry through the daemon's
 * collect callback, which runs on the loop thread before each render.
 */
#ifndef SYNCV3_METRICS_H
#define SYNCV3_METRICS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct event_base;
struct evbuffer;

enum metric_type {
	METRIC_COUNTER,
	METRIC_GAUGE,
	METRIC_HISTOGRAM,
};

#define METRICS_BUCKETS_MAX 16

/* Per-bucket (not cumulative) counts; le[] lives with the metric. */
struct metric_hist {
	uint64_t b[METRICS_BUCKETS_MAX];
	double sum;
	uint64_t count;
};

struct metric {
	const char *name, *help; /* borrowed: string literals */
	enum metric_type type;
	char *label, *value;   /* one label pair or NULL; owned */
	char *label2, *value2; /* a second pair (metrics_get2) or NULL */
	double v;              /* counter, gauge */
	const double *le;      /* histogram upper bounds, ascending */
	size_t nle;
	struct metric_hist h;
	struct metric *next;
};

struct metrics;
typedef void (*metrics_collect_fn)(struct metrics *reg, void *arg);
typedef bool (*metrics_health_fn)(void *arg);

struct metrics *metrics_new(void);
void metrics_free(struct metrics *reg);
/* Called before every render, on the loop thread. */
void metrics_set_collect(struct metrics *reg, metrics_collect_fn fn, void *arg);
/*
 * The series name{label="value"} (label NULL: no labels), created on
 * first use. Series of one name share a type and HELP line. The lookup
 * is a walk of the registry: keep the returned pointer on hot paths.
 */
struct metric *metrics_get(struct metrics *reg, enum metric_type type,
                           const char *name, const char *help,
                           const char *label, const char *value);
/* The series name{label="value",label2="value2"}, as metrics_get. */
struct metric *metrics_get2(struct metrics *reg, enum metric_type type,
                            const char *name, const char *help,
                            const char *label, const char *value,
                            const char *label2, const char *value2);
/* Sets the unlabelled series name to v: what a collect callback copies. */
void metrics_set(struct metrics *reg, enum metric_type type, const char *name,
                 const char *help, double v);
/* A histogram with nle (<= METRICS_BUCKETS_MAX) ascending bounds. */
struct metric *metrics_histogram(struct metrics *reg, const char *name,
                                 const char *help, const double *le,
                                 size_t nle);
/* The histogram series name{label="value"}, bounds as above. */
struct metric *metrics_histogram_labelled(struct metrics *reg, const char *name,
                                          const char *help, const double *le,
                                          size_t nle, const char *label,
                                          const char *value);
void metric_hist_observe(struct metric_hist *h, const double *le, size_t nle,
                         double x);
/* Appends the registry, then the process metrics, to out. */
void metrics_render(struct metrics *reg, struct evbuffer *out);
/* process_* from /proc/self; what cannot be read is left out. */
void metrics_process(struct evbuffer *out);

static inline void
metric_inc(struct metric *m)
{
	m->v += 1;
}

static inline void
metric_add(struct metric *m, double x)
{
	m->v += x;
}

static inline void
metric_set(struct metric *m, double x)
{
	m->v = x;
}

static inline void
metric_observe(struct metric *m, double x)
{
	metric_hist_observe(&m->h, m->le, m->nle, x);
}

/*
 * Serves GET /metrics and GET /health (200 when health says ok or is
 * NULL, else 503) on addr (host:port, [v6]:port) on base; anything else
 * is a 404. Returns NULL (logged) when addr is bad or cannot be bound.
 */
struct metrics_http;
struct metrics_http *metrics_listen(struct event_base *base, const char *addr,
                                    struct metrics *reg,
                                    metrics_health_fn health, void *arg);
void metrics_http_free(struct metrics_http *mh);

#endif
