/*
 * notices.c: the SUB socket for the accumulator's change notices (hints,
 * contract 3). Each notice moves the current position and wakes the
 * waiters it concerns. The header seq counts notices per accumulator run
 * (meta.epoch): on a gap, a new epoch, or silence longer than
 * SYNCV3_API_SILENCE_MS (heartbeats arrive every second), the position is
 * re-read from Postgres and waiters re-query if it moved.
 *
 * Each notice also carries the WAL position of the commit behind it;
 * api->read_lsn, the highest seen (or read with the position), is what a
 * replica must have replayed before a read at the current position may
 * go there (sql_query). SYNCV3_NOTICES may list several accumulators (a
 * standby): the SUB connects to all; only the active one publishes.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include <zmq.h>

#include "api.h"
#include "pg.h"
#include "proto.h"
#include "util.h"
#include "zmq_ev.h"

#define NOTICES_BATCH 32

/* notices.c's part of struct api */
struct notices {
	int64_t epoch;
	uint64_t last_seq;
	long long last_msg_ms;
	struct event *silence_timer;
	bool is_resyncing;
};

/* Reads from now on must see the commit at lsn (the position it made). */
static void
notices_lsn(struct api *api, int64_t lsn)
{
	if (lsn > api->read_lsn)
		api->read_lsn = lsn;
}

static void
resync_cb(PGresult *res, void *arg)
{
	struct api *api = arg;

	api->notices->is_resyncing = false;
	if (res == NULL || PQntuples(res) != 1)
		return;
	notices_lsn(api, strtoll(PQgetvalue(res, 0, 1), NULL, 10));
	lp_resync(api, strtoll(PQgetvalue(res, 0, 0), NULL, 10));
}

static void
notices_resync(struct api *api, const char *why)
{
	/* typing lists may have been lost with the notices (ephemeral.c) */
	eph_forget_all(api);
	if (api->notices->is_resyncing)
		return;
	log_debug("notices: %s: re-reading position", why);
	api->stats.gaps++;
	api->notices->is_resyncing = true;
	sql_query(api, Q_POSITION, NULL, resync_cb, api);
}

/*
 * One notice from the SUB socket: a new epoch or a sequence gap re-reads
 * the position (notices may be lost), then longpoll wakes its waiters.
 */
static void
notices_read_cb(void *sock, void *arg)
{
	struct api *api = arg;
	struct proto_msg msg;
	struct proto_notice n;
	int rc;

	if ((rc = proto_recv(sock, false, &msg)) != PROTO_OK) {
		if (rc != PROTO_EIO)
			log_warnx_rl("notices: bad message: %s",
			    proto_strerror(rc));
		return;
	}
	if ((rc = proto_recv_notice(&msg, &n)) != PROTO_OK) {
		log_warnx_rl("notices: bad notice: %s", proto_strerror(rc));
		proto_msg_close(&msg);
		return;
	}
	api->stats.notices++;
	api->notices->last_msg_ms = now_ms();
	notices_lsn(api, n.lsn);
	if (n.epoch != api->notices->epoch) {
		api->notices->epoch = n.epoch;
		notices_resync(api, "new accumulator epoch");
	} else if (n.seq != api->notices->last_seq + 1)
		notices_resync(api, "sequence gap");
	api->notices->last_seq = n.seq;
	if (n.type == PROTO_NOTICE_DEVICE)
		api->device_notices++;
	eph_notice(api, &n);
	lp_notice(api, &n);
	proto_msg_close(&msg);
}

static void
silence_cb(evutil_socket_t fd, short what, void *arg)
{
	struct api *api = arg;

	(void)fd;
	(void)what;
	if (now_ms() - api->notices->last_msg_ms >= api->cfg.silence_ms) {
		notices_resync(api, "no notices");
		api->notices->last_msg_ms = now_ms();
	}
}

void
notices_init(struct api *api)
{
	struct timeval tv;

	api->notices = xcalloc(1, sizeof(*api->notices));
	if ((api->zctx = zmq_ctx_new()) == NULL)
		fatalx("zmq_ctx_new");
	api->sub = zmq_ev_socket(api->zctx, ZMQ_SUB, api->cfg.notices, 0,
	    PROTO_META_MAX + 4096);
	if (api->sub == NULL)
		fatalx("cannot connect to %s", api->cfg.notices);
	if (zmq_setsockopt(api->sub, ZMQ_SUBSCRIBE, "notice.", 7) != 0)
		fatalx("zmq subscribe: %s", zmq_strerror(errno));
	/*
	 * 32 notices a loop turn: a 10,000-room fill publishes 20,000 of
	 * them, and each step of a request beside them (its statements'
	 * results) waits for one turn; 256 made that 41 ms a step under
	 * load (issue #13). A turn costs one epoll_wait.
	 */
	api->zev = zmq_ev_new(api->base, api->sub, NOTICES_BATCH,
	                      notices_read_cb, api);
	api->notices->last_msg_ms = now_ms();
	tv.tv_sec = api->cfg.silence_ms / 2000;
	tv.tv_usec = (api->cfg.silence_ms / 2 % 1000) * 1000;
	api->notices->silence_timer = event_new(api->base, -1, EV_PERSIST, silence_cb,
	    api);
	event_add(api->notices->silence_timer, &tv);
}

void
notices_shutdown(struct api *api)
{
	if (api->notices->silence_timer != NULL)
		event_free(api->notices->silence_timer);
	zmq_ev_free(api->zev);
	if (api->sub != NULL)
		zmq_close(api->sub);
	if (api->zctx != NULL)
		zmq_ctx_term(api->zctx);
	free(api->notices);
	api->notices = NULL;
}
