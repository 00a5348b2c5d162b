/*
 * Owns the CURLM handle, one libevent event per socket curl asks us to
 * watch (kept in curl's socket pointer), and the single timer curl drives.
 * A transfer's callback and argument live in its easy handle's private
 * pointer.
 */
#include <stdlib.h>

#include "curl_ev.h"
#include "log.h"
#include "util.h"

struct curl_ev {
	struct event_base *base;
	CURLM *multi;
	struct event *timer;
	int running;
};

struct curl_ev_xfer {
	curl_ev_done_cb cb;
	void *arg;
};

struct curl_ev_sock {
	struct curl_ev *ce;
	struct event *ev;
};

static void
check_done(struct curl_ev *ce)
{
	CURLMsg *m;
	int left;

	while ((m = curl_multi_info_read(ce->multi, &left)) != NULL) {
		CURL *easy = m->easy_handle;
		CURLcode res = m->data.result;
		struct curl_ev_xfer *x = NULL;

		if (m->msg != CURLMSG_DONE)
			continue;
		curl_easy_getinfo(easy, CURLINFO_PRIVATE, (char **)&x);
		curl_multi_remove_handle(ce->multi, easy);
		curl_easy_setopt(easy, CURLOPT_PRIVATE, NULL);
		if (x != NULL) {
			curl_ev_done_cb cb = x->cb;
			void *arg = x->arg;

			free(x);
			cb(easy, res, arg);
		}
	}
}

static void
sock_cb(evutil_socket_t fd, short what, void *arg)
{
	struct curl_ev *ce = arg;
	int flags = 0;

	if (what & EV_READ)
		flags |= CURL_CSELECT_IN;
	if (what & EV_WRITE)
		flags |= CURL_CSELECT_OUT;
	curl_multi_socket_action(ce->multi, fd, flags, &ce->running);
	check_done(ce);
	if (ce->running <= 0)
		evtimer_del(ce->timer);
}

static void
timer_cb(evutil_socket_t fd, short what, void *arg)
{
	struct curl_ev *ce = arg;

	(void)fd;
	(void)what;
	curl_multi_socket_action(ce->multi, CURL_SOCKET_TIMEOUT, 0,
	    &ce->running);
	check_done(ce);
}

static int
multi_timer_cb(CURLM *multi, long timeout_ms, void *arg)
{
	struct curl_ev *ce = arg;
	struct timeval tv;

	(void)multi;
	if (timeout_ms < 0) {
		evtimer_del(ce->timer);
		return 0;
	}
	tv.tv_sec = timeout_ms / 1000;
	tv.tv_usec = (timeout_ms % 1000) * 1000;
	evtimer_add(ce->timer, &tv);
	return 0;
}

/*
 * CURLMOPT_SOCKETFUNCTION: curl says which events a socket wants. Each
 * socket gets one libevent event, kept in curl's per-socket pointer
 * (curl_multi_assign) and replaced when the wanted events change; REMOVE
 * frees it, since curl may close the fd right after.
 */
static int
multi_sock_cb(CURL *easy, curl_socket_t s, int what, void *arg, void *sockp)
{
	struct curl_ev *ce = arg;
	struct curl_ev_sock *cs = sockp;
	short kind = EV_PERSIST;

	(void)easy;
	if (what == CURL_POLL_REMOVE) {
		if (cs != NULL) {
			event_free(cs->ev);
			free(cs);
		}
		curl_multi_assign(ce->multi, s, NULL);
		return 0;
	}
	if (what & CURL_POLL_IN)
		kind |= EV_READ;
	if (what & CURL_POLL_OUT)
		kind |= EV_WRITE;
	if (cs == NULL) {
		cs = xcalloc(1, sizeof(*cs));
		cs->ce = ce;
		curl_multi_assign(ce->multi, s, cs);
	} else
		event_free(cs->ev);
	cs->ev = event_new(ce->base, s, kind, sock_cb, ce);
	event_add(cs->ev, NULL);
	return 0;
}

struct curl_ev *
curl_ev_new(struct event_base *base)
{
	struct curl_ev *ce = xcalloc(1, sizeof(*ce));

	ce->base = base;
	if ((ce->multi = curl_multi_init()) == NULL)
		fatalx("curl_multi_init failed");
	ce->timer = evtimer_new(base, timer_cb, ce);
	curl_multi_setopt(ce->multi, CURLMOPT_SOCKETFUNCTION, multi_sock_cb);
	curl_multi_setopt(ce->multi, CURLMOPT_SOCKETDATA, ce);
	curl_multi_setopt(ce->multi, CURLMOPT_TIMERFUNCTION, multi_timer_cb);
	curl_multi_setopt(ce->multi, CURLMOPT_TIMERDATA, ce);
	return ce;
}

int
curl_ev_add(struct curl_ev *ce, CURL *easy, curl_ev_done_cb cb, void *arg)
{
	struct curl_ev_xfer *x = xcalloc(1, sizeof(*x));
	CURLMcode rc;

	x->cb = cb;
	x->arg = arg;
	curl_easy_setopt(easy, CURLOPT_PRIVATE, x);
	if ((rc = curl_multi_add_handle(ce->multi, easy)) != CURLM_OK) {
		log_warnx("curl_multi_add_handle: %s", curl_multi_strerror(rc));
		curl_easy_setopt(easy, CURLOPT_PRIVATE, NULL);
		free(x);
		return -1;
	}
	return 0;
}

void
curl_ev_remove(struct curl_ev *ce, CURL *easy)
{
	struct curl_ev_xfer *x = NULL;

	curl_easy_getinfo(easy, CURLINFO_PRIVATE, (char **)&x);
	curl_multi_remove_handle(ce->multi, easy);
	curl_easy_setopt(easy, CURLOPT_PRIVATE, NULL);
	free(x);
}

int
curl_ev_running(const struct curl_ev *ce)
{
	return ce->running;
}

CURLM *
curl_ev_multi(struct curl_ev *ce)
{
	return ce->multi;
}

void
curl_ev_free(struct curl_ev *ce)
{
	if (ce == NULL)
		return;
	/* Transfers still attached are the owners' to clean up. */
	curl_multi_cleanup(ce->multi);
	event_free(ce->timer);
	free(ce);
}
