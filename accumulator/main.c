/*
 * syncv3-accumulator: the single writer (DESIGN.md contracts 1-3, 6, 8).
 * Reads the config and runs the loop until SIGTERM; active.c migrates
 * the schema, waits for the writer lock as a standby and, once it holds
 * it, binds the notice PUB (notify) and the poller ROUTER (ingest).
 */
#include <signal.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <event2/event.h>
#include <zmq.h>

#include "accumulator.h"
#include "config.h"
#include "mem.h"
#include "util.h"

static const struct cfg_row acc_rows[] = {
	{"SYNCV3_DB", CFG_STR, offsetof(struct acc_config, db),
	    "dbname=syncv3", 0, 0, CFG_OPT('d'), "libpq conninfo"},
	{"SYNCV3_INGEST", CFG_STR, offsetof(struct acc_config, ingest),
	    "tcp://127.0.0.1:7701", 0, 0, CFG_OPT('i'),
	    "ROUTER endpoint for pollers"},
	{"SYNCV3_NOTICES", CFG_STR, offsetof(struct acc_config, notices),
	    "tcp://127.0.0.1:7702", 0, 0, CFG_OPT('o'),
	    "PUB endpoint for notices"},
	{"SYNCV3_LOG_LEVEL", CFG_STR, offsetof(struct acc_config, log_level),
	    "info", 0, 0, 0, "error, warn, info, debug"},
	{"SYNCV3_ACC_BATCH_MAX", CFG_INT, offsetof(struct acc_config,
	    batch_max), "64", 1, 10000, CFG_OPT('b'),
	    "messages per transaction"},
	{"SYNCV3_ACC_BATCH_BYTES", CFG_INT, offsetof(struct acc_config,
	    batch_bytes), "33554432", 1, 1LL << 34, 0, "body bytes per batch"},
	{"SYNCV3_ACC_BATCH_DELAY_MS", CFG_INT, offsetof(struct acc_config,
	    batch_delay_ms), "200", 1, 60000, 0,
	    "unused: a batch takes what queued during the last commit"},
	{"SYNCV3_ACC_CLEANUP_SECS", CFG_INT, offsetof(struct acc_config,
	    cleanup_secs), "60", 1, 86400, 0, "cleanup interval"},
	{"SYNCV3_ACC_HORIZON_SECS", CFG_INT, offsetof(struct acc_config,
	    horizon_secs), "604800", 0, 1LL << 40, 0,
	    "keep superseded state this long"},
	{"SYNCV3_ACC_STATS_SECS", CFG_INT, offsetof(struct acc_config,
	    stats_secs), "10", 1, 3600, 0,
	    "stats line (acks, ack latency p50/p95/p99/max) interval"},
	{"SYNCV3_PROM", CFG_STR, offsetof(struct acc_config, prom), "", 0, 0,
	    0, "metrics and /health listener, host:port (empty: off)"},
	{"SYNCV3_ACC_TAKEOVER_MS", CFG_INT, offsetof(struct acc_config,
	    takeover_ms), "1200", 200, 60000, 0,
	    "a standby takes over once the active one has not renewed its "
	    "liveness row for this long"},
	{"SYNCV3_ACC_WINDOW_ROOMS", CFG_INT, offsetof(struct acc_config,
	    window_rooms), "100", 0, 1000000, 0,
	    "an initial sync of more rooms commits this many most recent "
	    "ones first (0: off)"},
	{NULL, 0, 0, NULL, 0, 0, 0, NULL},
};

static void
usage(void)
{
	fprintf(stderr, "usage: syncv3-accumulator [-nv] [-b batch_max] "
	    "[-d conninfo] [-i ingest] [-o notices]\n");
	exit(2);
}

/*
 * arg: the address of main's active, so the handler can be installed
 * before active_new connects and migrates: a TERM meanwhile (docker stop
 * while starting) waits for the loop instead of killing the process.
 */
static void
stop_cb(evutil_socket_t sig, short what, void *arg)
{
	struct active **ap = arg;

	(void)what;
	log_info("signal %d: finishing the current batch", (int)sig);
	active_stop(*ap);
}

int
main(int argc, char *argv[])
{
	struct acc_config cfg = {0};
	struct event_base *base;
	struct event *ev_term, *ev_int;
	struct active *a = NULL;
	struct cfg_cli cli;
	void *zctx;
	int rc;

	log_init("accumulator", LOG_LEVEL_INFO);
	mem_init();
	if (config_load(acc_rows, &cfg) == -1)
		exit(1);
	rc = config_getopt(acc_rows, &cfg, argc, argv, &cli);
	if (rc == CFG_EUSAGE)
		usage();
	if (rc == -1)
		exit(1);
	config_log_level(cfg.log_level, &cli);
	if (config_check(acc_rows, &cfg) == -1)
		exit(1);
	/* pollers and apis take lists; each accumulator binds its own */
	if (strchr(cfg.ingest, ',') != NULL || strchr(cfg.notices, ',') != NULL)
		fatalx("SYNCV3_INGEST, SYNCV3_NOTICES: an accumulator binds "
		       "one endpoint each");
	if (cli.is_check) {
		config_print(acc_rows, &cfg, stdout);
		config_free(acc_rows, &cfg);
		return 0;
	}
	signal(SIGPIPE, SIG_IGN);
	if ((base = event_base_new()) == NULL || (zctx = zmq_ctx_new()) == NULL)
		fatalx("cannot create the event loop");
	ev_term = evsignal_new(base, SIGTERM, stop_cb, &a);
	ev_int = evsignal_new(base, SIGINT, stop_cb, &a);
	event_add(ev_term, NULL);
	event_add(ev_int, NULL);
	if ((a = active_new(base, zctx, &cfg)) == NULL)
		fatalx("store: cannot open %s", cfg.db);
	event_base_dispatch(base);
	active_free(a);
	event_free(ev_term);
	event_free(ev_int);
	zmq_ctx_term(zctx);
	event_base_free(base);
	config_free(acc_rows, &cfg);
	log_info("exiting");
	return 0;
}
