/*
 * The metrics registry (a list of series in registration order), its
 * rendering in the Prometheus text exposition format 0.0.4, the process
 * metrics read from /proc/self, and the SYNCV3_PROM listener. The
 * registry belongs to one loop thread: updates, collect and render all
 * run there (see metrics.h).
 */
#include <sys/resource.h>

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <json-c/json.h>

#include "log.h"
#include "metrics.h"
#include "util.h"

struct metrics {
	struct metric *head, **tail;
	metrics_collect_fn collect;
	void *collect_arg;
};

struct metrics_http {
	struct evhttp *http;
	struct metrics *reg;
	metrics_health_fn health;
	void *arg;
};

static const char *const type_names[] = {
    [METRIC_COUNTER] = "counter",
    [METRIC_GAUGE] = "gauge",
    [METRIC_HISTOGRAM] = "histogram",
};

struct metrics *
metrics_new(void)
{
	struct metrics *reg = xcalloc(1, sizeof(*reg));

	reg->tail = &reg->head;
	return reg;
}

void
metrics_free(struct metrics *reg)
{
	struct metric *m, *next;

	if (reg == NULL)
		return;
	for (m = reg->head; m != NULL; m = next) {
		next = m->next;
		free(m->label);
		free(m->value);
		free(m->label2);
		free(m->value2);
		free(m);
	}
	free(reg);
}

void
metrics_set_collect(struct metrics *reg, metrics_collect_fn fn, void *arg)
{
	reg->collect = fn;
	reg->collect_arg = arg;
}

/* One label pair of a series against the one asked for (NULL: none). */
static bool
same_pair(const char *ml, const char *mv, const char *label, const char *value)
{
	if (label == NULL || ml == NULL)
		return label == NULL && ml == NULL;
	return strcmp(ml, label) == 0 &&
	       strcmp(mv, value != NULL ? value : "") == 0;
}

static bool
same_series(const struct metric *m, const char *name, const char *label,
            const char *value, const char *label2, const char *value2)
{
	return strcmp(m->name, name) == 0 &&
	       same_pair(m->label, m->value, label, value) &&
	       same_pair(m->label2, m->value2, label2, value2);
}

struct metric *
metrics_get2(struct metrics *reg, enum metric_type type, const char *name,
             const char *help, const char *label, const char *value,
             const char *label2, const char *value2)
{
	struct metric *m;

	for (m = reg->head; m != NULL; m = m->next) {
		if (same_series(m, name, label, value, label2, value2))
			return m;
	}
	m = xcalloc(1, sizeof(*m));
	m->name = name;
	m->help = help;
	m->type = type;
	if (label != NULL) {
		m->label = xstrdup(label);
		m->value = xstrdup(value != NULL ? value : "");
	}
	if (label2 != NULL) {
		m->label2 = xstrdup(label2);
		m->value2 = xstrdup(value2 != NULL ? value2 : "");
	}
	*reg->tail = m;
	reg->tail = &m->next;
	return m;
}

struct metric *
metrics_get(struct metrics *reg, enum metric_type type, const char *name,
            const char *help, const char *label, const char *value)
{
	return metrics_get2(reg, type, name, help, label, value, NULL, NULL);
}

void
metrics_set(struct metrics *reg, enum metric_type type, const char *name,
            const char *help, double v)
{
	metric_set(metrics_get(reg, type, name, help, NULL, NULL), v);
}

struct metric *
metrics_histogram_labelled(struct metrics *reg, const char *name,
                           const char *help, const double *le, size_t nle,
                           const char *label, const char *value)
{
	struct metric *m;

	if (nle > METRICS_BUCKETS_MAX)
		fatalx("%s: %zu buckets, at most %d", name, nle,
		       METRICS_BUCKETS_MAX);
	m = metrics_get(reg, METRIC_HISTOGRAM, name, help, label, value);
	m->le = le;
	m->nle = nle;
	return m;
}

struct metric *
metrics_histogram(struct metrics *reg, const char *name, const char *help,
                  const double *le, size_t nle)
{
	return metrics_histogram_labelled(reg, name, help, le, nle, NULL, NULL);
}

