/*
 * cors.c: the CORS headers every answer carries, ours and passed-through
 * ones alike, and the answer to a browser's pre-flight. The Matrix
 * client-server spec ("Web Browser Clients") asks a homeserver for these
 * three headers on every response, and to answer OPTIONS on every
 * endpoint without running the endpoint's logic, so a pre-flight is
 * answered here and never reaches the homeserver or a handler. Like
 * Synapse's, they also let a page send If-Match and If-None-Match and
 * read ETag: MSC4108's rendezvous (sign in with a QR code) needs them,
 * and matrix-js-sdk's MSC4108RendezvousSession posts to it through us
 * (the homeserver's own CORS headers are replaced by these).
 */
#include <strings.h>

#include <event2/buffer.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>

#include "api.h"

static const struct {
	const char *name, *value;
} cors_headers[] = {
    {"Access-Control-Allow-Origin", "*"},
    {"Access-Control-Allow-Methods", "GET, POST, PUT, DELETE, OPTIONS"},
    {"Access-Control-Allow-Headers",
     "X-Requested-With, Content-Type, Authorization, If-Match, "
     "If-None-Match"},
    {"Access-Control-Expose-Headers", "ETag"},
};

void
cors_add(struct evhttp_request *req)
{
	struct evkeyvalq *h = evhttp_request_get_output_headers(req);

	for (size_t i = 0; i < sizeof(cors_headers) / sizeof(cors_headers[0]);
	     i++) {
		evhttp_remove_header(h, cors_headers[i].name);
		evhttp_add_header(h, cors_headers[i].name,
		                  cors_headers[i].value);
	}
}

/* The same headers as raw lines, for answers written past evhttp. */
void
cors_add_raw(struct evbuffer *out)
{
	for (size_t i = 0; i < sizeof(cors_headers) / sizeof(cors_headers[0]);
	     i++)
		evbuffer_add_printf(out, "%s: %s\r\n", cors_headers[i].name,
		                    cors_headers[i].value);
}

bool
cors_is_own(const char *header)
{
	return strncasecmp(header, "Access-Control-", 15) == 0;
}

bool
cors_preflight(struct evhttp_request *req)
{
	if (evhttp_request_get_command(req) != EVHTTP_REQ_OPTIONS)
		return false;
	evhttp_send_reply(req, 204, "No Content", NULL);
	return true;
}
