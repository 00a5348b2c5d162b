/*
 * bench_poller: a stand-in accumulator for poller benchmarks and for
 * testing the poller alone. It binds a ROUTER on the ingest endpoint and
 * answers every PROTO_SYNC_RAW with a PROTO_SYNC_ACK; with -d it does the
 * real compare-and-set on syncv3_devices.since first (contract 1), so a
 * poller's since handling is checked end to end without storing bodies.
 * Every second it prints "acks/s" and totals to stdout; -o FILE logs one
 * line per message: user_id device_id since_in next_batch ok|nack.
 *
 * usage: bench_poller -i ENDPOINT [-d CONNINFO] [-o FILE] [-t SECONDS]
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <libpq-fe.h>
#include <zmq.h>

#include "log.h"
#include "proto.h"
#include "util.h"

static PGconn *pg;
static FILE *out;

static bool
cas(const struct proto_sync_raw *m, char *committed, size_t len)
{
	const char *p[4] = {m->user_id, m->device_id, m->next_batch,
	    m->since_in};
	PGresult *r;
	bool ok;

	committed[0] = '\0';
	r = PQexecParams(pg, "UPDATE syncv3_devices SET since = $3, "
	    "is_initial_done = true WHERE user_id = $1 AND device_id = $2 "
	    "AND since = $4", 4, NULL, p, NULL, NULL, 0);
	ok = PQresultStatus(r) == PGRES_COMMAND_OK &&
	    strcmp(PQcmdTuples(r), "1") == 0;
	PQclear(r);
	if (ok) {
		snprintf(committed, len, "%s", m->next_batch);
		return true;
	}
	r = PQexecParams(pg, "SELECT since FROM syncv3_devices WHERE "
	    "user_id = $1 AND device_id = $2", 2, NULL, p, NULL, NULL, 0);
	if (PQresultStatus(r) == PGRES_TUPLES_OK && PQntuples(r) == 1)
		snprintf(committed, len, "%s", PQgetvalue(r, 0, 0));
	PQclear(r);
	return false;
}

static void
handle(void *sock, unsigned long long *nacks, unsigned long long *acks,
    unsigned long long *states)
{
	struct proto_msg msg;
	struct proto_sync_raw m;
	struct proto_sync_ack a;
	char committed[1024];
	int rc;

	if ((rc = proto_recv(sock, true, &msg)) != PROTO_OK) {
		if (rc != PROTO_EIO || errno != EAGAIN)
			log_warnx("recv: %s", proto_strerror(rc));
		return;
	}
	if (msg.hdr.type == PROTO_POLL_STATE) {
		(*states)++;
		goto out;
	}
	if (proto_recv_sync_raw(&msg, &m) != PROTO_OK) {
		log_warnx("bad sync.raw");
		goto out;
	}
	memset(&a, 0, sizeof(a));
	a.user_id = m.user_id;
	a.device_id = m.device_id;
	if (pg != NULL)
		a.ok = cas(&m, committed, sizeof(committed));
	else {
		a.ok = true;
		snprintf(committed, sizeof(committed), "%s", m.next_batch);
	}
	a.since = committed;
	a.error = a.ok ? "" : "since mismatch";
	if (a.ok)
		(*acks)++;
	else
		(*nacks)++;
	if (out != NULL)
		fprintf(out, "%s %s %s %s %s\n", m.user_id, m.device_id,
		    m.since_in[0] ? m.since_in : "-", m.next_batch,
		    a.ok ? "ok" : "nack");
	zmq_msg_t *route = &msg.frames[0];
	if (proto_send_sync_ack(sock, zmq_msg_data(route), zmq_msg_size(route),
	    0, &a) != PROTO_OK)
		log_warnx("ack not sent");
out:
	proto_msg_close(&msg);
}

int
main(int argc, char **argv)
{
	const char *endpoint = NULL, *db = NULL, *outfile = NULL;
	unsigned long long acks = 0, nacks = 0, states = 0, last = 0;
	long long t0, tick, secs = 0;
	void *ctx, *sock;
	int ch;

	log_init("bench_poller", LOG_LEVEL_INFO);
	while ((ch = getopt(argc, argv, "d:i:o:t:")) != -1) {
		switch (ch) {
		case 'd': db = optarg; break;
		case 'i': endpoint = optarg; break;
		case 'o': outfile = optarg; break;
		case 't': secs = atoll(optarg); break;
		default:
			fprintf(stderr, "usage: bench_poller -i ENDPOINT "
			    "[-d CONNINFO] [-o FILE] [-t SECONDS]\n");
			return 1;
		}
	}
	if (endpoint == NULL)
		fatalx("-i ENDPOINT is required");
	if (db != NULL && PQstatus(pg = PQconnectdb(db)) != CONNECTION_OK)
		fatalx("postgres: %s", PQerrorMessage(pg));
	if (outfile != NULL && (out = fopen(outfile, "a")) == NULL)
		fatal("%s", outfile);
	if (out != NULL)
		setvbuf(out, NULL, _IOLBF, 0);
	ctx = zmq_ctx_new();
	sock = zmq_socket(ctx, ZMQ_ROUTER);
	if (zmq_bind(sock, endpoint) == -1)
		fatalx("bind %s: %s", endpoint, zmq_strerror(errno));
	t0 = tick = now_ms();
	for (;;) {
		zmq_pollitem_t it = {sock, 0, ZMQ_POLLIN, 0};

		if (zmq_poll(&it, 1, 200) > 0)
			handle(sock, &nacks, &acks, &states);
		if (now_ms() - tick >= 1000) {
			tick += 1000;
			printf("t=%llds acks/s=%llu acks=%llu nacks=%llu "
			    "states=%llu\n", (now_ms() - t0) / 1000,
			    acks - last, acks, nacks, states);
			fflush(stdout);
			last = acks;
		}
		if (secs > 0 && now_ms() - t0 >= secs * 1000)
			break;
	}
	zmq_close(sock);
	zmq_ctx_term(ctx);
	PQfinish(pg);
	return 0;
}
