/*
 * syncv3-loadgen: the load generator behind tests/bench/run.sh. It drives
 * the simulated homeserver through its admin API (bulk scenarios, sends,
 * typing, to-device) and the api as real clients do (long-polls over
 * evhttp), and writes each scenario's figures as one JSON object on
 * stdout. One scenario per run:
 *
 *   ingest   users x rooms (plus shared rooms) in long-poll, then a burst
 *            of events upstream, or with -T a firehose of such bursts for
 *            that long; committed rows/s over time, ack latency, CPU
 *   e2e      K clients long-polling room_list, events at a steady rate;
 *            latency from send accepted upstream to response received
 *   first    first response of new sessions for accounts of N rooms
 *   idle     api RSS per idle long-poll
 *   devices  poller RSS per idle polled device
 *
 * Devices for ingest/devices are registered straight into syncv3_devices
 * (hash and ciphertext as the api writes them), which is what the api
 * would do after /whoami, so thousands of them take a second.
 */
#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <math.h>
#include <signal.h>
#include <stdarg.h>
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
#include <libpq-fe.h>

#include "crypto.h"
#include "json_util.h"
#include "log.h"
#include "util.h"

#define SIM_POOL 16
#define MAX_PIDS 8

struct pidinfo {
	char name[32];
	int pid;
	bool is_tree;		/* postmaster: add its children */
	double t0, t1;		/* CPU seconds */
};

struct lg {
	struct event_base *base;
	char sim_host[64], api_host[64];
	int sim_port, api_port;
	struct evhttp_connection *sim[SIM_POOL];
	unsigned sim_rr;
	PGconn *pg;
	const char *secret;
	int pending;
	struct pidinfo pids[MAX_PIDS];
	int npids;
	/* options */
	int users, rooms, shared, members, events, clients, secs, repeats;
	int devices, conns;
	int ingest_secs; /* ingest: firehose length (0: one burst) */
	double rate, typing_rate, td_rate;
	const char *sizes, *prefix;
	const char *acc_log; /* the accumulator's log, for ack latency */
};

struct call;
typedef void (*call_fn)(struct call *, int, struct json_object *);

struct call {
	struct lg *lg;
	call_fn fn;
	void *arg;
	long idx;
};

struct user {
	char *user_id, *token, *device_id, *since;
	struct evhttp_connection *conn;
	int busy;
};

static double
now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int
cmp_dbl(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return x < y ? -1 : x > y;
}

/* Nearest-rank percentile of sorted v[n], in ms (v is in seconds). */
static double
pct_ms(const double *v, size_t n, double q)
{
	size_t k;

	if (n == 0)
		return -1;
	k = (size_t)ceil(q * (double)n);
	k = k == 0 ? 0 : k - 1;
	return v[k < n ? k : n - 1] * 1000.0;
}

static void
add_pcts(struct json_object *o, double *v, size_t n)
{
	qsort(v, n, sizeof(*v), cmp_dbl);
	json_object_object_add(o, "p50_ms", json_object_new_double(pct_ms(v, n, 0.50)));
	json_object_object_add(o, "p95_ms", json_object_new_double(pct_ms(v, n, 0.95)));
	json_object_object_add(o, "p99_ms", json_object_new_double(pct_ms(v, n, 0.99)));
	json_object_object_add(o, "max_ms", json_object_new_double(pct_ms(v, n, 1.0)));
	json_object_object_add(o, "samples", json_object_new_int64((int64_t)n));
}

/* --- /proc ----------------------------------------------------------- */

static long
rss_kib(int pid)
{
	char path[64], line[256];
	long kb = -1;
	FILE *f;

	snprintf(path, sizeof(path), "/proc/%d/status", pid);
	if ((f = fopen(path, "r")) == NULL)
		return -1;
	while (fgets(line, sizeof(line), f) != NULL)
		if (sscanf(line, "VmRSS: %ld", &kb) == 1)
			break;
	fclose(f);
	return kb;
}

/* utime+stime (+ reaped children's with with_dead) in ticks; sets *ppid. */
static long long
stat_ticks(int pid, bool with_dead, int *ppid)
{
	char path[64], buf[1024], *p;
	unsigned long long ut, st;
	long long cut, cst;
	int pp;
	FILE *f;
	size_t n;

	snprintf(path, sizeof(path), "/proc/%d/stat", pid);
	if ((f = fopen(path, "r")) == NULL)
		return -1;
	n = fread(buf, 1, sizeof(buf) - 1, f);
	fclose(f);
	buf[n] = '\0';
	if ((p = strrchr(buf, ')')) == NULL ||
	    sscanf(p + 2, "%*c %d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu "
	    "%llu %lld %lld", &pp, &ut, &st, &cut, &cst) != 5)
		return -1;
	if (ppid != NULL)
		*ppid = pp;
	return (long long)(ut + st) + (with_dead ? cut + cst : 0);
}

static double
cpu_secs(const struct pidinfo *pi)
{
	long long t = stat_ticks(pi->pid, pi->is_tree, NULL);
	struct dirent *de;
	DIR *d;
	int pp;

	if (pi->is_tree && (d = opendir("/proc")) != NULL) {
		while ((de = readdir(d)) != NULL) {
			long long c;

			if (!isdigit((unsigned char)de->d_name[0]))
				continue;
			c = stat_ticks(atoi(de->d_name), false, &pp);
			if (c > 0 && pp == pi->pid)
				t += c;
		}
		closedir(d);
	}
	return (double)t / (double)sysconf(_SC_CLK_TCK);
}

static void
cpu_snap(struct lg *lg, bool end)
{
	for (int i = 0; i < lg->npids; i++) {
		double s = cpu_secs(&lg->pids[i]);

		if (end)
			lg->pids[i].t1 = s;
		else
			lg->pids[i].t0 = s;
	}
}

static int
pid_of(struct lg *lg, const char *name)
{
	for (int i = 0; i < lg->npids; i++)
		if (strcmp(lg->pids[i].name, name) == 0)
			return lg->pids[i].pid;
	fatalx("no -P %s=PID given", name);
}

/* --- HTTP ------------------------------------------------------------ */

static void
split_url(const char *url, char *host, size_t hlen, int *port)
{
	struct evhttp_uri *u = evhttp_uri_parse(url);

	if (u == NULL || evhttp_uri_get_host(u) == NULL)
		fatalx("bad url %s", url);
	snprintf(host, hlen, "%s", evhttp_uri_get_host(u));
	*port = evhttp_uri_get_port(u) > 0 ? evhttp_uri_get_port(u) : 80;
	evhttp_uri_free(u);
}

static struct evhttp_connection *
conn_new(struct lg *lg, bool is_api, int timeout_s)
{
	struct evhttp_connection *c = evhttp_connection_base_new(lg->base,
	    NULL, is_api ? lg->api_host : lg->sim_host,
	    (unsigned short)(is_api ? lg->api_port : lg->sim_port));

	if (c == NULL)
		fatalx("evhttp_connection_base_new");
	evhttp_connection_set_timeout(c, timeout_s);
	evhttp_connection_set_retries(c, 0);
	return c;
}