/* Above every bound, x is only in +Inf, which is the count. */
void
metric_hist_observe(struct metric_hist *h, const double *le, size_t nle,
                    double x)
{
	for (size_t i = 0; i < nle; i++) {
		if (x <= le[i]) {
			h->b[i]++;
			break;
		}
	}
	h->sum += x;
	h->count++;
}

/* HELP escapes backslash and newline; label values also the quote. */
static void
put_escaped(struct evbuffer *out, const char *s, bool is_label)
{
	for (; *s != '\0'; s++) {
		if (*s == '\\')
			evbuffer_add(out, "\\\\", 2);
		else if (*s == '\n')
			evbuffer_add(out, "\\n", 2);
		else if (*s == '"' && is_label)
			evbuffer_add(out, "\\\"", 2);
		else
			evbuffer_add(out, s, 1);
	}
}

/* The shortest text that reads back as v (integers without a point). */
static void
fmt_double(char *buf, size_t sz, double v)
{
	if (v == (double)(long long)v && v > -1e15 && v < 1e15) {
		snprintf(buf, sz, "%lld", (long long)v);
		return;
	}
	for (int prec = 1; prec <= 17; prec++) {
		snprintf(buf, sz, "%.*g", prec, v);
		if (strtod(buf, NULL) == v)
			return;
	}
}

static void
put_value(struct evbuffer *out, double v)
{
	char buf[64];

	fmt_double(buf, sizeof(buf), v);
	evbuffer_add_printf(out, " %s\n", buf);
}

static void
put_pair(struct evbuffer *out, const char *label, const char *value,
         bool is_first)
{
	evbuffer_add_printf(out, "%s%s=\"", is_first ? "" : ",", label);
	put_escaped(out, value, true);
	evbuffer_add(out, "\"", 1);
}

static void
put_labels(struct evbuffer *out, const struct metric *m, const char *le)
{
	if (m->label == NULL && m->label2 == NULL && le == NULL)
		return;
	evbuffer_add(out, "{", 1);
	if (m->label != NULL)
		put_pair(out, m->label, m->value, true);
	if (m->label2 != NULL)
		put_pair(out, m->label2, m->value2, m->label == NULL);
	if (le != NULL)
		put_pair(out, "le", le, m->label == NULL && m->label2 == NULL);
	evbuffer_add(out, "}", 1);
}

static void
put_hist(struct evbuffer *out, const struct metric *m)
{
	char le[64];
	uint64_t cum = 0;

	for (size_t i = 0; i < m->nle; i++) {
		cum += m->h.b[i];
		fmt_double(le, sizeof(le), m->le[i]);
		evbuffer_add_printf(out, "%s_bucket", m->name);
		put_labels(out, m, le);
		put_value(out, (double)cum);
	}
	evbuffer_add_printf(out, "%s_bucket", m->name);
	put_labels(out, m, "+Inf");
	put_value(out, (double)m->h.count);
	evbuffer_add_printf(out, "%s_sum", m->name);
	put_labels(out, m, NULL);
	put_value(out, m->h.sum);
	evbuffer_add_printf(out, "%s_count", m->name);
	put_labels(out, m, NULL);
	put_value(out, (double)m->h.count);
}

static void
put_series(struct evbuffer *out, const struct metric *m)
{
	if (m->type == METRIC_HISTOGRAM) {
		put_hist(out, m);
		return;
	}
	evbuffer_add_printf(out, "%s", m->name);
	put_labels(out, m, NULL);
	put_value(out, m->v);
}

static bool
name_seen_before(const struct metrics *reg, const struct metric *m)
{
	for (const struct metric *o = reg->head; o != m; o = o->next) {
		if (strcmp(o->name, m->name) == 0)
			return true;
	}
	return false;
}

/*
 * Each name once: its HELP and TYPE, then all its series together (the
 * format wants a name's lines in one group), in registration order.
 */
