/*
 * Change notices on the PUB socket (contract 3): hints sent after COMMIT,
 * numbered by a per-run sequence with the run's epoch, plus a heartbeat
 * every second when nothing else was sent, so subscribers notice gaps and
 * silence and re-read positions from Postgres.
 */
#include <errno.h>
#include <stdlib.h>

#include <zmq.h>

#include "accumulator.h"
#include "util.h"
#include "zmq_ev.h"

struct notify {
	void *sock;
	struct event *ev_beat;
	uint64_t seq;
	int64_t epoch;
	int64_t pos;
	long long last_ms;
	unsigned long long sent, failed;
};

void
notify_send(struct notify *n, int type, int64_t pos, const char *room,
    const char *user, const char *device, const char *membership,
    const char *state)
{
	struct proto_notice pn = {
		.type = type,
		.seq = ++n->seq,
		.epoch = n->epoch,
		.pos = pos,
		.room_id = room,
		.user_id = user,
		.device_id = device,
		.membership = membership,
		.state = state,
	};

	if (pos > n->pos)
		n->pos = pos;
	if (proto_send_notice(n->sock, &pn) != PROTO_OK) {
		/* PUB drops at the high-water mark; the seq gap tells. */
		n->failed++;
		log_warnx_rl("notify: %s: %s", proto_type_name(type),
		    zmq_strerror(errno));
	} else
		n->sent++;
	n->last_ms = now_ms();
}

void
notify_set_pos(struct notify *n, int64_t pos)
{
	if (pos > n->pos)
		n->pos = pos;
}

static void
beat_cb(evutil_socket_t fd, short what, void *arg)
{
	struct notify *n = arg;

	(void)fd;
	(void)what;
	if (now_ms() - n->last_ms >= 900)
		notify_send(n, PROTO_NOTICE_HEARTBEAT, n->pos, NULL, NULL, NULL,
		    NULL, NULL);
}

struct notify *
notify_new(struct event_base *base, void *zctx, const char *endpoint,
    PGconn *db)
{
	struct notify *n = xcalloc(1, sizeof(*n));
	struct timeval one = {1, 0};

	(void)db;
	if ((n->sock = zmq_ev_socket(zctx, ZMQ_PUB, endpoint, 1, 0)) == NULL) {
		free(n);
		return NULL;
	}
	n->epoch = wall_ms();
	n->ev_beat = event_new(base, -1, EV_PERSIST, beat_cb, n);
	event_add(n->ev_beat, &one);
	log_info("notify: publishing on %s, epoch %lld", endpoint,
	    (long long)n->epoch);
	return n;
}

void
notify_free(struct notify *n)
{
	if (n == NULL)
		return;
	event_free(n->ev_beat);
	zmq_close(n->sock);
	free(n);
}