static void
http_done_cb(struct evhttp_request *req, void *arg)
{
	struct call *c = arg;
	struct json_object *j = NULL;
	const char *err;
	int code = 0;

	if (req != NULL && (code = evhttp_request_get_response_code(req))) {
		struct evbuffer *b = evhttp_request_get_input_buffer(req);
		size_t len = evbuffer_get_length(b);

		if (len > 0)
			j = json_parse_bounded((const char *)evbuffer_pullup(b,
			    -1), len, &err);
	}
	c->lg->pending--;
	c->fn(c, code, j);
	json_object_put(j);
	free(c);
}

/* POSTs body to uri on conn; fn(call, status (0 = no reply), json). */
static void
http_post(struct lg *lg, struct evhttp_connection *conn, bool is_api,
    const char *uri, const char *token, const char *body, call_fn fn,
    void *arg, long idx)
{
	struct call *c = xcalloc(1, sizeof(*c));
	struct evhttp_request *req;
	struct evkeyvalq *h;
	char auth[256];

	*c = (struct call){lg, fn, arg, idx};
	if ((req = evhttp_request_new(http_done_cb, c)) == NULL)
		fatalx("evhttp_request_new");
	h = evhttp_request_get_output_headers(req);
	evhttp_add_header(h, "Host", is_api ? lg->api_host : lg->sim_host);
	evhttp_add_header(h, "Content-Type", "application/json");
	if (token != NULL) {
		snprintf(auth, sizeof(auth), "Bearer %s", token);
		evhttp_add_header(h, "Authorization", auth);
	}
	evbuffer_add(evhttp_request_get_output_buffer(req), body, strlen(body));
	lg->pending++;
	if (evhttp_make_request(conn, req, EVHTTP_REQ_POST, uri) != 0)
		fatalx("evhttp_make_request %s", uri);
}

static void
sim_post(struct lg *lg, const char *path, const char *body, call_fn fn,
    void *arg, long idx)
{
	char uri[512];

	snprintf(uri, sizeof(uri), "/_simhs/%s", path);
	http_post(lg, lg->sim[lg->sim_rr++ % SIM_POOL], false, uri, NULL, body,
	    fn, arg, idx);
}

/* POST /sync on conn as token. */
static void
api_sync(struct lg *lg, struct evhttp_connection *conn, const char *token,
    const char *since, int timeout_ms, const char *body, call_fn fn,
    void *arg, long idx)
{
	char uri[1024];
	char *enc = since != NULL ? evhttp_encode_uri(since) : NULL;

	snprintf(uri, sizeof(uri), "/_matrix/client/v3/sync?timeout=%d%s%s",
	    timeout_ms, enc ? "&since=" : "", enc ? enc : "");
	free(enc);
	http_post(lg, conn, true, uri, token, body, fn, arg, idx);
}

static void
wait_pending(struct lg *lg, int max)
{
	while (lg->pending > max)
		event_base_loop(lg->base, EVLOOP_ONCE);
}

static void
run_for(struct lg *lg, double secs)
{
	struct timeval tv = {(time_t)secs,
	    (suseconds_t)((secs - (double)(time_t)secs) * 1e6)};

	event_base_loopexit(lg->base, &tv);
	event_base_dispatch(lg->base);
}

struct sync_res {
	bool is_done;
	int code;
	struct json_object *j;
	double t;
};

static void
sync_res_cb(struct call *c, int code, struct json_object *j)
{
	struct sync_res *r = c->arg;

	r->is_done = true;
	r->code = code;
	r->j = j != NULL ? json_object_get(j) : NULL;
	r->t = now_s();
}

static void
wait_res(struct lg *lg, struct sync_res *r)
{
	while (!r->is_done)
		event_base_loop(lg->base, EVLOOP_ONCE);
}

/* Synchronous admin call; fatal unless 200. Caller puts the result. */
static struct json_object *
sim_call(struct lg *lg, const char *path, const char *body)
{
	struct sync_res r = {0};

	sim_post(lg, path, body, sync_res_cb, &r, 0);
	wait_res(lg, &r);
	if (r.code != 200)
		fatalx("simhs %s: status %d: %s", path, r.code,
		    r.j ? json_object_to_json_string(r.j) : "");
	return r.j;
}

static struct json_object *
sim_get_stats(struct lg *lg)
{
	struct sync_res r = {0};
	struct evhttp_request *req;
	struct call *c = xcalloc(1, sizeof(*c));

	*c = (struct call){lg, sync_res_cb, &r, 0};
	req = evhttp_request_new(http_done_cb, c);
	evhttp_add_header(evhttp_request_get_output_headers(req), "Host",
	    lg->sim_host);
	lg->pending++;
	evhttp_make_request(lg->sim[0], req, EVHTTP_REQ_GET, "/_simhs/stats");
	wait_res(lg, &r);
	if (r.code != 200)
		fatalx("simhs stats: %d", r.code);
	return r.j;
}

static int64_t
sim_waiters(struct lg *lg)
{
	struct json_object *j = sim_get_stats(lg);
	int64_t w = 0;

	json_get_int(j, "waiters", &w);
	json_object_put(j);
	return w;
}

/* --- users ----------------------------------------------------------- */

/* Bulk users @{prefix}{i} with rooms each; rooms[] in user order. */
static struct user *
make_users(struct lg *lg, const char *prefix, int n, int rooms, int members,
    int messages, struct json_object **rooms_out)
{
	char body[256];
	struct json_object *j, *ua;
	struct user *u = xcalloc((size_t)n, sizeof(*u));

	snprintf(body, sizeof(body), "{\"users\":%d,\"rooms_per_user\":%d,"
	    "\"members_per_room\":%d,\"messages_per_room\":%d,"
	    "\"prefix\":\"%s\"}", n, rooms, members, messages, prefix);
	j = sim_call(lg, "scenario", body);
	ua = json_get_arr(j, "users");
	if (ua == NULL || (int)json_object_array_length(ua) != n)
		fatalx("scenario: bad users");
	for (int i = 0; i < n; i++) {
		struct json_object *o = json_object_array_get_idx(ua, (size_t)i);

		u[i].user_id = xstrdup(json_get_str(o, "user_id"));
		u[i].token = xstrdup(json_get_str(o, "access_token"));
		u[i].device_id = xstrdup(json_get_str(o, "device_id"));
	}
	*rooms_out = json_object_get(json_get_arr(j, "rooms"));
	json_object_put(j);
	return u;
}

static long long
pg_count(struct lg *lg, const char *sql, const char *arg)
{
	PGresult *r = PQexecParams(lg->pg, sql, arg ? 1 : 0, NULL,
	    arg ? &arg : NULL, NULL, NULL, 0);
	long long v = -1;

	if (PQresultStatus(r) == PGRES_TUPLES_OK && PQntuples(r) == 1)
		v = strtoll(PQgetvalue(r, 0, 0), NULL, 10);
	else
		fatalx("%s: %s", sql, PQerrorMessage(lg->pg));
	PQclear(r);
	return v;
}

