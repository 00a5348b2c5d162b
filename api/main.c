/*
 * syncv3-api: answers v3 /sync for clients. Startup connects to Postgres
 * (blocking, before the loop runs), waits for the schema, reads the current
 * position, then serves from one libevent loop: evhttp, the async pg pool,
 * curl for /whoami and the notice SUB socket.
 */
#include <signal.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <curl/curl.h>
#include <zmq.h>

#include "api.h"
#include "ss.h"
#include "config.h"
#include "curl_ev.h"
#include "pg.h"
#include "util.h"

#define C(f) offsetof(struct api_config, f)
static const struct cfg_row api_cfg_rows[] = {
	{"SYNCV3_DB", CFG_STR, C(db), "dbname=syncv3", 0, 0, CFG_OPT('d'),
	    "libpq conninfo"},
	{"SYNCV3_SERVER", CFG_STR, C(server), NULL, 0, 0,
	    CFG_REQUIRED | CFG_OPT('s'),
	    "upstream homeserver base URL"},
	{"SYNCV3_SECRET", CFG_STR, C(secret), NULL, 0, 0,
	    CFG_REQUIRED | CFG_SECRET, "key for tokens at rest and since MACs"},
	{"SYNCV3_BINDADDR", CFG_STR, C(bindaddr), "0.0.0.0:8008", 0, 0,
	    CFG_OPT('b'),
	    "HTTP listen address"},
	{"SYNCV3_DB_READ", CFG_STR, C(db_read), "", 0, 0, 0,
	    "libpq conninfo of a streaming replica for reads (empty: none)"},
	{"SYNCV3_DB_READ_WAIT_MS", CFG_INT, C(db_read_wait_ms), "100", 0,
	    60000, 0, "a read waits this long for the replica to replay the "
	    "last notice's commit, then runs on the primary"},
	{"SYNCV3_NOTICES", CFG_STR, C(notices), "tcp://127.0.0.1:7702", 0, 0,
	    CFG_OPT('z'), "accumulator notice endpoints, comma-separated (SUB "
	    "connects to each: a standby too)"},
	{"SYNCV3_LOG_LEVEL", CFG_STR, C(log_level), "info", 0, 0, 0,
	    "error, warn, info, debug"},
	{"SYNCV3_API_MAX_TIMEOUT_MS", CFG_INT, C(max_timeout_ms), "60000", 0,
	    3600000, 0, "cap on ?timeout="},
	{"SYNCV3_API_SESSION_IDLE_SECS", CFG_INT, C(session_idle_s), "1800",
	    1, 30LL * 86400, 0, "idle sessions expire after this"},
	{"SYNCV3_API_MAX_BODY", CFG_INT, C(max_body), "1048576", 1024,
	    64LL << 20, 0, "largest request body (413 above)"},
	{"SYNCV3_API_WHOAMI_TTL_SECS", CFG_INT, C(whoami_ttl_s), "300", 1,
	    86400, 0, "how long a verified token is trusted from memory"},
	{"SYNCV3_API_WHOAMI_NEG_SECS", CFG_INT, C(whoami_neg_s), "60", 0, 3600,
	    0, "how long a rejected token is remembered"},
	{"SYNCV3_API_DB_POOL", CFG_INT, C(pool_size), "8", 1, 256, 0,
	    "Postgres connections"},
	{"SYNCV3_API_MAX_WAITERS", CFG_INT, C(max_waiters), "50000", 1,
	    10000000, 0, "concurrent long-polls (429 above)"},
	{"SYNCV3_API_INITIAL_WAIT_MS", CFG_INT, C(initial_wait_ms), "60000", 0,
	    3600000, 0, "how long a new device's first request waits for its "
	    "initial sync"},
	{"SYNCV3_API_SILENCE_MS", CFG_INT, C(silence_ms), "2000", 100, 60000,
	    0, "re-read positions after this long without notices"},
	{"SYNCV3_API_DB_TIMEOUT_MS", CFG_INT, C(db_timeout_ms), "5000", 100,
	    600000, 0, "deadline of a Postgres statement, queueing included "
	    "(503 after)"},
	{"SYNCV3_API_DB_QUEUE_MAX", CFG_INT, C(db_queue_max), "10000", 1,
	    10000000, 0, "statements waiting for a connection (503 above)"},
	{"SYNCV3_API_SESSIONS_PER_DEVICE", CFG_INT, C(sessions_per_device),
	    "20", 1, 100000, 0, "sessions kept per device; a new one expires "
	    "the least recently used"},
	{"SYNCV3_API_WHOAMI_RATE", CFG_INT, C(whoami_rate), "100", 1, 1000000,
	    0, "upstream /whoami calls per second for unknown tokens (429 "
	    "above)"},
	{"SYNCV3_API_WHOAMI_BURST", CFG_INT, C(whoami_burst), "500", 1,
	    10000000, 0, "upstream /whoami calls allowed at once"},
	{"SYNCV3_API_WHOAMI_PEER_RATE", CFG_INT, C(whoami_peer_rate), "20", 1,
	    1000000, 0, "the same, per client address"},
	{"SYNCV3_API_WHOAMI_PEER_BURST", CFG_INT, C(whoami_peer_burst), "100",
	    1, 10000000, 0, "the same, per client address"},
	{"SYNCV3_API_TOKENS_MAX", CFG_INT, C(tokens_max), "100000", 100,
	    100000000, 0, "tokens remembered (verified and rejected); the "
	    "least recently used go first"},
	{"SYNCV3_PROXY_PREFIXES", CFG_STR, C(proxy_prefixes),
	    "/_matrix/,/.well-known/matrix/,/_synapse/client/", 0, 0, 0,
	    "path prefixes passed through to SYNCV3_SERVER (comma-separated)"},
	{"SYNCV3_PROXY_MAX_CONCURRENT", CFG_INT, C(proxy_max_concurrent),
	    "256", 1, 100000, 0, "pass-through requests upstream at once"},
	{"SYNCV3_PROXY_MAX_QUEUE", CFG_INT, C(proxy_max_queue), "4096", 0,
	    1000000, 0, "pass-through requests waiting for a slot (503 above)"},
	{"SYNCV3_PROXY_MAX_UPLOAD", CFG_INT, C(proxy_max_upload), "52428800",
	    1024, 1LL << 30, 0, "largest passed-through request body held in "
	    "memory (one not streamed: pipelined; 413 above)"},
	{"SYNCV3_PROXY_MAX_STREAM", CFG_INT, C(proxy_max_stream),
	    "1073741824", 1024, 1LL << 40, 0, "largest streamed request body "
	    "(413 above, at once when its Content-Length says so)"},
	{"SYNCV3_PROXY_BUFFER", CFG_INT, C(proxy_buffer), "1048576", 16384,
	    64LL << 20, 0, "bytes queued to a client, or from one, before "
	    "upstream is paused"},
	{"SYNCV3_PROXY_CONNECT_TIMEOUT_MS", CFG_INT,
	    C(proxy_connect_timeout_ms), "5000", 100, 600000, 0,
	    "connecting to SYNCV3_SERVER (502 after)"},
	{"SYNCV3_PROXY_HEADER_TIMEOUT_MS", CFG_INT, C(proxy_header_timeout_ms),
	    "180000", 100, 3600000, 0, "from arrival to upstream's answer "
	    "headers (504 after); above long-poll timeouts"},
	{"SYNCV3_PROXY_IDLE_TIMEOUT_MS", CFG_INT, C(proxy_idle_timeout_ms),
	    "60000", 100, 3600000, 0, "upstream silent mid-answer (cut after)"},
	{"SYNCV3_PROXY_KEEPALIVE", CFG_INT, C(proxy_keepalive), "64", 1, 10000,
	    0, "idle upstream connections kept for reuse"},
	{"SYNCV3_API_HEADER_TIMEOUT_MS", CFG_INT, C(header_timeout_ms), "10000",
	    100, 600000, 0, "a request line and headers must arrive within "
	    "this (408 after)"},
	{"SYNCV3_API_BODY_TIMEOUT_MS", CFG_INT, C(body_timeout_ms), "30000",
	    100, 600000, 0, "a request body must arrive within this after its "
	    "headers (408 after)"},
	{"SYNCV3_API_MAX_CONNS", CFG_INT, C(max_conns), "60000", 1, 10000000,
	    0, "concurrent client connections (503 above)"},
	{"SYNCV3_API_MAX_HEADERS", CFG_INT, C(max_headers), "16384", 1024,
	    1048576, 0, "largest request line, and request line plus headers "
	    "(414, 431 above)"},
	{"SYNCV3_SS_CONN_IDLE_S", CFG_INT, C(ss_conn_idle_s), "1800", 1,
	    30LL * 86400, 0, "idle sliding sync connections expire after this "
	    "(their pos is M_UNKNOWN_POS then)"},
	{"SYNCV3_SS_CONNS_PER_DEVICE", CFG_INT, C(ss_conns_per_device), "10",
	    1, 100000, 0, "sliding sync connections kept per device; a new "
	    "one expires the least recently used"},
	{"SYNCV3_ADMIN_TOKEN", CFG_STR, C(admin_token), NULL, 0, 0, CFG_SECRET,
	    "bearer token of the admin API under /_syncv3/admin/ (unset: off)"},
	{"SYNCV3_PUBLIC_URL", CFG_STR, C(public_url), "", 0, 0, 0,
	    "base URL clients reach this api at, put in a passed-through "
	    "client well-known (empty: from the request)"},
	{"SYNCV3_TRUST_FORWARDED", CFG_BOOL, C(is_trust_forwarded), "false", 0,
	    0, 0, "take X-Forwarded-Proto/-Host from clients (only behind a "
	    "reverse proxy that sets them)"},
	{NULL, 0, 0, NULL, 0, 0, 0, NULL},
};

