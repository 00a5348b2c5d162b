/*
 * syncv3-poller: long-polls the homeserver's v2 /sync for many devices at
 * once and hands every response to the accumulator (DESIGN.md contracts 1
 * and 4). main.c reads the configuration, wires the modules to one
 * libevent loop and handles signals.
 */
#include <sys/resource.h>

#include <signal.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <event2/event.h>

#include "config.h"
#include "curl_ev.h"
#include "log.h"
#include "mem.h"
#include "poller.h"
#include "proto.h"
#include "util.h"

#define OFF(f) offsetof(struct poller_config, f)

static const struct cfg_row poller_cfg_rows[] = {
    {"SYNCV3_DB", CFG_STR, OFF(db), "dbname=syncv3", 0, 0, CFG_OPT('d'),
     "libpq conninfo"},
    {"SYNCV3_SERVER", CFG_STR, OFF(server), NULL, 0, 0,
     CFG_REQUIRED | CFG_OPT('s'), "homeserver base URL"},
    {"SYNCV3_SECRET", CFG_STR, OFF(secret), NULL, 0, 0,
     CFG_REQUIRED | CFG_SECRET, "key for access tokens at rest"},
    {"SYNCV3_INGEST", CFG_STR, OFF(ingest), "tcp://127.0.0.1:7701", 0, 0,
     CFG_OPT('i'), "accumulator endpoints, comma-separated (a standby too)"},
    {"SYNCV3_POLLER_ID", CFG_STR, OFF(poller_id), NULL, 0, 0, CFG_OPT('I'),
     "lease owner name, stable across restarts (default "
     "hostname:syncv3-poller)"},
    {"SYNCV3_LOG_LEVEL", CFG_STR, OFF(log_level), "info", 0, 0, 0,
     "error, warn, info, debug"},
    {"SYNCV3_LEASE_SECS", CFG_INT, OFF(lease_secs), "30", 3, 3600, 0,
     "device lease"},
    {"SYNCV3_TAKEOVER_MS", CFG_INT, OFF(takeover_ms), "1200", 400, 600000, 0,
     "a dead poller's devices are taken over after this"},
    {"SYNCV3_POLL_TIMEOUT_MS", CFG_INT, OFF(poll_timeout_ms), "30000", 0,
     600000, 0, "v2 long-poll timeout"},
    {"SYNCV3_INITIAL_TIMEOUT_SECS", CFG_INT, OFF(initial_timeout_s), "1800", 10,
     86400, 0, "request timeout of an initial sync"},
    {"SYNCV3_MAX_INITIAL", CFG_INT, OFF(max_initial), "8", 1, 10000, 0,
     "concurrent initial syncs"},
    {"SYNCV3_BACKOFF_BASE_MS", CFG_INT, OFF(backoff_base_ms), "1000", 10,
     600000, 0, "first backoff"},
    {"SYNCV3_BACKOFF_CAP_MS", CFG_INT, OFF(backoff_cap_ms), "60000", 10,
     3600000, 0, "longest backoff"},
    {"SYNCV3_IDLE_SECS", CFG_INT, OFF(idle_secs), "604800", 1, 100000000, 0,
     "stop polling devices unused this long"},
    {"SYNCV3_MAX_BODY", CFG_INT, OFF(max_body), "268435456", 65536,
     (long long)PROTO_PAYLOAD_MAX, 0, "largest v2 response"},
    {"SYNCV3_MAX_DEVICES", CFG_INT, OFF(max_devices), "0", 0, 10000000, 0,
     "devices per poller (0: fair share only)"},
    {"SYNCV3_ACK_TIMEOUT_MS", CFG_INT, OFF(ack_timeout_ms), "5000", 100, 600000,
     0, "resend to the accumulator after"},
    {"SYNCV3_LOW_SPEED_LIMIT", CFG_INT, OFF(low_speed_limit), "1024", 0,
     1000000000, 0,
     "abandon a response slower than this, bytes/s "
     "(0: never)"},
    {"SYNCV3_LOW_SPEED_SECS", CFG_INT, OFF(low_speed_secs), "30", 1, 3600, 0,
     "... over this long, once it has begun"},
    {"SYNCV3_PROM", CFG_STR, OFF(prom), "", 0, 0, 0,
     "metrics and /health listener, host:port (empty: off)"},
    {"SYNCV3_SIBLING_WAIT_MS", CFG_INT, OFF(sibling_wait_ms), "10000", 0,
     3600000, 0,
     "a new device of a stored user first syncs without rooms and waits "
     "this long for a sibling to catch up (0: always a full initial sync)"},
    {"SYNCV3_FIRST_TIMELINE_LIMIT", CFG_INT, OFF(first_timeline), "1", 1, 1000,
     0,
     "timeline events per room of a device's first sync without a sibling "
     "(the rest of the history is paged from upstream)"},
    {NULL, 0, 0, NULL, 0, 0, 0, NULL},
};