/* Registers devices as the api does after /whoami, then wakes pollers. */
static void
register_devices(struct lg *lg, struct user *u, int n)
{
	PGresult *r = PQexec(lg->pg, "BEGIN");

	PQclear(r);
	for (int i = 0; i < n; i++) {
		char hash[TOKEN_HASH_LEN + 1], *enc;
		const char *p[4];

		token_hash(u[i].token, strlen(u[i].token), hash);
		if ((enc = token_encrypt(lg->secret, u[i].token)) == NULL)
			fatalx("token_encrypt");
		p[0] = u[i].user_id, p[1] = u[i].device_id, p[2] = hash;
		p[3] = enc;
		r = PQexecParams(lg->pg, "INSERT INTO syncv3_devices (user_id, "
		    "device_id, token_hash, token_enc) VALUES ($1, $2, $3, $4)",
		    4, NULL, p, NULL, NULL, 0);
		if (PQresultStatus(r) != PGRES_COMMAND_OK)
			fatalx("insert device: %s", PQerrorMessage(lg->pg));
		PQclear(r);
		free(enc);
	}
	PQclear(PQexec(lg->pg, "COMMIT"));
	PQclear(PQexec(lg->pg, "NOTIFY syncv3_devices"));
}

/* Waits until every device of prefix has a since and upstream holds
 * about n more long-polls than w0. Returns the seconds it took. */
static double
wait_polling(struct lg *lg, const char *prefix, int n, int64_t w0,
    double max_s)
{
	char like[80];
	double t0 = now_s();

	snprintf(like, sizeof(like), "@%s%%", prefix);
	while (pg_count(lg, "SELECT count(*) FROM syncv3_devices WHERE "
	    "user_id LIKE $1 AND since <> ''", like) < n) {
		if (now_s() - t0 > max_s)
			fatalx("%s: devices not synced after %.0fs", prefix,
			    max_s);
		run_for(lg, 0.2);
	}
	while (sim_waiters(lg) < w0 + n * 98 / 100 && now_s() - t0 < max_s)
		run_for(lg, 0.2);
	return now_s() - t0;
}

/* --- ingest ------------------------------------------------------------ */

static void
ignore_cb(struct call *c, int code, struct json_object *j)
{
	(void)j;
	if (code != 200)
		log_warnx_rl("%s: status %d", c->arg ? (char *)c->arg : "call",
		    code);
}

static char *
batch_body(const char *sender, int nev, long base)
{
	struct json_object *o = json_object_new_object(),
	    *a = json_object_new_array();
	char txt[160], *s;

	for (int e = 0; e < nev; e++) {
		struct json_object *ev = json_object_new_object(),
		    *ct = json_object_new_object();

		snprintf(txt, sizeof(txt), "ingest %ld: a message of a "
		    "realistic length for a chat room, with a few words", base + e);
		json_object_object_add(ct, "msgtype", json_object_new_string("m.text"));
		json_object_object_add(ct, "body", json_object_new_string(txt));
		json_object_object_add(ev, "sender", json_object_new_string(sender));
		json_object_object_add(ev, "type", json_object_new_string("m.room.message"));
		json_object_object_add(ev, "content", ct);
		json_object_array_add(a, ev);
	}
	json_object_object_add(o, "events", a);
	s = xstrdup(json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN));
	json_object_put(o);
	return s;
}

static struct json_object *
cpu_json(struct lg *lg, double events)
{
	struct json_object *o = json_object_new_object();

	for (int i = 0; i < lg->npids; i++)
		json_object_object_add(o, lg->pids[i].name,
		    json_object_new_double((lg->pids[i].t1 - lg->pids[i].t0) *
		    1000.0 / events));
	return o;
}

/*
 * The events rate of each whole second from cum[m] (committed events at
 * the end of each second), as a series, and the min/median/max of
 * seconds [from, to) of it (the firehose's steady part, without its
 * first second and the drain after the sends): steps down, such as a
 * checkpoint's, show there and not in the mean.
 */
static void
add_rate_series(struct json_object *o, const long long *cum, size_t m,
                size_t from, size_t to)
{
	struct json_object *a = json_object_new_array();
	double *v = xcalloc(m + 1, sizeof(*v));
	size_t k = 0;

	if (to > m)
		to = m;
	if (from >= to) /* too short for a steady part: every second */
		from = 0, to = m;
	for (size_t i = 0; i < m; i++) {
		double r = (double)(cum[i] - (i ? cum[i - 1] : 0));

		json_object_array_add(a, json_object_new_int64((int64_t)r));
		if (i >= from && i < to)
			v[k++] = r;
	}
	qsort(v, k, sizeof(*v), cmp_dbl);
	json_object_object_add(o, "events_per_s_series", a);
	json_object_object_add(o, "steady_seconds",
	                       json_object_new_int64((int64_t)k));
	json_object_object_add(o, "events_per_s_min",
	                       k ? json_object_new_double(v[0]) : NULL);
	json_object_object_add(o, "events_per_s_median",
	                       k ? json_object_new_double(v[k / 2]) : NULL);
	json_object_object_add(o, "events_per_s_max",
	                       k ? json_object_new_double(v[k - 1]) : NULL);
	free(v);
}

/* A sample of the committed count: c events at el seconds. */
struct sample {
	double el;
	long long c;
};

static void
sample_add(struct sample **v, size_t *n, double el, long long c)
{
	*v = xrealloc(*v, (*n + 1) * sizeof(**v));
	(*v)[(*n)++] = (struct sample){el, c};
}

/*
 * The committed count at the end of each whole second up to secs,
 * interpolated between the samples around it: a probe that took two
 * seconds (the machine is shared) must not show as a second of nothing
 * and a second of twice the rate. Returns the array, *n its length.
 */
static long long *
series_cum(const struct sample *v, size_t nv, double secs, size_t *n)
{
	size_t m = secs > 0 ? (size_t)secs : 0, k = 0;
	long long *cum = xcalloc(m + 1, sizeof(*cum));

	for (size_t s = 0; s < m; s++) {
		double t = (double)(s + 1);
		while (k + 1 < nv && v[k + 1].el < t)
			k++;
		if (nv == 0)
			cum[s] = 0;
		else if (k + 1 >= nv || v[k].el >= t)
			cum[s] = v[k].c;
		else
			cum[s] = v[k].c + (long long)((double)(v[k + 1].c -
			    v[k].c) * (t - v[k].el) / (v[k + 1].el - v[k].el));
	}
	*n = m;
	return cum;
}

static long
file_size(const char *path)
{
	FILE *f = path ? fopen(path, "r") : NULL;
	long n = -1;

	if (f != NULL && fseek(f, 0, SEEK_END) == 0)
		n = ftell(f);
	if (f != NULL)
		fclose(f);
	return n;
}

/* The median of v[n] (sorted here), null when n is 0. */
static struct json_object *
median_json(double *v, size_t n)
{
	if (n == 0)
		return NULL;
	qsort(v, n, sizeof(*v), cmp_dbl);
	return json_object_new_double(v[n / 2]);
}

