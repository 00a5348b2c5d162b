/*
 * account_data.c: the client side of account data, as Synapse serves it:
 * PUT and GET /user/{userId}/account_data/{type} and
 * /user/{userId}/rooms/{roomId}/account_data/{type}, with the caller's
 * token. The store itself is acct_set() in users.c, which the admin call
 * also uses; every device of the user sees a change in its next /sync.
 */
#include <stdlib.h>
#include <string.h>

#include "simhs.h"

struct acct_path {
	char *user_id;
	char *room_id; /* NULL: global */
	char *type;
};

static void
acct_path_free(struct acct_path *p)
{
	free(p->user_id);
	free(p->room_id);
	free(p->type);
}

/* "user/<u>/account_data/<t>" or "user/<u>/rooms/<r>/account_data/<t>" */
static int
acct_path_parse(const char *path, struct acct_path *out)
{
	const char *p = path + strlen("user/"), *q;

	memset(out, 0, sizeof(*out));
	if ((q = strchr(p, '/')) == NULL)
		return -1;
	out->user_id = xasprintf("%.*s", (int)(q - p), p);
	p = q + 1;
	if (strncmp(p, "rooms/", 6) == 0) {
		p += 6;
		if ((q = strchr(p, '/')) == NULL)
			return -1;
		out->room_id = xasprintf("%.*s", (int)(q - p), p);
		p = q + 1;
	}
	if (strncmp(p, "account_data/", 13) != 0 || p[13] == '\0')
		return -1;
	out->type = xstrdup(p + 13);
	return 0;
}

static struct acct_data *
acct_find(struct user *u, const char *room_id, const char *type)
{
	struct acct_data *a;
	size_t i;

	for (i = 0; i < u->account_data.n; i++) {
		a = u->account_data.v[i];
		if (strcmp(a->type, type) != 0 ||
		    (a->room_id == NULL) != (room_id == NULL))
			continue;
		if (room_id == NULL || strcmp(a->room_id, room_id) == 0)
			return a;
	}
	return NULL;
}

/* The checks both methods share; replies and returns -1 on failure. */
static int
acct_check(struct creq *c, struct acct_path *p, bool is_put)
{
	const char *uid = c->tok->device->user->user_id;

	if (strcmp(p->user_id, uid) != 0) {
		creq_error(c, 403, "M_FORBIDDEN",
		           is_put ? "Cannot add account data for other users."
		                  : "Cannot get account data for other users.");
		return -1;
	}
	if (p->room_id != NULL &&
	    (p->room_id[0] != '!' || strchr(p->room_id, ':') == NULL)) {
		creq_error(c, 400, "M_INVALID_PARAM",
		           "room_id is not a valid room ID");
		return -1;
	}
	if (!is_put)
		return 0;
	/* Synapse sends these two to their own endpoints. */
	if (p->room_id == NULL && strcmp(p->type, "m.push_rules") == 0) {
		creq_error(c, 400, "M_BAD_JSON",
		           "Cannot set m.push_rules through this API. Use the "
		           "/pushrules endpoint");
		return -1;
	}
	if (p->room_id != NULL && strcmp(p->type, "m.fully_read") == 0) {
		creq_error(c, 405, "M_BAD_JSON",
		           "Cannot set m.fully_read through this API. Use "
		           "/rooms/!roomId:server.name/read_markers");
		return -1;
	}
	return 0;
}

static void
acct_put(struct creq *c, struct acct_path *p)
{
	struct json_object *body;

	if ((body = creq_body_object(c)) == NULL)
		return;
	acct_set(c->ctx, c->tok->device->user, p->room_id, p->type, body);
	json_object_put(body);
	creq_reply(c, 200, json_object_new_object());
}

static void
acct_handle(struct creq *c, bool is_put)
{
	struct acct_path p;
	struct acct_data *a;

	if (acct_path_parse(c->path, &p) < 0) {
		creq_error(c, 404, "M_UNRECOGNIZED", "Unrecognized request");
		goto out;
	}
	if (acct_check(c, &p, is_put) < 0)
		goto out;
	if (is_put) {
		acct_put(c, &p);
		goto out;
	}
	a = acct_find(c->tok->device->user, p.room_id, p.type);
	if (a == NULL)
		creq_error(c, 404, "M_NOT_FOUND", "Account data not found");
	else
		creq_reply(c, 200, json_object_get(a->content));
out:
	acct_path_free(&p);
}

void
account_data_put_handle(struct creq *c)
{
	acct_handle(c, true);
}

void
account_data_get_handle(struct creq *c)
{
	acct_handle(c, false);
}

/*
 * Does u ignore sender (m.ignored_user_list in their global account
 * data)? Synapse leaves such a sender's non-state events and invites out
 * of u's /sync, so the proxy's own poll of u never carries them.
 */
bool
account_data_ignores(struct user *u, const char *sender)
{
	struct acct_data *a = acct_find(u, NULL, "m.ignored_user_list");
	struct json_object *iu;

	if (a == NULL || sender == NULL ||
	    !json_object_object_get_ex(a->content, "ignored_users", &iu) ||
	    !json_object_is_type(iu, json_type_object))
		return false;
	return json_object_object_get_ex(iu, sender, NULL);
}
