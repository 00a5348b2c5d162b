/*
 * Glue between libzmq sockets and the libevent loop (see zmq_ev.h). Owns
 * the read event on ZMQ_FD and a zero-timeout continuation event.
 */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <zmq.h>

#include "log.h"
#include "util.h"
#include "zmq_ev.h"

struct zmq_ev {
	void *sock;
	int batch;
	zmq_ev_read_cb cb;
	void *arg;
	struct event *ev_read;
	struct event *ev_more;
	bool is_held;
};

static int
has_pollin(void *sock)
{
	int events = 0;
	size_t len = sizeof(events);

	if (zmq_getsockopt(sock, ZMQ_EVENTS, &events, &len) == -1) {
		if (errno != ETERM)
			log_warnx_rl("zmq_getsockopt ZMQ_EVENTS: %s",
			    zmq_strerror(errno));
		return 0;
	}
	return (events & ZMQ_POLLIN) != 0;
}

/*
 * At most a batch, then the rest from a zero timeout: it runs after the
 * loop has polled its sockets, where event_active from here would run it
 * in the same pass, before any of them. An api then read all 20,000
 * notices of a 10,000-room fill before the request waiting beside them
 * (300 ms, the first room_list page's p99, issue #13).
 */
static void
zmq_ev_drain(struct zmq_ev *ze)
{
	const struct timeval now = {0, 0};
	int n = 0;

	while (!ze->is_held && has_pollin(ze->sock)) {
		if (n++ >= ze->batch) {
			event_add(ze->ev_more, &now);
			return;
		}
		ze->cb(ze->sock, ze->arg);
	}
}

static void
zmq_ev_cb(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	zmq_ev_drain(arg);
}

struct zmq_ev *
zmq_ev_new(struct event_base *base, void *sock, int batch, zmq_ev_read_cb cb,
    void *arg)
{
	struct zmq_ev *ze;
	int fd;
	size_t len = sizeof(fd);

	if (zmq_getsockopt(sock, ZMQ_FD, &fd, &len) == -1)
		fatalx("zmq_getsockopt ZMQ_FD: %s", zmq_strerror(errno));
	ze = xcalloc(1, sizeof(*ze));
	ze->sock = sock;
	ze->batch = batch > 0 ? batch : 64;
	ze->cb = cb;
	ze->arg = arg;
	ze->ev_read = event_new(base, fd, EV_READ | EV_PERSIST, zmq_ev_cb, ze);
	ze->ev_more = event_new(base, -1, 0, zmq_ev_cb, ze);
	if (ze->ev_read == NULL || ze->ev_more == NULL)
		fatalx("zmq_ev_new: event_new failed");
	event_add(ze->ev_read, NULL);
	/* Messages may already be queued; the edge may have passed. */
	event_active(ze->ev_more, EV_TIMEOUT, 0);
	return ze;
}

void
zmq_ev_hold(struct zmq_ev *ze, bool is_held)
{
	if (ze->is_held == is_held)
		return;
	ze->is_held = is_held;
	if (!is_held)
		event_active(ze->ev_more, EV_TIMEOUT, 0);
}

void
zmq_ev_kick(struct zmq_ev *ze)
{
	if (ze != NULL)
		event_active(ze->ev_more, EV_TIMEOUT, 0);
}

void
zmq_ev_free(struct zmq_ev *ze)
{
	if (ze == NULL)
		return;
	event_free(ze->ev_read);
	event_free(ze->ev_more);
	free(ze);
}

/*
 * Connects sock to each endpoint of a comma-separated list: a poller or
 * an api names every accumulator, and ZeroMQ keeps trying those not
 * bound (a standby binds nothing), so the socket reaches whichever one
 * is active. 0, or -1 (logged) when an endpoint is malformed.
 */
int
zmq_ev_connect_all(void *sock, const char *endpoints)
{
	char *list = xstrdup(endpoints), *p = list, *ep;
	int rc = 0;

	while (rc == 0 && (ep = strsep(&p, ",")) != NULL) {
		if (*ep == '\0' || zmq_connect(sock, ep) == 0)
			continue;
		log_warnx("zmq_connect %s: %s", ep, zmq_strerror(errno));
		rc = -1;
	}
	free(list);
	return rc;
}

void *
zmq_ev_socket(void *zctx, int type, const char *endpoint, int is_bind,
    long long maxmsgsize)
{
	void *sock;
	int linger = 1000, hwm = 100000;
	int64_t max = maxmsgsize;
	int rc;

	if ((sock = zmq_socket(zctx, type)) == NULL)
		fatalx("zmq_socket: %s", zmq_strerror(errno));
	zmq_setsockopt(sock, ZMQ_LINGER, &linger, sizeof(linger));
	zmq_setsockopt(sock, ZMQ_SNDHWM, &hwm, sizeof(hwm));
	zmq_setsockopt(sock, ZMQ_RCVHWM, &hwm, sizeof(hwm));
	if (max > 0)
		zmq_setsockopt(sock, ZMQ_MAXMSGSIZE, &max, sizeof(max));
	if (!is_bind)
		rc = zmq_ev_connect_all(sock, endpoint);
	else if ((rc = zmq_bind(sock, endpoint)) == -1)
		log_warnx("zmq_bind %s: %s", endpoint, zmq_strerror(errno));
	if (rc == -1) {
		zmq_close(sock);
		return NULL;
	}
	return sock;
}
