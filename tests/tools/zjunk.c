/*
 * syncv3-zjunk: plays a broken peer on a ZeroMQ endpoint so tests can show
 * that no daemon crashes on bad frames.
 *   zjunk dealer ENDPOINT N   connect as a poller, send N bad messages
 *   zjunk pub ENDPOINT N      bind as the accumulator's PUB, publish N bad notices
 *   zjunk router ENDPOINT S   bind as the accumulator's ROUTER for S seconds,
 *                             answering every message with garbage
 * Messages cycle through: too few frames, too many frames, short header,
 * bad magic, wrong version, unknown type, non-object meta, truncated meta,
 * missing meta keys, wrong meta types, and (dealer) a well-formed sync.raw
 * for an unknown device with a non-JSON body.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <zmq.h>

#include "proto.h"

#define NKINDS 11

static void
frame(void *s, const void *p, size_t n, int more)
{
	zmq_send(s, p, n, more ? ZMQ_SNDMORE : 0);
}

/* Sends bad message number k of kind k % NKINDS with the given type. */
static void
send_junk(void *s, int k, int type, const void *route, size_t rlen)
{
	struct proto_hdr h = {PROTO_MAGIC, PROTO_VERSION, 0, (uint16_t)type,
	    0, (uint64_t)k, 0};
	uint8_t hdr[PROTO_HDR_LEN];
	const char *topic = proto_topic(type), *meta = "{}";
	const char *body = "this is not json";
	int kind = k % NKINDS;

	if (kind == 3)
		h.magic = 0x1234;
	if (kind == 4)
		h.version = PROTO_VERSION + 7;
	if (kind == 5)
		h.type = 999;
	proto_hdr_encode(&h, hdr);
	if (route != NULL)
		frame(s, route, rlen, 1);
	switch (kind) {
	case 0: /* one frame */
		frame(s, topic, strlen(topic), 0);
		return;
	case 1: /* six frames */
		for (int i = 0; i < 5; i++)
			frame(s, "x", 1, 1);
		frame(s, "x", 1, 0);
		return;
	case 2: /* short header */
		frame(s, topic, strlen(topic), 1);
		frame(s, hdr, 7, 1);
		break;
	case 6:
		meta = "[1,2,3]";
		goto full;
	case 7:
		meta = "{\"user_id\":";
		goto full;
	case 8:
		meta = "{\"epoch\":1}";
		goto full;
	case 9:
		meta = "{\"user_id\":7,\"device_id\":[],\"since_in\":null,"
		       "\"next_batch\":{},\"epoch\":\"x\",\"pos\":-5,\"ok\":1}";
		goto full;
	case 10:
		meta = "{\"user_id\":\"@nobody:hs\",\"device_id\":\"NONE\","
		       "\"since_in\":\"\",\"next_batch\":\"s1\"}";
		goto full;
	default:
	full:
		frame(s, topic, strlen(topic), 1);
		frame(s, hdr, sizeof(hdr), 1);
		break;
	}
	frame(s, meta, strlen(meta), 1);
	frame(s, body, strlen(body), 0);
}

static int
run_router(void *s, int secs)
{
	int n = 0;
	zmq_pollitem_t pi = {s, 0, ZMQ_POLLIN, 0};

	for (int t = 0; t < secs * 10; t++) {
		if (zmq_poll(&pi, 1, 100) <= 0)
			continue;
		for (;;) {
			zmq_msg_t route, part;
			int more = 1;
			size_t len = sizeof(more);

			zmq_msg_init(&route);
			if (zmq_msg_recv(&route, s, ZMQ_DONTWAIT) == -1) {
				zmq_msg_close(&route);
				break;
			}
			while (zmq_getsockopt(s, ZMQ_RCVMORE, &more, &len) ==
			    0 && more) {
				zmq_msg_init(&part);
				zmq_msg_recv(&part, s, 0);
				zmq_msg_close(&part);
			}
			send_junk(s, n++, PROTO_SYNC_ACK, zmq_msg_data(&route),
			    zmq_msg_size(&route));
			zmq_msg_close(&route);
		}
	}
	printf("answered %d messages with junk\n", n);
	return 0;
}

int
main(int argc, char **argv)
{
	void *ctx, *s;
	int n, linger = 2000;

	if (argc != 4) {
		fprintf(stderr, "usage: zjunk dealer|pub|router ENDPOINT N\n");
		return 2;
	}
	n = atoi(argv[3]);
	ctx = zmq_ctx_new();
	if (strcmp(argv[1], "dealer") == 0) {
		s = zmq_socket(ctx, ZMQ_DEALER);
		if (zmq_connect(s, argv[2]) == -1)
			goto err;
		for (int k = 0; k < n; k++)
			send_junk(s, k, PROTO_SYNC_RAW, NULL, 0);
		/* Count answers: none may say the junk was committed. */
		zmq_pollitem_t pi = {s, 0, ZMQ_POLLIN, 0};
		int got = 0, ok = 0;
		while (zmq_poll(&pi, 1, 1500) > 0) {
			struct proto_msg msg;
			struct proto_sync_ack ack;

			if (proto_recv(s, false, &msg) == PROTO_OK &&
			    proto_recv_sync_ack(&msg, &ack) == PROTO_OK) {
				got++;
				ok += ack.ok;
			}
			proto_msg_close(&msg);
		}
		printf("replies %d ok %d\n", got, ok);
	} else if (strcmp(argv[1], "pub") == 0) {
		s = zmq_socket(ctx, ZMQ_PUB);
		if (zmq_bind(s, argv[2]) == -1)
			goto err;
		sleep(1); /* let subscribers connect */
		for (int k = 0; k < n; k++)
			send_junk(s, k, PROTO_NOTICE_ROOM + k % 7, NULL, 0);
		printf("published %d\n", n);
	} else if (strcmp(argv[1], "router") == 0) {
		s = zmq_socket(ctx, ZMQ_ROUTER);
		if (zmq_bind(s, argv[2]) == -1)
			goto err;
		run_router(s, n);
	} else
		return 2;
	zmq_setsockopt(s, ZMQ_LINGER, &linger, sizeof(linger));
	zmq_close(s);
	zmq_ctx_term(ctx);
	return 0;
err:
	fprintf(stderr, "zjunk: %s: %s\n", argv[2], zmq_strerror(zmq_errno()));
	return 1;
}
