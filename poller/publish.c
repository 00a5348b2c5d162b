/*
 * publish.c: the DEALER socket to the accumulator's ROUTER (contract 1).
 * Sends PROTO_SYNC_RAW and PROTO_POLL_STATE, receives PROTO_SYNC_ACK and
 * hands each to its device, matched by (user_id, device_id). The socket
 * has ZMQ_IMMEDIATE set, so a send fails at once while the accumulator is
 * away instead of queueing copies; device.c resends on its ack timer,
 * and a socket monitor resends every unacknowledged body as soon as the
 * accumulator is reachable again (a restarted accumulator lost what it had
 * not committed), so upstream is not left piling up behind a long timer.
 *
 * SYNCV3_INGEST may name several accumulators (a standby, issue #15): the
 * socket connects to all, and only the active one has bound its
 * endpoint, so only it gets messages. ZMTP heartbeats drop a connection
 * whose peer stops answering (a frozen accumulator that a standby took
 * over from), and ZMQ_IMMEDIATE keeps messages off connections whose
 * handshake has not completed; every pending body is resent when an
 * accumulator appears and when one disappears (what it held is gone).
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include <zmq.h>

#include "log.h"
#include "poller.h"
#include "proto.h"
#include "util.h"
#include "zmq_ev.h"

static void
read_cb(void *sock, void *arg)
{
	struct poller *p = arg;
	struct proto_msg msg;
	struct proto_sync_ack ack;
	int rc;

	if ((rc = proto_recv(sock, false, &msg)) != PROTO_OK) {
		if (rc != PROTO_EIO || errno != EAGAIN)
			log_warnx_rl("ingest: bad message: %s",
			    proto_strerror(rc));
		return;
	}
	if (msg.hdr.type != PROTO_SYNC_ACK) {
		log_warnx_rl("ingest: unexpected %s",
		    proto_type_name(msg.hdr.type));
	} else if (proto_recv_sync_ack(&msg, &ack) != PROTO_OK) {
		log_warnx_rl("ingest: malformed ack");
	} else
		p->on_ack(p, &ack);
	proto_msg_close(&msg);
}

static void
monitor_cb(void *sock, void *arg)
{
	struct poller *p = arg;
	zmq_msg_t ev, addr;
	uint16_t id = 0;

	zmq_msg_init(&ev);
	zmq_msg_init(&addr);
	if (zmq_msg_recv(&ev, sock, ZMQ_DONTWAIT) == -1)
		goto out;
	if (zmq_msg_more(&ev))
		(void)zmq_msg_recv(&addr, sock, 0);
	/* Frame 1: event id (u16, native order) and value (u32). */
	if (zmq_msg_size(&ev) >= sizeof(id))
		memcpy(&id, zmq_msg_data(&ev), sizeof(id));
	if (id == ZMQ_EVENT_HANDSHAKE_SUCCEEDED)
		p->on_connect(p);
	else if (id == ZMQ_EVENT_DISCONNECTED) {
		log_warnx_rl("ingest: accumulator disconnected");
		p->on_connect(p);
	}
out:
	zmq_msg_close(&ev);
	zmq_msg_close(&addr);
}

static void
monitor_init(struct poller *p)
{
	char ep[64];

	snprintf(ep, sizeof(ep), "inproc://poller-monitor-%p", (void *)p);
	if (zmq_socket_monitor(p->dealer, ep, ZMQ_EVENT_HANDSHAKE_SUCCEEDED |
	    ZMQ_EVENT_DISCONNECTED) == -1)
		fatalx("zmq_socket_monitor: %s", zmq_strerror(errno));
	if ((p->monitor = zmq_socket(p->zctx, ZMQ_PAIR)) == NULL ||
	    zmq_connect(p->monitor, ep) == -1)
		fatalx("monitor socket: %s", zmq_strerror(errno));
	p->mev = zmq_ev_new(p->base, p->monitor, 16, monitor_cb, p);
}

void
publish_init(struct poller *p, publish_ack_fn on_ack,
             publish_connect_fn on_connect)
{
	int one = 1, linger = 0, hwm = 100000, beat_ms = 250, dead_ms = 1000;
	int64_t max = 1 << 20;

	p->on_ack = on_ack;
	p->on_connect = on_connect;
	if ((p->zctx = zmq_ctx_new()) == NULL)
		fatalx("zmq_ctx_new: %s", zmq_strerror(errno));
	if ((p->dealer = zmq_socket(p->zctx, ZMQ_DEALER)) == NULL)
		fatalx("zmq_socket: %s", zmq_strerror(errno));
	zmq_setsockopt(p->dealer, ZMQ_IMMEDIATE, &one, sizeof(one));
	/* Unsent bodies are not lost at exit: the since never moved. */
	zmq_setsockopt(p->dealer, ZMQ_LINGER, &linger, sizeof(linger));
	zmq_setsockopt(p->dealer, ZMQ_SNDHWM, &hwm, sizeof(hwm));
	zmq_setsockopt(p->dealer, ZMQ_RCVHWM, &hwm, sizeof(hwm));
	zmq_setsockopt(p->dealer, ZMQ_MAXMSGSIZE, &max, sizeof(max));
	zmq_setsockopt(p->dealer, ZMQ_HEARTBEAT_IVL, &beat_ms, sizeof(beat_ms));
	zmq_setsockopt(p->dealer, ZMQ_HEARTBEAT_TIMEOUT, &dead_ms,
	               sizeof(dead_ms));
	if (zmq_ev_connect_all(p->dealer, p->cfg.ingest) == -1)
		fatalx("SYNCV3_INGEST: cannot connect to %s", p->cfg.ingest);
	monitor_init(p);
	p->zev = zmq_ev_new(p->base, p->dealer, 64, read_cb, p);
}

void
publish_shutdown(struct poller *p)
{
	zmq_ev_free(p->zev);
	zmq_ev_free(p->mev);
	p->zev = p->mev = NULL;
	if (p->monitor != NULL)
		zmq_close(p->monitor);
	p->monitor = NULL;
	if (p->dealer != NULL)
		zmq_close(p->dealer);
	if (p->zctx != NULL)
		zmq_ctx_term(p->zctx);
	p->dealer = p->zctx = NULL;
}

/* Sends the device's pending body; 0, or -1 when the accumulator is away. */
int
publish_sync_raw(struct device *d, const char *since_in)
{
	struct poller *p = d->p;
	struct proto_sync_raw m = {
	    d->user_id,    d->device_id,           since_in,
	    d->next_batch, d->body ? d->body : "", d->body_len,
	    d->req_first,  d->req_catchup};
	int rc;

	rc = proto_send_sync_raw(p->dealer, ++p->seq, &m);
	zmq_ev_kick(p->zev);
	return rc == PROTO_OK ? 0 : -1;
}

/* Best effort: Postgres has the same state (lease.c). */
void
publish_poll_state(struct device *d)
{
	struct poller *p = d->p;
	struct proto_poll_state m = {
	    d->user_id, d->device_id, dev_state_name(d->ps), d->error,
	    d->ps == DEV_STATE_BACKOFF ? d->retry_at_ms : 0, d->fp};

	if (d->ps != DEV_STATE_POLLING && d->ps != DEV_STATE_BACKOFF &&
	    d->ps != DEV_STATE_EXPIRED)
		return;
	if (proto_send_poll_state(p->dealer, ++p->seq, &m) != PROTO_OK)
		log_debug("device %s/%s: poll state not sent", d->user_id,
		    d->device_id);
	zmq_ev_kick(p->zev);
}