/*
 * Ack latency as the accumulator saw it (receipt to ack, so the wait in
 * its queue and the commit), from the stats lines it wrote after offset
 * off of its log: one object per interval (SYNCV3_ACC_STATS_SECS, 1 s
 * under run.sh) with its commits (how many bodies each took, how long
 * each took) and, over the run, the median of the intervals' p50, p95
 * and p99, the worst interval's p95 and p99, the largest max, and the
 * bodies per commit and commit time over all intervals. Intervals'
 * quantiles do not add up to the run's exactly, hence the names.
 */
static struct json_object *
acc_latency(const char *path, long off)
{
	struct json_object *o = json_object_new_object(),
	                   *a = json_object_new_array();
	FILE *f = fopen(path, "r");
	char line[1024];
	double *p50 = NULL, *p95 = NULL, *p99 = NULL;
	size_t n = 0;
	long long w95 = -1, w99 = -1, mx = -1, acks = 0, commits = 0;
	long long cmax = -1;
	double bodies = 0, cms = 0, dms = 0;

	if (f == NULL || fseek(f, off, SEEK_SET) != 0) {
		if (f != NULL)
			fclose(f);
		json_object_put(a);
		return o;
	}
	while (fgets(line, sizeof(line), f) != NULL) {
		long long v[6], nc = 0, nbd = 0, bm = 0, cm = 0;
		double ba = 0, ca = 0, da = 0;
		const char *s = strstr(line, "ack latency avg ");
		const char *cs = strstr(line, "; commits ");
		if (s == NULL ||
		    sscanf(s,
		           "ack latency avg %lldms p50 %lldms "
		           "p95 %lldms p99 %lldms max %lldms n %lld",
		           &v[0], &v[1], &v[2], &v[3], &v[4], &v[5]) != 6)
			continue;
		struct json_object *iv = json_object_new_object();
		json_object_object_add(iv, "p50_ms",
		                       json_object_new_int64(v[1]));
		json_object_object_add(iv, "p95_ms",
		                       json_object_new_int64(v[2]));
		json_object_object_add(iv, "p99_ms",
		                       json_object_new_int64(v[3]));
		json_object_object_add(iv, "max_ms",
		                       json_object_new_int64(v[4]));
		json_object_object_add(iv, "acks", json_object_new_int64(v[5]));
		/* an older accumulator's line has no commit figures */
		if (cs != NULL &&
		    sscanf(cs,
		           "; commits %lld bodies %lld max %lld commit avg "
		           "%lfms max %lldms of which COMMIT avg %lfms",
		           &nc, &nbd, &bm, &ca, &cm, &da) == 6) {
			ba = nc ? (double)nbd / (double)nc : 0;
			json_object_object_add(iv, "commits",
			                       json_object_new_int64(nc));
			json_object_object_add(iv, "bodies_per_commit_avg",
			                       json_object_new_double(ba));
			json_object_object_add(iv, "bodies_per_commit_max",
			                       json_object_new_int64(bm));
			json_object_object_add(iv, "commit_ms_avg",
			                       json_object_new_double(ca));
			json_object_object_add(iv, "commit_ms_max",
			                       json_object_new_int64(cm));
			json_object_object_add(iv, "durable_ms_avg",
			                       json_object_new_double(da));
			commits += nc;
			bodies += (double)nbd;
			cms += ca * (double)nc;
			dms += da * (double)nc;
			cmax = cm > cmax ? cm : cmax;
		}
		json_object_array_add(a, iv);
		p50 = xrealloc(p50, (n + 1) * sizeof(*p50));
		p95 = xrealloc(p95, (n + 1) * sizeof(*p95));
		p99 = xrealloc(p99, (n + 1) * sizeof(*p99));
		p50[n] = (double)v[1];
		p95[n] = (double)v[2];
		p99[n++] = (double)v[3];
		w95 = v[2] > w95 ? v[2] : w95;
		w99 = v[3] > w99 ? v[3] : w99;
		mx = v[4] > mx ? v[4] : mx;
		acks += v[5];
	}
	fclose(f);
	/* null without a stats line (an accumulator that logs none) */
	json_object_object_add(o, "p50_ms_median_interval",
	                       median_json(p50, n));
	json_object_object_add(o, "p95_ms_median_interval",
	                       median_json(p95, n));
	json_object_object_add(o, "p99_ms_median_interval",
	                       median_json(p99, n));
	json_object_object_add(o, "p95_ms_worst_interval",
	    n ? json_object_new_int64(w95) : NULL);
	json_object_object_add(o, "p99_ms_worst_interval",
	    n ? json_object_new_int64(w99) : NULL);
	json_object_object_add(o, "max_ms", n ? json_object_new_int64(mx) : NULL);
	json_object_object_add(o, "acks", json_object_new_int64(acks));
	json_object_object_add(o, "commits", json_object_new_int64(commits));
	json_object_object_add(
	    o, "bodies_per_commit_avg",
	    commits ? json_object_new_double(bodies / (double)commits) : NULL);
	json_object_object_add(
	    o, "commit_ms_avg",
	    commits ? json_object_new_double(cms / (double)commits) : NULL);
	json_object_object_add(o, "commit_ms_max",
	                       commits ? json_object_new_int64(cmax) : NULL);
	/* of commit_ms, the wait in COMMIT itself (WAL flushed) */
	json_object_object_add(
	    o, "durable_ms_avg",
	    commits ? json_object_new_double(dms / (double)commits) : NULL);
	json_object_object_add(o, "intervals", a);
	free(p50);
	free(p95);
	free(p99);
	return o;
}

/*
 * The timeline events committed since the start, counted from the rows
 * past the last probe's largest nid only: one writer commits nids in
 * order, so the probe stays cheap however many rows a long firehose
 * has written (a count from the start grew with the run and took
 * Postgres's CPU from what it measured), and only up to the committed
 * position (contract 2: every nid at or below it is committed, none
 * above it is): the rows of the batch being written are not visited by
 * every probe while they are still invisible to it (they were: 2,180
 * blocks a probe, a fifth of Postgres's statement time in run.sh's
 * firehose).
 */
struct ingest_count {
	char nid[32];
	long long n;
};

static long long
ingest_sample(struct lg *lg, struct ingest_count *ic, double t0,
              struct sample **smp, size_t *nsmp)
{
	const char *q =
	    "SELECT count(*) FILTER (WHERE is_timeline), "
	    "coalesce(max(nid), $1::bigint) FROM syncv3_events WHERE nid > $1 "
	    "AND nid <= (SELECT pos FROM syncv3_position)";
	const char *arg = ic->nid;
	PGresult *r = PQexecParams(lg->pg, q, 1, NULL, &arg, NULL, NULL, 0);

	if (PQresultStatus(r) != PGRES_TUPLES_OK || PQntuples(r) != 1)
		fatalx("%s: %s", q, PQerrorMessage(lg->pg));
	ic->n += strtoll(PQgetvalue(r, 0, 0), NULL, 10);
	snprintf(ic->nid, sizeof(ic->nid), "%s", PQgetvalue(r, 0, 1));
	PQclear(r);
	sample_add(smp, nsmp, now_s() - t0, ic->n);
	return ic->n;
}

