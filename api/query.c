/*
 * query.c: the /sync query string (pure, no request needed, so it can be
 * fuzzed): timeout in ms (capped), since (syntax checked here, MAC and
 * session later), and the refusal of ?access_token=.
 */
#include <stdlib.h>
#include <string.h>
#include <sys/queue.h>

#include <event2/http.h>
#include <event2/keyvalq_struct.h>

#include "api.h"
#include "util.h"

/*
 * Parses the /sync query string: timeout (capped at max_timeout_ms) and
 * since (syntax only; its MAC is checked once the device is known).
 */
int
query_parse(const char *q, long long max_timeout_ms, struct query *out,
    const char **errcode, const char **err)
{
	struct evkeyvalq kv;
	const char *v;
	long long t;
	int rc = -1;

	memset(out, 0, sizeof(*out));
	out->timeout_ms = -1;
	TAILQ_INIT(&kv);
	*errcode = "M_INVALID_PARAM";
	if (q != NULL && evhttp_parse_query_str(q, &kv) != 0) {
		*err = "malformed query string";
		goto out;
	}
	if (evhttp_find_header(&kv, "access_token") != NULL) {
		*errcode = "M_MISSING_TOKEN";
		*err = "access_token in the query string is not supported; "
		    "send Authorization: Bearer <token>";
		goto out;
	}
	if ((v = evhttp_find_header(&kv, "timeout")) != NULL) {
		if (v[0] == '+' || v[0] == '-' || parse_i64(v, &t) == -1 ||
		    t < 0) {
			*err = "timeout must be a non-negative integer (ms)";
			goto out;
		}
		out->timeout_ms = t > max_timeout_ms ? max_timeout_ms : t;
	}
	if ((v = evhttp_find_header(&kv, "since")) != NULL && *v != '\0') {
		if (since_parse(v, &out->from) == -1) {
			/* from an older release or garbage: start again */
			*errcode = "M_UNKNOWN_SYNC_SESSION";
			*err = "since is not a sync token of this server; "
			    "start a new session";
			goto out;
		}
		out->since = xstrdup(v);
	}
	rc = 0;
out:
	evhttp_clear_headers(&kv);
	if (rc == -1)
		query_free(out);
	return rc;
}

void
query_free(struct query *q)
{
	free(q->since);
	q->since = NULL;
}
