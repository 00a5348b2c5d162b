/*
 * proxy_body.c: a pass-through request body streamed from the client's
 * connection to curl (issue #12). http.c held the request's head back
 * from evhttp and gave it the head without the body (libevent 2.1.12 has
 * no way to see a server request before evhttp reads its body whole), so
 * the body is still on the connection: this file reads it from the
 * bufferevent's input as curl asks for it, undoing chunked framing.
 *
 * Bounded: a read high-water mark of SYNCV3_PROXY_BUFFER on the
 * connection makes libevent stop reading the socket while that much waits
 * for curl, whatever evhttp enables or disables meanwhile (it enables
 * reading each time it writes, to see a close), and start again once curl
 * took some. Bytes that arrive call kick(arg), so a paused curl resumes.
 *
 * States: DATA (a Content-Length body, or one chunk's data), SIZE (a
 * chunk's size line), CRLF (the line end after a chunk), TRAILER (lines
 * after the last chunk, dropped), DONE, BAD. The pbody lives in the
 * proxy's request and must be freed while the connection still is.
 */
#include <limits.h>
#include <stdlib.h>
#include <string.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>

#include "api.h"
#include "util.h"

#define PBODY_MAX_LINE 4096    /* a chunk size line or a trailer */
#define PBODY_MAX_TRAILERS 100 /* trailer lines, all dropped */

enum pb_state {
	PB_DATA,
	PB_SIZE,
	PB_CRLF,
	PB_TRAILER,
	PB_DONE,
	PB_BAD,
};

struct pbody {
	struct bufferevent *bev;
	struct http_body info;
	enum pb_state state;
	long long left; /* PB_DATA: bytes of the body or chunk to come */
	long long total;
	long long max;
	size_t buffer;
	int ntrailers;
	bool is_started;
	void (*kick)(void *);
	void *arg;
};

static void
input_cb(struct evbuffer *in, const struct evbuffer_cb_info *info, void *arg)
{
	struct pbody *b = arg;

	(void)in;
	if (info->n_added > 0 && b->is_started)
		b->kick(b->arg);
}

struct pbody *
pbody_new(struct bufferevent *bev, const struct http_body *info, long long max,
          size_t buffer, void (*kick)(void *), void *arg)
{
	struct pbody *b = xcalloc(1, sizeof(*b));

	b->bev = bev;
	b->info = *info;
	b->max = max;
	b->buffer = buffer;
	b->kick = kick;
	b->arg = arg;
	if (info->len >= 0) {
		b->state = info->len > 0 ? PB_DATA : PB_DONE;
		b->left = info->len;
	} else
		b->state = PB_SIZE;
	if (evbuffer_add_cb(bufferevent_get_input(bev), input_cb, b) == NULL)
		fatalx("%s: out of memory", __func__);
	return b;
}

void
pbody_free(struct pbody *b)
{
	if (b == NULL)
		return;
	evbuffer_remove_cb(bufferevent_get_input(b->bev), input_cb, b);
	bufferevent_setwatermark(b->bev, EV_READ, 0, 0);
	free(b);
}

/*
 * Starts reading the body: evhttp, which believes the request has none,
 * is answering it, and its read callback would abort on bytes in that
 * state, so there is none until evhttp writes (it sets its own then); its
 * event callback stays, so a hang-up frees the connection as usual. A
 * client that asked first is told to go on (100 Continue) now that a
 * slot upstream is ours.
 */
void
pbody_start(struct pbody *b)
{
	bufferevent_event_cb eventcb = NULL;
	void *arg = NULL;

	if (b->is_started)
		return;
	b->is_started = true;
	bufferevent_getcb(b->bev, NULL, NULL, &eventcb, &arg);
	bufferevent_setcb(b->bev, NULL, NULL, eventcb, arg);
	bufferevent_setwatermark(b->bev, EV_READ, 0, b->buffer);
	if (b->info.has_continue && b->state != PB_DONE) {
		evbuffer_add_printf(bufferevent_get_output(b->bev),
		                    "HTTP/1.1 100 Continue\r\n\r\n");
		bufferevent_enable(b->bev, EV_WRITE);
	}
	bufferevent_enable(b->bev, EV_READ);
}

bool
pbody_is_done(const struct pbody *b)
{
	return b->state == PB_DONE;
}

/* A chunk size line: hex digits, then maybe ";extensions" (ignored). */
static void
size_line(struct pbody *b, const char *line)
{
	char *end;
	unsigned long long n;

	if (!((line[0] >= '0' && line[0] <= '9') ||
	      (line[0] >= 'a' && line[0] <= 'f') ||
	      (line[0] >= 'A' && line[0] <= 'F'))) {
		b->state = PB_BAD;
		return;
	}
	n = strtoull(line, &end, 16);
	end += strspn(end, " \t");
	if ((*end != '\0' && *end != ';') || n > (1ULL << 48)) {
		b->state = PB_BAD;
		return;
	}
	b->left = (long long)n;
	b->state = n > 0 ? PB_DATA : PB_TRAILER;
}

/* One framing line (SIZE, CRLF, TRAILER); false when none is complete. */
static bool
framing_line(struct pbody *b, struct evbuffer *in)
{
	size_t len;
	char *line = evbuffer_readln(in, &len, EVBUFFER_EOL_CRLF);

	if (line == NULL) {
		if (evbuffer_get_length(in) > PBODY_MAX_LINE)
			b->state = PB_BAD;
		return false;
	}
	if (len > PBODY_MAX_LINE)
		b->state = PB_BAD;
	else if (b->state == PB_SIZE)
		size_line(b, line);
	else if (b->state == PB_CRLF)
		b->state = len == 0 ? PB_SIZE : PB_BAD;
	else if (len == 0)
		b->state = PB_DONE;
	else if (++b->ntrailers > PBODY_MAX_TRAILERS)
		b->state = PB_BAD;
	free(line);
	return true;
}

/*
 * Up to n body bytes into buf: how many, 0 at the end of the body, or a
 * PBODY_* code (AGAIN: none has arrived yet).
 */
ev_ssize_t
pbody_read(struct pbody *b, char *buf, size_t n)
{
	struct evbuffer *in = bufferevent_get_input(b->bev);
	size_t got = 0, k;

	while (got < n && b->state != PB_DONE && b->state != PB_BAD) {
		if (b->state != PB_DATA) {
			if (!framing_line(b, in))
				break;
			continue;
		}
		k = evbuffer_get_length(in);
		if (k > n - got)
			k = n - got;
		if ((long long)k > b->left)
			k = (size_t)b->left;
		if (k == 0 || evbuffer_remove(in, buf + got, k) != (int)k)
			break;
		got += k;
		b->left -= (long long)k;
		b->total += (long long)k;
		if (b->left == 0)
			b->state = b->info.len >= 0 ? PB_DONE : PB_CRLF;
	}
	if (b->state == PB_BAD)
		return PBODY_EBAD;
	if (b->total > b->max) {
		b->max = LLONG_MAX; /* said once; the rest may be drained */
		return PBODY_ETOOBIG;
	}
	if (got > 0)
		return (ev_ssize_t)got;
	return b->state == PB_DONE ? 0 : PBODY_AGAIN;
}