void
metrics_render(struct metrics *reg, struct evbuffer *out)
{
	if (reg->collect != NULL)
		reg->collect(reg, reg->collect_arg);
	for (const struct metric *m = reg->head; m != NULL; m = m->next) {
		if (name_seen_before(reg, m))
			continue;
		evbuffer_add_printf(out, "# HELP %s ", m->name);
		put_escaped(out, m->help, false);
		evbuffer_add_printf(out, "\n# TYPE %s %s\n", m->name,
		                    type_names[m->type]);
		for (const struct metric *s = m; s != NULL; s = s->next) {
			if (strcmp(s->name, m->name) == 0)
				put_series(out, s);
		}
	}
	metrics_process(out);
}

static void
put_process(struct evbuffer *out, const char *name, const char *type,
            const char *help, double v)
{
	evbuffer_add_printf(out, "# HELP %s %s\n# TYPE %s %s\n%s", name, help,
	                    name, type, name);
	put_value(out, v);
}

/* Seconds since the epoch the system booted (btime in /proc/stat). */
static double
boot_time(void)
{
	FILE *fp = fopen("/proc/stat", "r");
	char line[256];
	double bt = -1;

	if (fp == NULL)
		return -1;
	while (fgets(line, sizeof(line), fp) != NULL) {
		if (sscanf(line, "btime %lf", &bt) == 1)
			break;
	}
	fclose(fp);
	return bt;
}

static long
open_fds(void)
{
	DIR *d = opendir("/proc/self/fd");
	struct dirent *de;
	long n = 0;

	if (d == NULL)
		return -1;
	while ((de = readdir(d)) != NULL) {
		if (de->d_name[0] != '.')
			n++;
	}
	closedir(d);
	return n - 1; /* the directory's own descriptor */
}

/*
 * proc(5): after the command name in parentheses (which may hold spaces
 * and parentheses, hence the last ')'), field 3 is the state; utime and
 * stime are fields 14-15, starttime 22, vsize 23 and rss 24 (pages).
 */
static int
read_stat(double *cpu, double *start, double *vsize, double *rss)
{
	FILE *fp = fopen("/proc/self/stat", "r");
	char buf[1024], *p;
	unsigned long long ut, st, stt, vsz;
	long long rsp;
	double tck = (double)sysconf(_SC_CLK_TCK), bt = boot_time();
	size_t n;

	if (fp == NULL)
		return -1;
	n = fread(buf, 1, sizeof(buf) - 1, fp);
	fclose(fp);
	buf[n] = '\0';
	if ((p = strrchr(buf, ')')) == NULL || tck <= 0 ||
	    sscanf(p + 1,
	           " %*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu "
	           "%llu %*d %*d %*d %*d %*d %*d %llu %llu %lld",
	           &ut, &st, &stt, &vsz, &rsp) != 5)
		return -1;
	*cpu = (double)(ut + st) / tck;
	*start = bt < 0 ? -1 : bt + (double)stt / tck;
	*vsize = (double)vsz;
	*rss = (double)rsp * (double)sysconf(_SC_PAGESIZE);
	return 0;
}

void
metrics_process(struct evbuffer *out)
{
	double cpu, start, vsize, rss;
	struct rlimit rl;
	long fds = open_fds();

	if (read_stat(&cpu, &start, &vsize, &rss) == 0) {
		put_process(out, "process_cpu_seconds_total", "counter",
		            "Total user and system CPU time spent in seconds.",
		            cpu);
		put_process(out, "process_resident_memory_bytes", "gauge",
		            "Resident memory size in bytes.", rss);
		put_process(out, "process_virtual_memory_bytes", "gauge",
		            "Virtual memory size in bytes.", vsize);
		if (start >= 0)
			put_process(
			    out, "process_start_time_seconds", "gauge",
			    "Start time of the process since unix epoch in "
			    "seconds.",
			    start);
	}
	if (fds >= 0)
		put_process(out, "process_open_fds", "gauge",
		            "Number of open file descriptors.", (double)fds);
	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY)
		put_process(out, "process_max_fds", "gauge",
		            "Maximum number of open file descriptors.",
		            (double)rl.rlim_cur);
}

static void
reply_json(struct evhttp_request *req, int code, const char *reason,
           struct json_object *obj)
{
	struct evbuffer *b = evbuffer_new();

