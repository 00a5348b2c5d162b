/*
 * bench_api: the api under many long polls. Run it through
 *
 *     tests/bench/bench_api.sh            (after cmake --build build)
 *
 * which starts a private stack, prepares the sessions and calls this
 * program. One libevent loop, one evhttp connection per request:
 *  1. opens N long polls (since IDLE: typing of a room that never changes)
 *     and waits until the api reports N waiters, then reads the api's RSS
 *     from /proc/PID/status;
 *  2. K times: a long poll on the typing of another room (since LAT), and
 *     ~30 ms later a typing change upstream (simhs admin API); the time
 *     from sending the change to receiving the woken response is one
 *     sample (p50/p99 printed). With -u and -d the change is a to-device
 *     message upstream to that device instead (LAT is then a session on
 *     to_device), and the figures are named to_device_*;
 *  3. checks the N idle long polls are all still waiting (none was woken
 *     by the other room's typing).
 * Prints one JSON object.
 *
 * usage: bench_api -a API_URL -s SIMHS_URL -t TOKEN -i SINCE_IDLE
 *          -l SINCE_LAT -r ROOM_LAT -p API_PID [-n N] [-k K]
 *          [-u USER_ID -d DEVICE_ID]
 */
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

#include "json_util.h"

struct bench {
	struct event_base *base;
	struct evhttp_uri *api, *sim;
	const char *token, *since_idle, *room_lat;
	const char *td_user, *td_device; /* set: the change is a to-device */
	char since_lat[256];
	int pid, n, k;
	int opened, failed, idle_done;
	int nlat, typing_i;
	double *lat;
	double t_change;
	double t_round; /* when the latency request of this round was sent */
	int early;      /* answered before its change was sent: not counted */
	struct event *timer;
	int phase;
	int health_waiters;
	long rss_kb;
	struct evhttp_connection **conns; /* all opened, freed at exit */
	int nconns, capconns;
};

static double
now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static struct evhttp_connection *
conn(struct bench *b, struct evhttp_uri *u)
{
	struct evhttp_connection *c =
	    evhttp_connection_base_new(b->base, NULL, evhttp_uri_get_host(u),
	                               (unsigned short)evhttp_uri_get_port(u));

	evhttp_connection_set_timeout(c, 600);
	if (b->nconns == b->capconns) {
		b->capconns = b->capconns ? 2 * b->capconns : 1024;
		b->conns =
		    realloc(b->conns, sizeof(*b->conns) * (size_t)b->capconns);
		if (b->conns == NULL) {
			perror("bench_api");
			exit(1);
		}
	}
	b->conns[b->nconns++] = c;
	return c;
}

static void
sync_req(struct bench *b, const char *since, int timeout_ms,
         void (*cb)(struct evhttp_request *, void *))
{
	struct evhttp_connection *c = conn(b, b->api);
	struct evhttp_request *req = evhttp_request_new(cb, b);
	struct evkeyvalq *h = evhttp_request_get_output_headers(req);
	char path[512], auth[512];

	snprintf(path, sizeof(path),
	         "/_matrix/client/v3/sync?timeout=%d&"
	         "since=%s",
	         timeout_ms, since);
	snprintf(auth, sizeof(auth), "Bearer %s", b->token);
	evhttp_add_header(h, "Host", "localhost");
	evhttp_add_header(h, "Authorization", auth);
	evbuffer_add(evhttp_request_get_output_buffer(req), "{}", 2);
	evhttp_make_request(c, req, EVHTTP_REQ_POST, path);
}

static void
idle_cb(struct evhttp_request *req, void *arg)
{
	struct bench *b = arg;

	/* an idle long poll must not come back during the benchmark */
	b->idle_done++;
	if (req == NULL || evhttp_request_get_response_code(req) != 200)
		b->failed++;
}

static void health_get(struct bench *b);
static void change_cb(struct evhttp_request *req, void *arg);
static void lat_round(struct bench *b);

static void
read_rss(struct bench *b)
{
	char path[64], line[256];
	FILE *f;

	snprintf(path, sizeof(path), "/proc/%d/status", b->pid);
	if ((f = fopen(path, "r")) == NULL)
		return;
	while (fgets(line, sizeof(line), f) != NULL)
		if (strncmp(line, "VmRSS:", 6) == 0)
			b->rss_kb = strtol(line + 6, NULL, 10);
	fclose(f);
}

