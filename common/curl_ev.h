/*
 * libcurl's multi socket API driven by a libevent loop (the hiperfifo
 * pattern): curl tells us which sockets to watch and when its timer is
 * due; we tell curl when a socket is ready. Completed transfers are handed
 * to their done callback. Used by the poller (many long-polls) and the api
 * (/whoami).
 */
#ifndef SYNCV3_CURL_EV_H
#define SYNCV3_CURL_EV_H

#include <curl/curl.h>
#include <event2/event.h>

struct curl_ev;

/*
 * Called once when a transfer ends (any result). The easy handle has been
 * removed from the multi handle; the callback owns it (clean it up or
 * reuse it).
 */
typedef void (*curl_ev_done_cb)(CURL *easy, CURLcode result, void *arg);

struct curl_ev *curl_ev_new(struct event_base *base);
/* Starts a transfer. Returns 0 or -1 (then nothing was started). */
int curl_ev_add(struct curl_ev *ce, CURL *easy, curl_ev_done_cb cb,
    void *arg);
/* Aborts a running transfer: its callback is not called. */
void curl_ev_remove(struct curl_ev *ce, CURL *easy);
int curl_ev_running(const struct curl_ev *ce);
/* The multi handle, for its options (connection cache size...). */
CURLM *curl_ev_multi(struct curl_ev *ce);
void curl_ev_free(struct curl_ev *ce);

#endif
