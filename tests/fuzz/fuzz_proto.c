/*
 * Fuzzes the envelope decoder and every message decoder. The input is
 * split into frames at 0xFF 0x00 separators (at most 6), so the fuzzer can
 * vary the frame count, the header bytes and the meta JSON independently.
 */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "proto.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct proto_msg msg;
	size_t start = 0;
	union {
		struct proto_sync_raw raw;
		struct proto_sync_ack ack;
		struct proto_poll_state st;
		struct proto_notice n;
	} out;

	memset(&msg, 0, sizeof(msg));
	for (size_t i = 0; i <= size && msg.nframes < 5; i++) {
		if (i < size && !(i + 1 < size && data[i] == 0xFF &&
		    data[i + 1] == 0x00))
			continue;
		zmq_msg_init_size(&msg.frames[msg.nframes], i - start);
		memcpy(zmq_msg_data(&msg.frames[msg.nframes]), data + start,
		    i - start);
		msg.nframes++;
		start = i + 2;
		i++;
	}
	msg.has_route = msg.nframes == 5;
	if (proto_decode(&msg) == PROTO_OK) {
		(void)proto_recv_sync_raw(&msg, &out.raw);
		(void)proto_recv_sync_ack(&msg, &out.ack);
		(void)proto_recv_poll_state(&msg, &out.st);
		(void)proto_recv_notice(&msg, &out.n);
	}
	proto_msg_close(&msg);
	return 0;
}