static void
usage(void)
{
	fprintf(stderr, "usage: syncv3-api [-nv] [-b bindaddr] [-d conninfo] "
	    "[-s server] [-z notices]\n");
	exit(1);
}

static void
stop_cb(evutil_socket_t fd, short what, void *arg)
{
	struct api *api = arg;
	struct timeval tv = {1, 0};

	(void)fd;
	(void)what;
	if (api->is_stopping) {
		event_base_loopexit(api->base, NULL);
		return;
	}
	log_info("stopping");
	api->is_stopping = true;
	/* waiting requests get their answer now; others finish */
	lp_resync(api, api->cur_pos);
	event_base_loopexit(api->base, &tv);
}

static int64_t
read_position(struct api *api)
{
	PGconn *c;
	PGresult *res;
	int64_t pos = 0;

	if ((c = pg_connect_wait(api->cfg.db, 60)) == NULL)
		fatalx("cannot connect to %s", api->cfg.db);
	if (pg_wait_schema(c, pg_schema_version, 0) == -1)
		fatalx("schema version %d never appeared", pg_schema_version);
	res = pg_query(c, "position", api_stmts[Q_POSITION].sql, 0,
	    NULL);
	if (res != NULL && PQntuples(res) == 1) {
		pos = strtoll(PQgetvalue(res, 0, 0), NULL, 10);
		api->read_lsn = strtoll(PQgetvalue(res, 0, 1), NULL, 10);
	}
	PQclear(res);
	PQfinish(c);
	return pos;
}