static struct json_object *
sc_ingest(struct lg *lg)
{
	struct json_object *rooms, *o = json_object_new_object();
	struct user *u;
	int nrooms, nshared = lg->shared;
	char **room_ids, **senders, path[256], body[256];
	long long c, last = -1, expect, sent = 0, per_round;
	double t0, tlast, tsend, setup, tw, held = 0;
	int64_t w0 = sim_waiters(lg);
	struct ingest_count cnt = {0};
	int round = 0;
	struct sample *smp = NULL;
	long long *cum;
	size_t nsmp = 0, ncum;
	long log_off;

	u = make_users(lg, "ing-u", lg->users, lg->rooms, 1, 0, &rooms);
	nrooms = (int)json_object_array_length(rooms);
	room_ids = xcalloc((size_t)(nrooms + nshared), sizeof(char *));
	senders = xcalloc((size_t)(nrooms + nshared), sizeof(char *));
	for (int i = 0; i < nrooms; i++) {
		room_ids[i] = xstrdup(json_object_get_string(
		    json_object_array_get_idx(rooms, (size_t)i)));
		senders[i] = u[i / lg->rooms].user_id;
	}
	json_object_put(rooms);
	/* shared rooms: each joined by `members` of the ingest users */
	for (int s = 0; s < nshared; s++) {
		struct json_object *j;
		struct user *cr = &u[s % lg->users];

		snprintf(body, sizeof(body), "{\"creator\":\"%s\",\"name\":"
		    "\"shared %d\"}", cr->user_id, s);
		j = sim_call(lg, "rooms", body);
		room_ids[nrooms + s] = xstrdup(json_get_str(j, "room_id"));
		senders[nrooms + s] = cr->user_id;
		json_object_put(j);
		for (int m = 1; m < lg->members && m < lg->users; m++) {
			snprintf(path, sizeof(path), "rooms/%s/join",
			    room_ids[nrooms + s]);
			snprintf(body, sizeof(body), "{\"user_id\":\"%s\"}",
			    u[(s + m * 7) % lg->users].user_id);
			sim_post(lg, path, body, ignore_cb, "join", 0);
		}
		wait_pending(lg, 0);
	}
	t0 = now_s();
	register_devices(lg, u, lg->users);
	setup = wait_polling(lg, "ing-u", lg->users, w0, 300);
	log_info("ingest: %d devices polling after %.1fs", lg->users, setup);
	run_for(lg, 1.0);

	snprintf(cnt.nid, sizeof(cnt.nid), "%lld",
	         pg_count(lg,
	                  "SELECT "
	                  "coalesce(max(nid), 0) FROM syncv3_events",
	                  NULL));
	per_round = (long long)(nrooms + nshared) * lg->events;
	cpu_snap(lg, false);
	log_off = file_size(lg->acc_log);
	t0 = tlast = now_s();
	sample_add(&smp, &nsmp, 0, 0);
	/*
	 * Rounds of one batch per room until ingest_secs have passed (one
	 * round without -T). Bounded: the sends stay at most a round ahead
	 * of what is committed, so upstream's backlog, and each device's
	 * next body, stays the size of a round's share however slow the
	 * stack is, and no room passes the poller's timeline limit.
	 */
	do {
		for (int i = 0; i < nrooms + nshared; i++) {
			char *b = batch_body(
			    senders[i], lg->events,
			    ((long)round * (nrooms + nshared) + i) * 1000);

			snprintf(path, sizeof(path), "rooms/%s/send_batch",
			         room_ids[i]);
			sim_post(lg, path, b, ignore_cb, "send_batch", 0);
			free(b);
			sent += lg->events;
			wait_pending(lg, 2 * SIM_POOL);
			/* commits begin while the sends go on */
			if (now_s() - t0 - smp[nsmp - 1].el >= 0.2)
				ingest_sample(lg, &cnt, t0, &smp, &nsmp);
			tw = now_s();
			while (lg->ingest_secs > 0 &&
			       sent - smp[nsmp - 1].c > per_round) {
				run_for(lg, 0.05);
				ingest_sample(lg, &cnt, t0, &smp, &nsmp);
			}
			held += now_s() - tw;
		}
		round++;
	} while (now_s() - t0 < lg->ingest_secs);
	wait_pending(lg, 0);
	tsend = now_s() - t0;
	expect = sent;
	for (;;) {
		c = ingest_sample(lg, &cnt, t0, &smp, &nsmp);
		if (c != last) {
			tlast = now_s();
			cpu_snap(lg, true);
			last = c;
		}
		if (c >= expect || now_s() - tlast > 15)
			break;
		run_for(lg, 0.1);
	}
	log_info("ingest: %lld/%lld events in %.2fs (upstream send %.2fs, "
	         "%d rounds)",
	         last, expect, tlast - t0, tsend, round);
	json_object_object_add(o, "devices", json_object_new_int(lg->users));
	json_object_object_add(o, "rooms", json_object_new_int(nrooms + nshared));
	json_object_object_add(o, "shared_rooms", json_object_new_int(nshared));
	json_object_object_add(o, "rounds", json_object_new_int(round));
	json_object_object_add(o, "events_sent", json_object_new_int64(expect));
	json_object_object_add(o, "events_committed", json_object_new_int64(last));
	json_object_object_add(o, "secs", json_object_new_double(tlast - t0));
	json_object_object_add(o, "upstream_send_secs", json_object_new_double(tsend));
	/* of those, the sends held for commits to catch up: near all of
	 * them, the stack is what bounds the rate; near none, the sender */
	json_object_object_add(o, "upstream_held_secs",
	                       json_object_new_double(held));
	json_object_object_add(o, "events_per_s",
	    json_object_new_double((double)last / (tlast - t0)));
	json_object_object_add(o, "cpu_s_per_1000_events",
	    cpu_json(lg, (double)(last > 0 ? last : 1)));
	/* whole seconds up to the last commit, not the idle tail */
	cum = series_cum(smp, nsmp, tlast - t0, &ncum);
	if (ncum == 0) {	/* under a second: its rate stands for it */
		cum = xrealloc(cum, sizeof(*cum));
		cum[0] = tlast > t0 ? (long long)((double)last / (tlast - t0)) : 0;
		ncum = 1;
	}
	/* steady: from the second second to the last whole one of sends */
	add_rate_series(o, cum, ncum, 1, (size_t)tsend);
	free(cum);
	free(smp);
	if (lg->acc_log != NULL && log_off >= 0) {
		run_for(lg, 1.5);	/* the last interval's stats line */
		json_object_object_add(o, "ack_latency",
		    acc_latency(lg->acc_log, log_off));
	}
	return o;
}

/* --- e2e --------------------------------------------------------------- */

struct e2e {
	struct lg *lg;
	struct user *u;
	char **room_ids;
	double *acc, *recv, t_start;
	long nsent, max, ntd_recv, ntyping, ntd, npolls, nerr;
	bool is_stopping;
	struct event *tick;
};

static void e2e_poll(struct e2e *e, int i);

