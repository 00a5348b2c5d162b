/*
 * syncv3-bench-ingest: drives the accumulator like a fleet of pollers.
 * Registers N fake devices, then sends M synthetic v2 bodies per device
 * over one DEALER (all devices in flight at once, since chained per
 * device), resending on timeout and following nacks like a poller does,
 * and counts acks and notices. With -V it then checks Postgres: every
 * event and to-device message stored exactly once and every since
 * committed. It survives accumulator restarts, so the crash test uses it.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <libpq-fe.h>
#include <zmq.h>

#include "log.h"
#include "proto.h"
#include "util.h"

struct dev {
	char user[64], device[32];
	int next;		/* message index to send (0 = initial) */
	bool inflight;
	long long sent_ms;
};

struct opts {
	const char *db, *ingest, *notices, *tag;
	int ndev, nmsg, rooms, events, resend_ms;
	bool verify;
};

static long long *lat;
static size_t nlat;
/* acks per second since the start, for the rate over time */
static long long *per_sec;
static size_t nsec;

static void
buf_add(char **b, size_t *n, size_t *cap, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static void
buf_add(char **b, size_t *n, size_t *cap, const char *fmt, ...)
{
	va_list ap;
	int k;

	for (;;) {
		va_start(ap, fmt);
		k = vsnprintf(*b + *n, *cap - *n, fmt, ap);
		va_end(ap);
		if ((size_t)k < *cap - *n)
			break;
		*cap = *cap * 2 + (size_t)k;
		*b = xrealloc(*b, *cap);
	}
	*n += (size_t)k;
}

/* Body of message k of device d: rooms x events, a topic change every
 * 20 events, typing that changes every other message, one to-device. */
static char *
make_body(const struct opts *o, int d, int k, size_t *len)
{
	size_t n = 0, cap = 4096;
	char *b = xmalloc(cap);

	buf_add(&b, &n, &cap, "{\"next_batch\":\"s%d\",\"rooms\":{\"join\":{",
	    k + 1);
	for (int r = 0; r < o->rooms; r++) {
		buf_add(&b, &n, &cap, "%s\"!d%d_r%d_%s:bench\":{", r ? "," : "",
		    d, r, o->tag);
		if (k == 0)
			buf_add(&b, &n, &cap, "\"state\":{\"events\":["
			    "{\"type\":\"m.room.create\",\"state_key\":\"\","
			    "\"sender\":\"@bench%d:bench\",\"content\":{},"
			    "\"event_id\":\"$c%d_%d_%s:bench\","
			    "\"origin_server_ts\":1},"
			    "{\"type\":\"m.room.member\",\"state_key\":"
			    "\"@bench%d:bench\",\"sender\":\"@bench%d:bench\","
			    "\"content\":{\"membership\":\"join\"},"
			    "\"event_id\":\"$m%d_%d_%s:bench\","
			    "\"origin_server_ts\":2}]},", d, d, r, o->tag, d, d, d, r,
			    o->tag);
		buf_add(&b, &n, &cap, "\"timeline\":{\"limited\":false,"
		    "\"prev_batch\":\"p%d\",\"events\":[", k);
		for (int e = 0; e < o->events; e++) {
			if (e % 20 == 19)
				buf_add(&b, &n, &cap, "%s{\"type\":\"m.room.topic\","
				    "\"state_key\":\"\",\"sender\":\"@bench%d:bench\","
				    "\"content\":{\"topic\":\"t%d\"},\"event_id\":"
				    "\"$e%d_%d_%d_%d_%s:bench\",\"origin_server_ts\":%d}",
				    e ? "," : "", d, e, d, k, r, e, o->tag,
				    k * 1000 + e);
			else
				buf_add(&b, &n, &cap, "%s{\"type\":\"m.room.message\","
				    "\"sender\":\"@bench%d:bench\",\"content\":{"
				    "\"msgtype\":\"m.text\",\"body\":\"hello %d/%d "
				    "from a benchmark that writes a realistic amount of "
				    "text\"},\"event_id\":\"$e%d_%d_%d_%d_%s:bench\","
				    "\"origin_server_ts\":%d}", e ? "," : "", d, k, e,
				    d, k, r, e, o->tag, k * 1000 + e);
		}
		buf_add(&b, &n, &cap, "]},\"ephemeral\":{\"events\":[{\"type\":"
		    "\"m.typing\",\"content\":{\"user_ids\":[%s]}}]},"
		    "\"unread_notifications\":{\"notification_count\":%d,"
		    "\"highlight_count\":0}}", k % 2 ? "\"@bench0:bench\"" : "", k);
	}
	buf_add(&b, &n, &cap, "}},\"to_device\":{\"events\":[{\"type\":"
	    "\"m.bench\",\"sender\":\"@x:bench\",\"content\":{\"d\":%d,\"k\":%d}}]}}",
	    d, k);
	*len = n;
	return b;
}

static void
send_msg(void *sock, const struct opts *o, struct dev *dv, int d)
{
	char since[16], next[16];
	struct proto_sync_raw m;
	size_t len;
	char *body = make_body(o, d, dv->next, &len);

	if (dv->next)
		snprintf(since, sizeof(since), "s%d", dv->next);
	else
		since[0] = '\0';
	snprintf(next, sizeof(next), "s%d", dv->next + 1);
	m = (struct proto_sync_raw){dv->user, dv->device, since, next,
	                            body,     len,        "",    0};
	if (proto_send_sync_raw(sock, 0, &m) != PROTO_OK)
		log_warnx("send: %s", zmq_strerror(errno));
	free(body);
	dv->inflight = true;
	dv->sent_ms = now_ms();
}

static int
setup_devices(PGconn *c, const struct opts *o, struct dev *devs)
{
	for (int d = 0; d < o->ndev; d++) {
		char hash[128];
		const char *p[3] = {devs[d].user, devs[d].device, hash};
		PGresult *r;

		snprintf(hash, sizeof(hash), "bench-%s-%s", devs[d].user,
		    devs[d].device);
		r = PQexecParams(c, "INSERT INTO syncv3_devices (user_id, "
		    "device_id, token_hash, token_enc) VALUES ($1, $2, $3, 'x') "
		    "ON CONFLICT (user_id, device_id) DO UPDATE SET since = '', "
		    "is_initial_done = false", 3, NULL, p, NULL, NULL, 0);
		if (PQresultStatus(r) != PGRES_COMMAND_OK) {
			log_warnx("setup: %s", PQerrorMessage(c));
			PQclear(r);
			return -1;
		}
		PQclear(r);
	}
	return 0;
}

static void
on_ack(const struct opts *o, struct dev *devs, struct proto_msg *msg,
    long long *acks)
{
	struct proto_sync_ack a;
	int d, k;
	struct dev *dv;
	char want[16];

	if (proto_recv_sync_ack(msg, &a) != PROTO_OK ||
	    sscanf(a.user_id, "@bench%d:", &d) != 1 || d < 0 || d >= o->ndev)
		return;
	dv = &devs[d];
	snprintf(want, sizeof(want), "s%d", dv->next + 1);
	if (!dv->inflight)
		return;
	if (strcmp(a.since, want) == 0) {
		/* ok, or a resend of what is committed */
		lat[nlat++] = now_ms() - dv->sent_ms;
		if (nsec > 0)
			per_sec[nsec - 1]++;
		dv->next++;
		(*acks)++;
	} else if (!a.ok && strcmp(a.error, "since mismatch") == 0 &&
	    sscanf(a.since, "s%d", &k) == 1 && k <= o->nmsg)
		dv->next = k;	/* reload the since, like a poller */
	else if (!a.ok && a.since[0] == '\0' &&
	    strcmp(a.error, "since mismatch") == 0)
		dv->next = 0;
	else if (!a.ok) {
		log_warnx("nack %s: %s", a.user_id, a.error);
		return;	/* resent on timeout */
	}
	dv->inflight = false;
}

static int
cmp_ll(const void *a, const void *b)
{
	long long x = *(const long long *)a, y = *(const long long *)b;

	return x < y ? -1 : x > y;
}

static long long
q1(PGconn *c, const char *sql)
{
	PGresult *r = PQexec(c, sql);
	long long v = -1;

	if (PQresultStatus(r) == PGRES_TUPLES_OK && PQntuples(r) == 1)
		v = strtoll(PQgetvalue(r, 0, 0), NULL, 10);
	else
		log_warnx("%s: %s", sql, PQerrorMessage(c));
	PQclear(r);
	return v;
}

static int
verify(PGconn *c, const struct opts *o)
{
	long long ev = (long long)o->ndev * o->nmsg * o->rooms * o->events +
	    (long long)o->ndev * o->rooms * 2;
	long long td = (long long)o->ndev * o->nmsg;
	char q[4][512];
	snprintf(q[0], sizeof(q[0]), "SELECT count(*) FROM syncv3_events "
	    "WHERE room_id LIKE '!d%%_%s:bench'", o->tag);
	snprintf(q[1], sizeof(q[1]), "SELECT count(*) FROM syncv3_to_device "
	    "WHERE user_id LIKE '@bench%%_%s:bench'", o->tag);
	snprintf(q[2], sizeof(q[2]), "SELECT count(DISTINCT json) FROM "
	    "syncv3_to_device WHERE user_id LIKE '@bench%%_%s:bench'", o->tag);
	snprintf(q[3], sizeof(q[3]), "SELECT count(*) FROM (SELECT room_id, "
	    "type, state_key FROM syncv3_state WHERE to_pos IS NULL AND "
	    "room_id LIKE '!d%%_%s:bench' GROUP BY 1, 2, 3 HAVING count(*) > "
	    "1) x", o->tag);
	long long gev = q1(c, q[0]);
	long long gtd = q1(c, q[1]);
	long long gtd1 = q1(c, q[2]);
	long long cur = q1(c, q[3]);
	long long pos = q1(c, "SELECT ((SELECT pos FROM syncv3_position) >= "
	    "(SELECT max(nid) FROM syncv3_events))::int");
	char sql[256];
	long long sinces;

	snprintf(sql, sizeof(sql), "SELECT count(*) FROM syncv3_devices WHERE "
	    "user_id LIKE '@bench%%_%s:bench' AND since = 's%d'", o->tag, o->nmsg);
	sinces = q1(c, sql);
	printf("verify: events %lld/%lld to_device %lld (distinct %lld)/%lld "
	    "sinces %lld/%d duplicate current state %lld position ok %lld\n",
	    gev, ev, gtd, gtd1, td, sinces, o->ndev, cur, pos);
	return gev == ev && gtd == td && gtd1 == td && sinces == o->ndev &&
	    cur == 0 && pos == 1 ? 0 : -1;
}

/*
 * The events rate of each whole second of the run (the last, partial
 * one left out) and their min/median/max: a mean hides steps down, such
 * as a checkpoint's.
 */
static void
print_series(const struct opts *o)
{
	size_t n = nsec > 1 ? nsec - 1 : nsec;
	long long *v = xcalloc(n + 1, sizeof(*v));
	long long per_ack = (long long)o->rooms * o->events;

	printf("rate: events/s per second:");
	for (size_t i = 0; i < n; i++) {
		v[i] = per_sec[i] * per_ack;
		printf(" %lld", v[i]);
	}
	qsort(v, n, sizeof(*v), cmp_ll);
	printf("\nrate: min %lld median %lld max %lld events/s over %zu s\n",
	       n ? v[0] : 0, n ? v[n / 2] : 0, n ? v[n - 1] : 0, n);
	free(v);
}

static void
usage(void)
{
	fprintf(stderr, "usage: syncv3-bench-ingest [-V] [-d conninfo] "
	    "[-i ingest] [-o notices] [-D devices] [-m msgs] [-r rooms] "
	    "[-e events] [-t resend_ms]\n");
	exit(2);
}

int
main(int argc, char *argv[])
{
	struct opts o = {getenv("SYNCV3_DB"), getenv("SYNCV3_INGEST"),
	    getenv("SYNCV3_NOTICES"), NULL, 50, 20, 5, 20, 3000, false};
	char tagbuf[32];
	void *zctx, *dealer, *sub;
	struct dev *devs;
	PGconn *c;
	long long acks = 0, notices = 0, rooms_n = 0, t0, t1, total;
	int ch;

	log_init("bench", LOG_LEVEL_INFO);
	snprintf(tagbuf, sizeof(tagbuf), "%lld", wall_ms() % 100000000);
	o.tag = tagbuf;
	while ((ch = getopt(argc, argv, "VT:d:i:o:D:m:r:e:t:")) != -1) {
		switch (ch) {
		case 'T': o.tag = optarg; break;
		case 'V': o.verify = true; break;
		case 'd': o.db = optarg; break;
		case 'i': o.ingest = optarg; break;
		case 'o': o.notices = optarg; break;
		case 'D': o.ndev = atoi(optarg); break;
		case 'm': o.nmsg = atoi(optarg); break;
		case 'r': o.rooms = atoi(optarg); break;
		case 'e': o.events = atoi(optarg); break;
		case 't': o.resend_ms = atoi(optarg); break;
		default: usage();
		}
	}
	if (o.db == NULL || o.ingest == NULL || o.ndev <= 0 || o.nmsg <= 0)
		usage();
	if ((c = PQconnectdb(o.db)) == NULL || PQstatus(c) != CONNECTION_OK)
		fatalx("postgres: %s", PQerrorMessage(c));
	devs = xcalloc((size_t)o.ndev, sizeof(*devs));
	lat = xcalloc((size_t)o.ndev * (size_t)o.nmsg + 1, sizeof(*lat));
	for (int d = 0; d < o.ndev; d++) {
		snprintf(devs[d].user, sizeof(devs[d].user), "@bench%d_%s:bench", d,
		    o.tag);
		snprintf(devs[d].device, sizeof(devs[d].device), "DEV%d", d);
	}
	if (setup_devices(c, &o, devs) == -1)
		return 1;
	zctx = zmq_ctx_new();
	dealer = zmq_socket(zctx, ZMQ_DEALER);
	if (zmq_connect(dealer, o.ingest) == -1)
		fatalx("connect %s: %s", o.ingest, zmq_strerror(errno));
	sub = zmq_socket(zctx, ZMQ_SUB);
	if (o.notices != NULL && zmq_connect(sub, o.notices) == 0)
		zmq_setsockopt(sub, ZMQ_SUBSCRIBE, "", 0);
	usleep(200000);
	t0 = now_ms();
	total = (long long)o.ndev * o.nmsg;
	while (acks < total) {
		zmq_pollitem_t items[2] = {{dealer, 0, ZMQ_POLLIN, 0},
		    {sub, 0, ZMQ_POLLIN, 0}};
		struct proto_msg msg;

		while ((long long)nsec <= (now_ms() - t0) / 1000) {
			per_sec =
			    xrealloc(per_sec, (nsec + 1) * sizeof(*per_sec));
			per_sec[nsec++] = 0;
		}

		for (int d = 0; d < o.ndev; d++) {
			struct dev *dv = &devs[d];
			if (dv->next < o.nmsg && (!dv->inflight ||
			    now_ms() - dv->sent_ms > o.resend_ms))
				send_msg(dealer, &o, dv, d);
		}
		if (zmq_poll(items, 2, 50) <= 0)
			continue;
		while (proto_recv(dealer, false, &msg) != PROTO_EIO) {
			on_ack(&o, devs, &msg, &acks);
			proto_msg_close(&msg);
		}
		while (proto_recv(sub, false, &msg) != PROTO_EIO) {
			notices++;
			if (msg.hdr.type == PROTO_NOTICE_ROOM)
				rooms_n++;
			proto_msg_close(&msg);
		}
	}
	t1 = now_ms();
	qsort(lat, nlat, sizeof(*lat), cmp_ll);
	{
		double secs = (double)(t1 - t0) / 1000.0;
		long long ev = total * o.rooms * o.events;
		printf("ingest: %d devices x %d msgs x %d rooms x %d events: "
		    "%lld timeline events in %.2fs = %.0f events/s, %.0f msgs/s; "
		    "ack latency p50 %lldms p95 %lldms p99 %lldms max %lldms; "
		    "notices %lld (room %lld)\n", o.ndev, o.nmsg, o.rooms,
		    o.events, ev, secs, (double)ev / secs, (double)total / secs,
		    nlat ? lat[nlat / 2] : 0, nlat ? lat[nlat * 95 / 100] : 0,
		    nlat ? lat[nlat * 99 / 100] : 0, nlat ? lat[nlat - 1] : 0,
		    notices, rooms_n);
		print_series(&o);
	}
	int rc = o.verify ? verify(c, &o) : 0;
	zmq_close(dealer);
	zmq_close(sub);
	zmq_ctx_term(zctx);
	PQfinish(c);
	free(devs);
	free(lat);
	free(per_sec);
	return rc == 0 ? 0 : 1;
}