/*
 * The pool's connections plan every prepared statement once. Left to
 * itself Postgres re-planned the room_list statements on every call (a
 * custom plan for each array of rooms looked cheaper than the generic
 * one, which assumes 100 elements per unnest): 0.25-0.5 ms of planning
 * for 0.05-0.1 ms of execution, most of its CPU under load. Our
 * statements are keyed lookups whose plan does not depend on the values,
 * so ask for generic plans (PGOPTIONS: an options= in SYNCV3_DB wins).
 * The server also gives up on a statement the pool stopped waiting for
 * (SYNCV3_API_DB_TIMEOUT_MS), so abandoned work does not pile up there.
 * JIT is off: once the tables have statistics the room_list first page at
 * 10,000 rooms crosses jit_above_cost and took 1.27-1.43 s per call
 * instead of 20-65 ms (EXPLAIN ANALYZE, issue #9 privacy work); our
 * statements are short keyed lookups that compiling never pays back.
 */
static void
generic_plans(long long timeout_ms)
{
	const char *old = getenv("PGOPTIONS");
	char *opts = xasprintf("%s%s-c plan_cache_mode=force_generic_plan "
	    "-c jit=off -c statement_timeout=%lld", old ? old : "", old && *old ? " " : "",
	    timeout_ms);

	if (setenv("PGOPTIONS", opts, 1) != 0)
		log_warn("setenv PGOPTIONS");
	free(opts);
}