static void
e2e_scan(struct e2e *e, struct json_object *j, double t)
{
	struct json_object *rooms = json_get_path(j, "room_list", "rooms", NULL),
	    *td = json_get_path(j, "to_device", "events", NULL);
	size_t nr = rooms && json_object_is_type(rooms, json_type_array) ?
	    json_object_array_length(rooms) : 0;

	for (size_t r = 0; r < nr; r++) {
		struct json_object *tl = json_get_arr(
		    json_object_array_get_idx(rooms, r), "timeline");
		size_t n = tl ? json_object_array_length(tl) : 0;

		for (size_t k = 0; k < n; k++) {
			int64_t seq;

			if (json_get_int(json_get_obj(json_object_array_get_idx(
			    tl, k), "content"), "lg", &seq) && seq >= 0 &&
			    seq < e->max && e->recv[seq] == 0)
				e->recv[seq] = t;
		}
	}
	if (td != NULL && json_object_is_type(td, json_type_array))
		e->ntd_recv += (long)json_object_array_length(td);
}

static void
e2e_poll_cb(struct call *c, int code, struct json_object *j)
{
	struct e2e *e = c->arg;
	struct user *u = &e->u[c->idx];
	double t = now_s();
	const char *nb;

	u->busy = 0;
	if (code == 200 && j != NULL && (nb = json_get_str(j, "next_batch"))) {
		e2e_scan(e, j, t);
		free(u->since);
		u->since = xstrdup(nb);
		e->npolls++;
	} else
		e->nerr++;
	if (!e->is_stopping)
		e2e_poll(e, (int)c->idx);
}

static void
e2e_poll(struct e2e *e, int i)
{
	struct user *u = &e->u[i];

	u->busy = 1;
	api_sync(e->lg, u->conn, u->token, u->since, 30000, "{}", e2e_poll_cb,
	    e, i);
}

static void
e2e_sent_cb(struct call *c, int code, struct json_object *j)
{
	struct e2e *e = c->arg;

	(void)j;
	if (code == 200)
		e->acc[c->idx] = now_s();
	else
		e->nerr++;
}

static void
e2e_send(struct e2e *e)
{
	struct lg *lg = e->lg;
	long seq = e->nsent++;
	int ci = (int)(seq % lg->clients);
	int room = ci * lg->rooms + (int)((seq / lg->clients) % lg->rooms);
	char path[256], body[512];

	snprintf(path, sizeof(path), "rooms/%s/send", e->room_ids[room]);
	snprintf(body, sizeof(body), "{\"sender\":\"%s\",\"type\":"
	    "\"m.room.message\",\"content\":{\"msgtype\":\"m.text\",\"body\":"
	    "\"e2e %ld\",\"lg\":%ld}}", e->u[ci].user_id, seq, seq);
	sim_post(lg, path, body, e2e_sent_cb, e, seq);
}

/* Typing and to-device side traffic, at their own rates. */
static void
e2e_side(struct e2e *e, double el)
{
	struct lg *lg = e->lg;
	char path[256], body[512];

	while (lg->typing_rate > 0 && e->ntyping < (long)(el * lg->typing_rate)) {
		int ci = (int)rand_u32((uint32_t)lg->clients);

		snprintf(path, sizeof(path), "rooms/%s/typing",
		    e->room_ids[ci * lg->rooms]);
		snprintf(body, sizeof(body), "{\"user_ids\":[%s%s%s]}",
		    e->ntyping % 2 ? "" : "\"", e->ntyping % 2 ? "" :
		    e->u[ci].user_id, e->ntyping % 2 ? "" : "\"");
		sim_post(lg, path, body, ignore_cb, "typing", 0);
		e->ntyping++;
	}
	while (lg->td_rate > 0 && e->ntd < (long)(el * lg->td_rate)) {
		int ci = (int)rand_u32((uint32_t)lg->clients);

		snprintf(body, sizeof(body), "{\"sender\":\"@lg:localhost\","
		    "\"type\":\"m.lg\",\"content\":{\"n\":%ld},\"user_id\":"
		    "\"%s\",\"device_id\":\"%s\"}", e->ntd, e->u[ci].user_id,
		    e->u[ci].device_id);
		sim_post(lg, "to_device", body, ignore_cb, "to_device", 0);
		e->ntd++;
	}
}

static void
e2e_tick_cb(evutil_socket_t fd, short what, void *arg)
{
	struct e2e *e = arg;
	double el = now_s() - e->t_start;
	long due = (long)(el * e->lg->rate);

	(void)fd;
	(void)what;
	if (due > e->max)
		due = e->max;
	while (e->nsent < due)
		e2e_send(e);
	e2e_side(e, el);
}

static void
register_cb(struct call *c, int code, struct json_object *j)
{
	struct user *u = c->arg;
	const char *nb;

	if (code != 200 || j == NULL || (nb = json_get_str(j, "next_batch")) ==
	    NULL)
		fatalx("first sync of %s: status %d", u->user_id, code);
	free(u->since);
	u->since = xstrdup(nb);
}

/* Each user's first request (waits for its initial sync) on its own
 * connection, conc at a time. */
static void
register_api(struct lg *lg, struct user *u, int n, const char *body, int conc)
{
	for (int i = 0; i < n; i++) {
		if (u[i].conn == NULL)
			u[i].conn = conn_new(lg, true, 600);
		api_sync(lg, u[i].conn, u[i].token, NULL, 0, body, register_cb,
		    &u[i], i);
		wait_pending(lg, conc);
	}
	wait_pending(lg, 0);
}

static struct json_object *
sc_e2e(struct lg *lg)
{
	struct e2e e = {.lg = lg};
	struct json_object *rooms, *o = json_object_new_object();
	struct timeval tv = {0, 5000};
	double *lat;
	size_t nlat = 0;
	long log_off;
	int nr;
	char body[256];

	e.max = (long)(lg->rate * lg->secs) + 1;
	e.acc = xcalloc((size_t)e.max, sizeof(double));
	e.recv = xcalloc((size_t)e.max, sizeof(double));
	e.u = make_users(lg, "e2e-u", lg->clients, lg->rooms, 2, 1, &rooms);
	nr = (int)json_object_array_length(rooms);
	e.room_ids = xcalloc((size_t)nr, sizeof(char *));
	for (int i = 0; i < nr; i++)
		e.room_ids[i] = xstrdup(json_object_get_string(
		    json_object_array_get_idx(rooms, (size_t)i)));
	json_object_put(rooms);
	snprintf(body, sizeof(body), "{\"room_list\":{\"limit\":%d,"
	    "\"timeline_limit\":50},\"to_device\":{\"limit\":100}}", lg->rooms);
	register_api(lg, e.u, lg->clients, body, 32);
	for (int i = 0; i < lg->clients; i++)
		e2e_poll(&e, i);
	run_for(lg, 1.5);
	cpu_snap(lg, false);
	log_off = file_size(lg->acc_log);
	e.t_start = now_s();
	e.tick = event_new(lg->base, -1, EV_PERSIST, e2e_tick_cb, &e);
	event_add(e.tick, &tv);
	run_for(lg, (double)lg->secs);
	event_free(e.tick);
	run_for(lg, 2.0);
	cpu_snap(lg, true);
	e.is_stopping = true;
	lat = xcalloc((size_t)e.max, sizeof(double));
	long nrecv = 0;
	for (long s = 0; s < e.nsent; s++) {
		if (e.recv[s] == 0 || e.acc[s] == 0)
			continue;
		nrecv++;
		lat[nlat++] = e.recv[s] > e.acc[s] ? e.recv[s] - e.acc[s] : 0;
	}
	json_object_object_add(o, "clients", json_object_new_int(lg->clients));
	json_object_object_add(o, "rooms_per_client", json_object_new_int(lg->rooms));
	json_object_object_add(o, "rate", json_object_new_double(lg->rate));
	json_object_object_add(o, "secs", json_object_new_int(lg->secs));
	json_object_object_add(o, "events_sent", json_object_new_int64(e.nsent));
	json_object_object_add(o, "events_received", json_object_new_int64(nrecv));
	json_object_object_add(o, "typing_sent", json_object_new_int64(e.ntyping));
	json_object_object_add(o, "to_device_sent", json_object_new_int64(e.ntd));
	json_object_object_add(o, "to_device_received", json_object_new_int64(e.ntd_recv));
	json_object_object_add(o, "responses", json_object_new_int64(e.npolls));
	json_object_object_add(o, "errors", json_object_new_int64(e.nerr));
	add_pcts(o, lat, nlat);
	json_object_object_add(o, "cpu_s_per_1000_events",
	    cpu_json(lg, (double)(e.nsent > 0 ? e.nsent : 1)));
	free(lat);
	/* the accumulator's hop (body received -> acked, notices right
	 * after), to set beside the end-to-end figure (issue #13) */
	if (lg->acc_log != NULL && log_off >= 0)
		json_object_object_add(o, "ack_latency",
		                       acc_latency(lg->acc_log, log_off));
	return o;
}

