/*
 * A ZeroMQ socket driven by a libevent loop. ZMQ_FD is edge-triggered: it
 * signals that ZMQ_EVENTS may have changed, not that a message is waiting.
 * So the read callback is called once per waiting message while ZMQ_EVENTS
 * says POLLIN, at most `batch` times per loop turn; the rest is continued
 * from a zero-timeout event so HTTP and timers are never starved. After
 * sending on the socket, call zmq_ev_kick(): a send can consume the edge.
 */
#ifndef SYNCV3_ZMQ_EV_H
#define SYNCV3_ZMQ_EV_H

#include <stdbool.h>

#include <event2/event.h>

#include "log.h"

struct zmq_ev;

/* Receives and handles exactly one (multipart) message from sock. */
typedef void (*zmq_ev_read_cb)(void *sock, void *arg);

struct zmq_ev *zmq_ev_new(struct event_base *base, void *sock, int batch,
    zmq_ev_read_cb cb, void *arg);
void zmq_ev_kick(struct zmq_ev *ze);
/*
 * While held, nothing is read: messages wait in the socket (and, past its
 * high-water mark, in the peers' queues). Releasing reads on at once.
 */
void zmq_ev_hold(struct zmq_ev *ze, bool is_held);
void zmq_ev_free(struct zmq_ev *ze);

/* Connects to each of a comma-separated list of endpoints; 0 or -1. */
int zmq_ev_connect_all(void *sock, const char *endpoints) WARN_UNUSED;

/*
 * Creates a socket with linger and limits set, bound to one endpoint or
 * connected to a comma-separated list of them.
 */
void *zmq_ev_socket(void *zctx, int type, const char *endpoint, int is_bind,
    long long maxmsgsize);

#endif