/*
 * The daemon's whole life: configuration (environment, then flags),
 * the position to start from, the pool and each module in dependency
 * order, the loop until SIGTERM/SIGINT, then the modules in reverse.
 */
int
main(int argc, char *argv[])
{
	struct api api;
	struct cfg_cli cli;
	int rc;

	memset(&api, 0, sizeof(api));
	log_init("api", LOG_LEVEL_INFO);
	if (config_load(api_cfg_rows, &api.cfg) == -1)
		exit(1);
	rc = config_getopt(api_cfg_rows, &api.cfg, argc, argv, &cli);
	if (rc == CFG_EUSAGE)
		usage();
	if (rc == -1)
		exit(1);
	config_log_level(api.cfg.log_level, &cli);
	if (config_check(api_cfg_rows, &api.cfg) == -1)
		exit(1);
	if (cli.is_check) {
		config_print(api_cfg_rows, &api.cfg, stdout);
		exit(0);
	}
	signal(SIGPIPE, SIG_IGN);
	curl_global_init(CURL_GLOBAL_DEFAULT);
	api.cur_pos = read_position(&api);
	if ((api.base = event_base_new()) == NULL)
		fatalx("event_base_new");
	generic_plans(api.cfg.db_timeout_ms);
	api.pool = pg_pool_new(api.base, api.cfg.db, (int)api.cfg.pool_size);
	pg_pool_set_limits(api.pool, (int)api.cfg.db_queue_max,
	    api.cfg.db_timeout_ms);
	if (api.cfg.db_read[0] != '\0') {
		api.pool_read = pg_pool_new(api.base, api.cfg.db_read,
		    (int)api.cfg.pool_size);
		pg_pool_set_limits(api.pool_read, (int)api.cfg.db_queue_max,
		    api.cfg.db_timeout_ms);
		pg_pool_set_replica(api.pool_read, api.pool,
		    api.cfg.db_read_wait_ms);
	}
	auth_init(&api);
	session_init(&api);
	ss_init(&api);
	lp_init(&api);
	eph_init(&api);
	notices_init(&api);
	prom_init(&api);
	http_init(&api);
	api.sig_term = evsignal_new(api.base, SIGTERM, stop_cb, &api);
	api.sig_int = evsignal_new(api.base, SIGINT, stop_cb, &api);
	evsignal_add(api.sig_term, NULL);
	evsignal_add(api.sig_int, NULL);
	log_info("serving at position %lld", (long long)api.cur_pos);
	event_base_dispatch(api.base);
	http_shutdown(&api);
	prom_shutdown(&api);
	notices_shutdown(&api);
	eph_shutdown(&api);
	lp_shutdown(&api);
	ss_shutdown(&api);
	session_shutdown(&api);
	auth_shutdown(&api);
	event_free(api.sig_term);
	event_free(api.sig_int);
	pg_pool_free(api.pool_read);
	pg_pool_free(api.pool);
	event_base_free(api.base);
	config_free(api_cfg_rows, &api.cfg);
	curl_global_cleanup();
	log_info("stopped");
	return 0;
}