/* --- first response ------------------------------------------------------ */

static struct json_object *
first_one(struct lg *lg, int size)
{
	struct json_object *rooms, *o = json_object_new_object(), *rl;
	struct user *u;
	char prefix[32], like[48];
	const char *body = "{\"room_list\":{\"limit\":20,\"timeline_limit\":1}}";
	double t0, *v = xcalloc((size_t)lg->repeats, sizeof(double));
	int64_t count = -1;
	int bad = 0;

	snprintf(prefix, sizeof(prefix), "fr%d-u", size);
	u = make_users(lg, prefix, 1, size, 2, 2, &rooms);
	json_object_put(rooms);
	t0 = now_s();
	register_api(lg, u, 1, body, 0);
	snprintf(like, sizeof(like), "@%s%%", prefix);
	while (pg_count(lg, "SELECT count(*) FROM syncv3_devices WHERE "
	    "user_id LIKE $1 AND is_initial_done", like) < 1) {
		if (now_s() - t0 > 900)
			fatalx("first: %d rooms: initial sync not stored", size);
		run_for(lg, 0.2);
	}
	log_info("first: %d rooms: initial sync stored after %.1fs", size,
	    now_s() - t0);
	json_object_object_add(o, "initial_sync_secs",
	    json_object_new_double(now_s() - t0));
	for (int i = 0; i < lg->repeats; i++) {
		struct sync_res r = {0};

		t0 = now_s();
		api_sync(lg, u->conn, u->token, NULL, 0, body, sync_res_cb, &r, 0);
		wait_res(lg, &r);
		v[i] = r.t - t0;
		rl = json_get_obj(r.j, "room_list");
		if (r.code != 200 || !json_get_int(rl, "count", &count) ||
		    count != size)
			bad++;
		json_object_put(r.j);
	}
	json_object_object_add(o, "rooms", json_object_new_int(size));
	json_object_object_add(o, "room_list_count", json_object_new_int64(count));
	json_object_object_add(o, "bad_responses", json_object_new_int(bad));
	add_pcts(o, v, (size_t)lg->repeats);
	free(v);
	return o;
}

static struct json_object *
sc_first(struct lg *lg)
{
	struct json_object *o = json_object_new_object();
	char *s = xstrdup(lg->sizes), *save = NULL;

	for (char *p = strtok_r(s, ",", &save); p; p = strtok_r(NULL, ",", &save))
		json_object_object_add(o, p, first_one(lg, atoi(p)));
	free(s);
	return o;
}

/* --- idle long-polls ------------------------------------------------------ */

struct idle {
	struct user *u;
	char **since;
	int nsess, early;
};

static void
idle_sess_cb(struct call *c, int code, struct json_object *j)
{
	struct idle *d = c->arg;
	const char *nb;

	if (code != 200 || (nb = json_get_str(j, "next_batch")) == NULL)
		fatalx("idle: session %ld: status %d", c->idx, code);
	d->since[c->idx] = xstrdup(nb);
	d->nsess++;
}

static void
idle_early_cb(struct call *c, int code, struct json_object *j)
{
	struct idle *d = c->arg;

	(void)code;
	(void)j;
	d->early++;
}

static struct json_object *
sc_idle(struct lg *lg)
{
	struct json_object *rooms, *o = json_object_new_object();
	struct idle d = {0};
	int pid = pid_of(lg, "api"), nu = (lg->conns + 99) / 100;
	struct evhttp_connection **cs, *pool[32];
	const char *body = "{\"room_list\":{\"limit\":1,\"timeline_limit\":1}}";
	long rss0, rss1;
	double t0;

	d.u = make_users(lg, "idle-u", nu, 1, 2, 1, &rooms);
	json_object_put(rooms);
	register_api(lg, d.u, nu, body, 32);
	d.since = xcalloc((size_t)lg->conns, sizeof(char *));
	cs = xcalloc((size_t)lg->conns, sizeof(*cs));
	for (int i = 0; i < 32; i++)
		pool[i] = conn_new(lg, true, 60);
	t0 = now_s();
	for (int i = 0; i < lg->conns; i++) {
		api_sync(lg, pool[i % 32], d.u[i % nu].token, NULL, 0, body,
		    idle_sess_cb, &d, i);
		wait_pending(lg, 64);
	}
	wait_pending(lg, 0);
	log_info("idle: %d sessions in %.1fs", lg->conns, now_s() - t0);
	for (int i = 0; i < 32; i++)
		evhttp_connection_free(pool[i]);
	run_for(lg, 2.0);
	rss0 = rss_kib(pid);
	for (int i = 0; i < lg->conns; i++) {
		cs[i] = conn_new(lg, true, 120);
		api_sync(lg, cs[i], d.u[i % nu].token, d.since[i], 60000, "{}",
		    idle_early_cb, &d, i);
		if (i % 200 == 199)
			run_for(lg, 0.02);
	}
	run_for(lg, 3.0 + lg->conns / 2000.0);
	rss1 = rss_kib(pid);
	log_info("idle: api rss %ld -> %ld KiB with %d long-polls (%d answered "
	    "early)", rss0, rss1, lg->conns, d.early);
	json_object_object_add(o, "long_polls", json_object_new_int(lg->conns));
	json_object_object_add(o, "answered_early", json_object_new_int(d.early));
	json_object_object_add(o, "api_rss_before_kib", json_object_new_int64(rss0));
	json_object_object_add(o, "api_rss_after_kib", json_object_new_int64(rss1));
	/* an answered poll holds nothing: the figure is per poll still held */
	json_object_object_add(o, "bytes_per_long_poll", json_object_new_double(
	    d.early < lg->conns ?
	    (double)(rss1 - rss0) * 1024.0 / (lg->conns - d.early) : 0.0));
	for (int i = 0; i < lg->conns; i++)
		evhttp_connection_free(cs[i]);
	free(cs);
	return o;
}