	evbuffer_add_printf(
	    b, "%s\n",
	    json_object_to_json_string_ext(obj, JSON_C_TO_STRING_PLAIN));
	evhttp_add_header(evhttp_request_get_output_headers(req),
	                  "Content-Type", "application/json");
	evhttp_send_reply(req, code, reason, b);
	evbuffer_free(b);
	json_object_put(obj);
}

static void
reply_error(struct evhttp_request *req, int code, const char *reason,
            const char *errcode, const char *error)
{
	struct json_object *o = json_object_new_object();

	json_object_object_add(o, "errcode", json_object_new_string(errcode));
	json_object_object_add(o, "error", json_object_new_string(error));
	reply_json(req, code, reason, o);
}

static void
health(struct metrics_http *mh, struct evhttp_request *req)
{
	bool is_ok = mh->health == NULL || mh->health(mh->arg);
	struct json_object *o = json_object_new_object();

	json_object_object_add(
	    o, "status", json_object_new_string(is_ok ? "ok" : "unhealthy"));
	reply_json(req, is_ok ? 200 : 503, is_ok ? "OK" : "Service Unavailable",
	           o);
}

static void
request_cb(struct evhttp_request *req, void *arg)
{
	struct metrics_http *mh = arg;
	const char *path =
	    evhttp_uri_get_path(evhttp_request_get_evhttp_uri(req));
	struct evbuffer *b;

	if ((evhttp_request_get_command(req) &
	     (EVHTTP_REQ_GET | EVHTTP_REQ_HEAD)) == 0) {
		reply_error(req, 405, "Method Not Allowed", "M_UNRECOGNIZED",
		            "only GET is served here");
		return;
	}
	if (path != NULL && strcmp(path, "/health") == 0) {
		health(mh, req);
		return;
	}
	if (path == NULL || strcmp(path, "/metrics") != 0) {
		reply_error(req, 404, "Not Found", "M_NOT_FOUND",
		            "only /metrics and /health are served here");
		return;
	}
	b = evbuffer_new();
	metrics_render(mh->reg, b);
	evhttp_add_header(evhttp_request_get_output_headers(req),
	                  "Content-Type", "text/plain; version=0.0.4");
	evhttp_send_reply(req, 200, "OK", b);
	evbuffer_free(b);
}

/* Splits host:port or [v6]:port into host (brackets dropped) and port. */
static int
split_addr(const char *addr, char *host, size_t hostsz, ev_uint16_t *port)
{
	const char *colon = strrchr(addr, ':');
	size_t n;
	char *end;
	long v;

	if (colon == NULL || colon == addr)
		return -1;
	v = strtol(colon + 1, &end, 10);
	if (colon[1] == '\0' || *end != '\0' || v < 0 || v > 65535)
		return -1;
	n = (size_t)(colon - addr);
	if (addr[0] == '[' && n >= 2 && addr[n - 1] == ']') {
		addr++;
		n -= 2;
	}
	if (n == 0 || n >= hostsz)
		return -1;
	memcpy(host, addr, n);
	host[n] = '\0';
	*port = (ev_uint16_t)v;
	return 0;
}

struct metrics_http *
metrics_listen(struct event_base *base, const char *addr, struct metrics *reg,
               metrics_health_fn health_fn, void *arg)
{
	struct metrics_http *mh;
	char host[256];
	ev_uint16_t port;

	if (split_addr(addr, host, sizeof(host), &port) == -1) {
		log_warnx("metrics: %s: not host:port", addr);
		return NULL;
	}
	mh = xcalloc(1, sizeof(*mh));
	mh->reg = reg;
	mh->health = health_fn;
	mh->arg = arg;
	if ((mh->http = evhttp_new(base)) == NULL ||
	    evhttp_bind_socket(mh->http, host, port) != 0) {
		log_warnx("metrics: cannot listen on %s", addr);
		metrics_http_free(mh);
		return NULL;
	}
	evhttp_set_timeout(mh->http, 10);
	evhttp_set_max_body_size(mh->http, 4096);
	evhttp_set_gencb(mh->http, request_cb, mh);
	log_info("metrics: listening on %s", addr);
	return mh;
}

void
metrics_http_free(struct metrics_http *mh)
{
	if (mh == NULL)
		return;
	if (mh->http != NULL)
		evhttp_free(mh->http);
	free(mh);
}