/*
 * The response body as JSON, NULL if none or not JSON. The input buffer
 * is not NUL-terminated, so it is parsed by its length: json_tokener_parse
 * on evbuffer_pullup ran strlen past the end of the heap block (ASan: a
 * heap-buffer-overflow read in health_cb).
 */
static struct json_object *
body_json(struct evhttp_request *req)
{
	struct evbuffer *in = evhttp_request_get_input_buffer(req);
	size_t len = evbuffer_get_length(in);

	if (len == 0)
		return NULL;
	return json_parse_bounded((const char *)evbuffer_pullup(in, -1), len,
	                          NULL);
}

static void
health_cb(struct evhttp_request *req, void *arg)
{
	struct bench *b = arg;
	struct json_object *o = NULL, *w;

	if (req != NULL && evhttp_request_get_response_code(req) == 200)
		o = body_json(req);
	if (o != NULL && json_object_object_get_ex(o, "waiters", &w))
		b->health_waiters = json_object_get_int(w);
	if (b->phase == 0 && b->health_waiters >= b->n) {
		read_rss(b);
		fprintf(stderr,
		        "bench_api: %d long polls waiting, api rss "
		        "%ld kB\n",
		        b->health_waiters, b->rss_kb);
		b->phase = 1;
		lat_round(b);
	} else if (b->phase == 0) {
		struct timeval tv = {0, 200000};
		event_add(b->timer, &tv);
	} else if (b->phase == 2) {
		printf("{\"long_polls\":%d,\"failed\":%d,\"api_rss_kb\":%ld,"
		       "\"api_rss_kb_per_poll\":%.2f,\"waiters_after\":%d,"
		       "\"idle_returned\":%d",
		       b->n, b->failed, b->rss_kb, (double)b->rss_kb / b->n,
		       b->health_waiters, b->idle_done);
		if (o != NULL) {
			json_object_object_foreach(
			    o, key, v) if (strncmp(key, "wake_lat", 8) == 0)
			    printf(",\"api_%s\":%s", key,
			           json_object_to_json_string(v));
		}
		b->phase = 3;
		event_base_loopbreak(b->base);
	}
	json_object_put(o);
}

static void
health_get(struct bench *b)
{
	struct evhttp_connection *c = conn(b, b->api);
	struct evhttp_request *req = evhttp_request_new(health_cb, b);

	evhttp_add_header(evhttp_request_get_output_headers(req), "Host",
	                  "localhost");
	evhttp_make_request(c, req, EVHTTP_REQ_GET, "/health");
}

static void
timer_cb(evutil_socket_t fd, short what, void *arg)
{
	struct bench *b = arg;
	struct evhttp_connection *c;
	struct evhttp_request *req;
	char path[512], body[256];

	(void)fd;
	(void)what;
	if (b->phase == 0) {
		health_get(b);
		return;
	}
	/* phase 1: the change upstream, typing or a to-device message */
	c = conn(b, b->sim);
	req = evhttp_request_new(change_cb, NULL);
	if (b->td_device != NULL) {
		snprintf(path, sizeof(path), "/_simhs/to_device");
		snprintf(body, sizeof(body),
		         "{\"sender\":\"@bob:localhost\","
		         "\"type\":\"m.bench\",\"content\":{\"n\":%d},"
		         "\"user_id\":\"%s\",\"device_id\":\"%s\"}",
		         b->typing_i++, b->td_user, b->td_device);
	} else {
		snprintf(path, sizeof(path), "/_simhs/rooms/%s/typing",
		         b->room_lat);
		snprintf(body, sizeof(body),
		         "{\"user_id\":\"@bob:localhost\","
		         "\"user_ids\":[%s]}",
		         b->typing_i++ % 2 ? "" : "\"@bob:localhost\"");
	}
	evhttp_add_header(evhttp_request_get_output_headers(req), "Host",
	                  "localhost");
	evbuffer_add(evhttp_request_get_output_buffer(req), body, strlen(body));
	b->t_change = now_s();
	evhttp_make_request(c, req, EVHTTP_REQ_POST, path);
}

static void
change_cb(struct evhttp_request *req, void *arg)
{
	(void)req;
	(void)arg;
}

static int
dcmp(const void *x, const void *y)
{
	double a = *(const double *)x, c = *(const double *)y;

	return a < c ? -1 : a > c;
}

