/*
 * webview.c: the live web view at /_syncv3/client/ (README, "Web view"):
 * api/web's static files, built into the binary (webview_files[], made
 * by api/web/embed.cmake), served by name. The page talks to this api's
 * own sliding sync endpoint, so its Content-Security-Policy allows
 * nothing but this origin's script, style and requests: event content a
 * room member wrote can never run as script, even if the page had a bug
 * that put it in as HTML (it sets text only).
 */
#include <string.h>

#include <event2/buffer.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>

#include "api.h"

#define WEBVIEW_PREFIX "/_syncv3/client/"

static const char csp[] =
    "default-src 'none'; script-src 'self'; style-src 'self'; "
    "connect-src 'self'; img-src 'self' data:; base-uri 'none'; "
    "form-action 'none'; frame-ancestors 'none'";

static const struct webview_file *
webview_find(const char *name)
{
	for (const struct webview_file *f = webview_files; f->name != NULL;
	     f++) {
		if (strcmp(f->name, name) == 0)
			return f;
	}
	return NULL;
}

static void
webview_send(struct evhttp_request *req, const struct webview_file *f)
{
	struct evkeyvalq *h = evhttp_request_get_output_headers(req);
	struct evbuffer *b = evbuffer_new();

	evhttp_add_header(h, "Content-Type", f->type);
	evhttp_add_header(h, "Content-Security-Policy", csp);
	evhttp_add_header(h, "X-Content-Type-Options", "nosniff");
	evhttp_add_header(h, "X-Frame-Options", "DENY");
	evhttp_add_header(h, "Referrer-Policy", "no-referrer");
	evhttp_add_header(h, "Cache-Control", "no-cache");
	evbuffer_add_reference(b, f->data, f->len, NULL, NULL);
	evhttp_send_reply(req, 200, "OK", b);
	evbuffer_free(b);
}

/*
 * 0 if path is the web view's (answered), -1 if not. A name is looked
 * up as it is, among the files built in: nothing else can be read.
 */
int
webview_handle(struct api *api, struct evhttp_request *req, const char *path)
{
	enum evhttp_cmd_type m = evhttp_request_get_command(req);
	const struct webview_file *f;
	const char *name;

	(void)api; /* the files are the binary's, not the api's state */
	if (strcmp(path, "/_syncv3/client") == 0) {
		evhttp_add_header(evhttp_request_get_output_headers(req),
		                  "Location", WEBVIEW_PREFIX);
		evhttp_send_reply(req, 301, "Moved Permanently", NULL);
		return 0;
	}
	if (strncmp(path, WEBVIEW_PREFIX, strlen(WEBVIEW_PREFIX)) != 0)
		return -1;
	if (m != EVHTTP_REQ_GET && m != EVHTTP_REQ_HEAD) {
		http_error(req, 405, "M_UNRECOGNIZED",
		           "method not allowed on this path");
		return 0;
	}
	name = path + strlen(WEBVIEW_PREFIX);
	if ((f = webview_find(name[0] == '\0' ? "index.html" : name)) == NULL)
		http_error(req, 404, "M_NOT_FOUND", "no such file");
	else
		webview_send(req, f);
	return 0;
}