static void
usage(void)
{
	fprintf(stderr, "usage: syncv3-poller [-nv] [-d conninfo] "
	                "[-s server] [-i ingest] [-I poller_id]\n");
	exit(1);
}

static void
stop_cb(evutil_socket_t sig, short what, void *arg)
{
	struct poller *p = arg;

	(void)what;
	if (p->is_stopping)
		return;
	log_info("signal %d: releasing %zu devices", (int)sig, p->ndevices);
	p->is_stopping = true;
	lease_flush(p);
	device_shutdown(p);
	lease_shutdown(p);
	event_base_loopexit(p->base, NULL);
}

static void
stats_cb(evutil_socket_t fd, short what, void *arg)
{
	struct poller *p = arg;

	(void)fd;
	(void)what;
	log_info("stats: devices %zu, in flight %d, polls ok %llu, failed "
	         "%llu, nacks %llu, resends %llu",
	         p->ndevices, curl_ev_running(p->curl), p->stats.polls_ok,
	         p->stats.polls_failed, p->stats.nacks, p->stats.resends);
}

static void
raise_nofile(void)
{
	struct rlimit rl;

	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
		rl.rlim_cur = rl.rlim_max;
		if (setrlimit(RLIMIT_NOFILE, &rl) == -1)
			log_warn("setrlimit");
	}
}

/*
 * Steps 1-2 of the daemon's life: the environment, then flags over it,
 * then what the table cannot say (a default poller id: the host name and
 * the service, the same on every restart so a restarted poller takes its
 * own devices back at once, issue #15; the server URL
 * without trailing slashes, the backoff cap above its base); -n prints the
 * result and exits.
 */
static void
config(struct poller *p, int argc, char **argv)
{
	struct cfg_cli cli;
	int rc;

	if (config_load(poller_cfg_rows, &p->cfg) == -1)
		exit(1);
	rc = config_getopt(poller_cfg_rows, &p->cfg, argc, argv, &cli);
	if (rc == CFG_EUSAGE)
		usage();
	if (rc == -1)
		exit(1);
	config_log_level(p->cfg.log_level, &cli);
	if (p->cfg.poller_id == NULL || p->cfg.poller_id[0] == '\0') {
		char host[256] = "localhost", id[300];

		gethostname(host, sizeof(host) - 1);
		snprintf(id, sizeof(id), "%s:syncv3-poller", host);
		if (config_set(poller_cfg_rows, &p->cfg, "SYNCV3_POLLER_ID",
		               id) == -1)
			exit(1);
	}
	if (p->cfg.server != NULL) {
		size_t n = strlen(p->cfg.server);

		while (n > 0 && p->cfg.server[n - 1] == '/')
			p->cfg.server[--n] = '\0';
	}
	if (config_check(poller_cfg_rows, &p->cfg) == -1)
		exit(1);
	if (p->cfg.backoff_cap_ms < p->cfg.backoff_base_ms)
		fatalx("SYNCV3_BACKOFF_CAP_MS is below SYNCV3_BACKOFF_BASE_MS");
	if (cli.is_check) {
		config_print(poller_cfg_rows, &p->cfg, stdout);
		exit(0);
	}
}

int
main(int argc, char **argv)
{
	struct poller *p = xcalloc(1, sizeof(*p));
	struct event *sigterm, *sigint;
	struct timeval tv = {60, 0};

	log_init("poller", LOG_LEVEL_INFO);
	mem_init();
	config(p, argc, argv);
	p->first_filter = policy_first_filter(p->cfg.first_timeline);
	raise_nofile();
	if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK)
		fatalx("curl_global_init failed");
	if ((p->base = event_base_new()) == NULL)
		fatalx("event_base_new failed");
	p->curl = curl_ev_new(p->base);
	prom_init(p);
	device_init(p);
	publish_init(p, device_ack_received, device_resend_pending);
	lease_init(p);
	log_info("poller %s: polling %s, ingest %s", p->cfg.poller_id,
	         p->cfg.server, p->cfg.ingest);

	sigterm = evsignal_new(p->base, SIGTERM, stop_cb, p);
	sigint = evsignal_new(p->base, SIGINT, stop_cb, p);
	signal(SIGPIPE, SIG_IGN);
	evsignal_add(sigterm, NULL);
	evsignal_add(sigint, NULL);
	p->stats_ev = event_new(p->base, -1, EV_PERSIST, stats_cb, p);
	event_add(p->stats_ev, &tv);

	event_base_dispatch(p->base);

	if (!p->is_stopping) {
		device_shutdown(p);
		lease_shutdown(p);
	}
	publish_shutdown(p);
	event_free(sigterm);
	event_free(sigint);
	event_free(p->stats_ev);
	curl_ev_free(p->curl);
	prom_shutdown(p);
	event_base_free(p->base);
	curl_global_cleanup();
	config_free(poller_cfg_rows, &p->cfg);
	free(p->first_filter);
	free(p);
	log_info("stopped");
	return 0;
}