static void
lat_cb(struct evhttp_request *req, void *arg)
{
	struct bench *b = arg;
	double t = now_s();
	struct json_object *o = NULL, *nb;

	if (req == NULL || evhttp_request_get_response_code(req) != 200) {
		b->failed++;
		fprintf(stderr, "bench_api: latency request failed\n");
		event_base_loopbreak(b->base);
		return;
	}
	o = body_json(req);
	if (o != NULL && json_object_object_get_ex(o, "next_batch", &nb))
		snprintf(b->since_lat, sizeof(b->since_lat), "%s",
		         json_object_get_string(nb));
	json_object_put(o);
	if (b->t_change < b->t_round) {
		/* woken by something older (a resync under load): again */
		event_del(b->timer);
		b->early++;
		lat_round(b);
		return;
	}
	b->lat[b->nlat++] = (t - b->t_change) * 1000.0;
	/* BENCH_SAMPLES=1: each sample on stderr, to find the slow ones */
	if (getenv("BENCH_SAMPLES") != NULL) {
		struct timespec wall;

		clock_gettime(CLOCK_REALTIME, &wall);
		fprintf(stderr,
		        "bench_api: sample %d %.2f ms, answered at %lld.%03ld, "
		        "next_batch %s\n",
		        b->nlat, b->lat[b->nlat - 1], (long long)wall.tv_sec,
		        wall.tv_nsec / 1000000, b->since_lat);
	}
	if (b->nlat < b->k) {
		lat_round(b);
		return;
	}
	qsort(b->lat, (size_t)b->nlat, sizeof(double), dcmp);
	b->phase = 2;
	health_get(b);
}

static void
lat_round(struct bench *b)
{
	struct timeval tv = {0, 30000};

	b->t_round = now_s();
	sync_req(b, b->since_lat, 30000, lat_cb);
	event_add(b->timer, &tv);
}

int
main(int argc, char *argv[])
{
	struct bench b;
	const char *api = NULL, *sim = NULL;
	int ch;

	memset(&b, 0, sizeof(b));
	b.n = 10000;
	b.k = 200;
	while ((ch = getopt(argc, argv, "a:s:t:i:l:r:p:n:k:u:d:")) != -1) {
		switch (ch) {
		case 'a':
			api = optarg;
			break;
		case 's':
			sim = optarg;
			break;
		case 't':
			b.token = optarg;
			break;
		case 'i':
			b.since_idle = optarg;
			break;
		case 'l':
			snprintf(b.since_lat, sizeof(b.since_lat), "%s",
			         optarg);
			break;
		case 'r':
			b.room_lat = optarg;
			break;
		case 'p':
			b.pid = atoi(optarg);
			break;
		case 'n':
			b.n = atoi(optarg);
			break;
		case 'k':
			b.k = atoi(optarg);
			break;
		case 'u':
			b.td_user = optarg;
			break;
		case 'd':
			b.td_device = optarg;
			break;
		default:
			fprintf(stderr, "see the comment at the top\n");
			return 2;
		}
	}
	if (api == NULL || sim == NULL || b.token == NULL ||
	    b.since_idle == NULL || b.since_lat[0] == '\0' ||
	    b.room_lat == NULL || b.pid == 0 || b.k < 1 ||
	    (b.td_user == NULL) != (b.td_device == NULL))
		return fprintf(stderr, "missing arguments\n"), 2;
	b.base = event_base_new();
	b.api = evhttp_uri_parse(api);
	b.sim = evhttp_uri_parse(sim);
	b.lat = calloc((size_t)b.k, sizeof(double));
	b.timer = evtimer_new(b.base, timer_cb, &b);
	for (int i = 0; i < b.n; i++)
		sync_req(&b, b.since_idle, 600000, idle_cb);
	health_get(&b);
	event_base_dispatch(b.base);
	if (b.phase == 3) {
		const char *kind = b.td_device != NULL ? "to_device" : "typing";

		printf(",\"latency_samples\":%d,\"latency_early\":%d,"
		       "\"%s_to_response_p50_ms\":%.2f,"
		       "\"%s_to_response_p99_ms\":%.2f,"
		       "\"%s_to_response_max_ms\":%.2f}\n",
		       b.nlat, b.early, kind, b.lat[b.nlat / 2], kind,
		       b.lat[(int)((b.nlat - 1) * 0.99 + 0.5)], kind,
		       b.lat[b.nlat - 1]);
	}
	/* the idle long polls are still open: their requests go with them */
	for (int i = 0; i < b.nconns; i++)
		evhttp_connection_free(b.conns[i]);
	free(b.conns);
	event_free(b.timer);
	evhttp_uri_free(b.api);
	evhttp_uri_free(b.sim);
	event_base_free(b.base);
	free(b.lat);
	return b.phase == 3 && b.failed == 0 ? 0 : 1;
}