/* --- poller devices ------------------------------------------------------- */

static struct json_object *
sc_devices(struct lg *lg)
{
	struct json_object *rooms, *o = json_object_new_object();
	int pid = pid_of(lg, "poller");
	struct user *u;
	int64_t w0;
	long rss0, rss1;
	double secs;

	u = make_users(lg, "pol-u", lg->devices, 1, 2, 2, &rooms);
	json_object_put(rooms);
	w0 = sim_waiters(lg);
	rss0 = rss_kib(pid);
	register_devices(lg, u, lg->devices);
	secs = wait_polling(lg, "pol-u", lg->devices, w0, 600);
	run_for(lg, 3.0);
	rss1 = rss_kib(pid);
	log_info("devices: poller rss %ld -> %ld KiB with %d more devices "
	    "(all polling after %.1fs)", rss0, rss1, lg->devices, secs);
	json_object_object_add(o, "devices", json_object_new_int(lg->devices));
	json_object_object_add(o, "claim_and_initial_secs", json_object_new_double(secs));
	json_object_object_add(o, "poller_rss_before_kib", json_object_new_int64(rss0));
	json_object_object_add(o, "poller_rss_after_kib", json_object_new_int64(rss1));
	json_object_object_add(o, "bytes_per_device", json_object_new_double(
	    (double)(rss1 - rss0) * 1024.0 / lg->devices));
	return o;
}

/* --- main ----------------------------------------------------------------- */

static void usage(void) __attribute__((noreturn));

static void
usage(void)
{
	fprintf(stderr,
	        "usage: syncv3-loadgen ingest|e2e|first|idle|devices "
	        "-s simhs_url [-a api_url] [-d conninfo] [-P name=pid[,...]]\n"
	        "  ingest: -U users -R rooms -S shared -M members -E events "
	        "[-L accumulator_log] [-T firehose_secs]\n"
	        "  e2e:    -K clients -R rooms -r rate -t secs -y typing/s "
	        "-x to_device/s [-L accumulator_log]\n"
	        "  first:  -z sizes (100,1000,10000) -n repeats\n"
	        "  idle:   -K long-polls      devices: -D devices\n");
	exit(2);
}

/* -P accumulator=12,poller=13,postgres=+14 (+: add the children) */
static void
parse_pids(struct lg *lg, char *s)
{
	char *save = NULL;

	for (char *p = strtok_r(s, ",", &save); p && lg->npids < MAX_PIDS;
	    p = strtok_r(NULL, ",", &save)) {
		char *eq = strchr(p, '=');
		struct pidinfo *pi = &lg->pids[lg->npids++];

		if (eq == NULL)
			usage();
		*eq++ = '\0';
		snprintf(pi->name, sizeof(pi->name), "%s", p);
		pi->is_tree = *eq == '+';
		pi->pid = atoi(eq + pi->is_tree);
	}
}

int
main(int argc, char *argv[])
{
	struct lg lg = {.users = 200, .rooms = 5, .shared = 20, .members = 10,
	    .events = 45, .clients = 100, .secs = 20, .repeats = 50,
	    .devices = 2000, .conns = 10000, .rate = 1000, .typing_rate = 20,
	    .td_rate = 20, .sizes = "100,1000,10000"};
	const char *cmd, *sim = NULL, *api = NULL, *db = getenv("SYNCV3_DB");
	struct json_object *out;
	int ch;

	log_init("loadgen", LOG_LEVEL_INFO);
	if (argc < 2)
		usage();
	cmd = argv[1];
	argc--, argv++;
	while ((ch = getopt(argc, argv,
	                    "s:a:d:P:U:R:S:M:E:K:r:t:y:x:z:n:D:L:T:")) != -1) {
		switch (ch) {
		case 's': sim = optarg; break;
		case 'a': api = optarg; break;
		case 'd': db = optarg; break;
		case 'P': parse_pids(&lg, optarg); break;
		case 'U': lg.users = atoi(optarg); break;
		case 'R': lg.rooms = atoi(optarg); break;
		case 'S': lg.shared = atoi(optarg); break;
		case 'M': lg.members = atoi(optarg); break;
		case 'E': lg.events = atoi(optarg); break;
		case 'K': lg.clients = lg.conns = atoi(optarg); break;
		case 'r': lg.rate = atof(optarg); break;
		case 't': lg.secs = atoi(optarg); break;
		case 'y': lg.typing_rate = atof(optarg); break;
		case 'x': lg.td_rate = atof(optarg); break;
		case 'z': lg.sizes = optarg; break;
		case 'n': lg.repeats = atoi(optarg); break;
		case 'D': lg.devices = atoi(optarg); break;
		case 'L': lg.acc_log = optarg; break;
		case 'T':
			lg.ingest_secs = atoi(optarg);
			break;
		default: usage();
		}
	}
	if (sim == NULL || lg.users < 1 || lg.rooms < 1 || lg.clients < 1 ||
	    lg.events < 1 || lg.events > 50 || lg.repeats < 1 || lg.devices < 1)
		usage();
	signal(SIGPIPE, SIG_IGN);
	lg.secret = getenv("SYNCV3_SECRET");
	lg.base = event_base_new();
	split_url(sim, lg.sim_host, sizeof(lg.sim_host), &lg.sim_port);
	if (api != NULL)
		split_url(api, lg.api_host, sizeof(lg.api_host), &lg.api_port);
	for (int i = 0; i < SIM_POOL; i++)
		lg.sim[i] = conn_new(&lg, false, 300);
	if (db != NULL && (lg.pg = PQconnectdb(db)) != NULL &&
	    PQstatus(lg.pg) != CONNECTION_OK)
		fatalx("postgres: %s", PQerrorMessage(lg.pg));
	if ((strcmp(cmd, "ingest") == 0 || strcmp(cmd, "devices") == 0) &&
	    (lg.pg == NULL || lg.secret == NULL))
		fatalx("%s needs -d (or SYNCV3_DB) and SYNCV3_SECRET", cmd);
	if (strcmp(cmd, "ingest") == 0)
		out = sc_ingest(&lg);
	else if (api == NULL)
		usage();
	else if (strcmp(cmd, "e2e") == 0)
		out = sc_e2e(&lg);
	else if (strcmp(cmd, "first") == 0)
		out = sc_first(&lg);
	else if (strcmp(cmd, "idle") == 0)
		out = sc_idle(&lg);
	else if (strcmp(cmd, "devices") == 0)
		out = sc_devices(&lg);
	else
		usage();
	printf("%s\n", json_object_to_json_string_ext(out,
	    JSON_C_TO_STRING_PRETTY));
	fflush(stdout);
	json_object_put(out);
	/* connections, users and the base die with the process */
	PQfinish(lg.pg);
	return 0;
}
