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
	int64_t lsn;
	long long last_ms;
	unsigned long long sent, failed;
};

/*
 * Sends one notice; seq and epoch are this run's, whatever pn says.
 * Returns its seq.
 */
uint64_t
notify_send(struct notify *n, const struct proto_notice *pn)
{
	struct proto_notice x = *pn;

	x.seq = ++n->seq;
	x.epoch = n->epoch;
	x.lsn = n->lsn;
	if (x.pos > n->pos)
		n->pos = x.pos;
	if (proto_send_notice(n->sock, &x) != PROTO_OK) {
		/* PUB drops at the high-water mark; the seq gap tells. */
		n->failed++;
		log_warnx_rl("notify: %s: %s", proto_type_name(x.type),
		    zmq_strerror(errno));
	} else
		n->sent++;
	n->last_ms = now_ms();
	return x.seq;
}

/*
 * The typing lists of a body just parsed, before its batch commits
 * (docs/DESIGN.md contract 3, the exception for typing): a waiting
 * client needs no commit for data nothing durable depends on. Each
 * notice carries the last committed position, so it moves no reader's
 * position; its seq goes into the room (typing_early) for the typing
 * notice that stores the list, which names it so the api can tell that
 * notice repeats a list it already has. A body the store then refuses
 * (since mismatch) may have shown a list that is never stored; the next
 * change upstream replaces it.
 */
void
notify_typing_early(struct notify *n, struct acc_changes *ch)
{
	for (size_t i = 0; i < ch->nrooms; i++) {
		struct acc_room *rm = &ch->rooms[i];
		if (rm->typing == NULL)
			continue;
		rm->typing_early = (int64_t)notify_send(
		    n, &(struct proto_notice){.type = PROTO_NOTICE_TYPING_EARLY,
		                              .pos = n->pos,
		                              .room_id = rm->room_id,
		                              .user_ids = rm->typing});
	}
}

/* The notices one message gathered, in the order it gathered them. */
void
notify_send_list(struct notify *n, const struct notice_list *l)
{
	for (size_t i = 0; i < l->n; i++)
		notify_send(n, &l->v[i]);
}

void
notify_counts(const struct notify *n, unsigned long long *sent,
              unsigned long long *failed)
{
	*sent = n->sent;
	*failed = n->failed;
}

void
notify_set_pos(struct notify *n, int64_t pos)
{
	if (pos > n->pos)
		n->pos = pos;
}

void
notify_set_lsn(struct notify *n, int64_t lsn)
{
	if (lsn > n->lsn)
		n->lsn = lsn;
}

static void
beat_cb(evutil_socket_t fd, short what, void *arg)
{
	struct notify *n = arg;

	(void)fd;
	(void)what;
	if (now_ms() - n->last_ms >= 900)
		notify_send(n, &(struct proto_notice){
		    .type = PROTO_NOTICE_HEARTBEAT, .pos = n->pos});
}

struct notify *
notify_new(struct event_base *base, void *zctx, const char *endpoint)
{
	struct notify *n = xcalloc(1, sizeof(*n));
	struct timeval one = {1, 0};

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
