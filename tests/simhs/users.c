/*
 * users.c: users, their devices and access tokens, and the per-user and
 * per-device streams that are not rooms: to-device queues, account data
 * and device list changes. Every change takes a new stream position and
 * wakes the user's long-polls through longpoll_touch().
 */
#include <ctype.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>

#include "simhs.h"

struct user *
user_get(struct simhs *ctx, const char *user_id)
{
	return map_get(&ctx->users, user_id);
}

struct user *
user_get_or_create(struct simhs *ctx, const char *user_id)
{
	struct user *u;

	if ((u = map_get(&ctx->users, user_id)) != NULL)
		return u;
	u = xcalloc(1, sizeof(*u));
	u->user_id = xstrdup(user_id);
	TAILQ_INIT(&u->waiters);
	map_put(&ctx->users, user_id, u);
	vec_push(&ctx->user_list, u);
	return u;
}

static bool
user_id_valid(const char *s)
{
	const char *colon;
	size_t i, len = strlen(s);

	if (len < 4 || len > 255 || s[0] != '@')
		return false;
	if ((colon = strchr(s, ':')) == NULL || colon == s + 1 ||
	    colon[1] == '\0')
		return false;
	for (i = 0; i < len; i++)
		if (iscntrl((unsigned char)s[i]) || s[i] == ' ')
			return false;
	return true;
}

/*
 * The user named by body.user_id, or by body.localpart on our server.
 * Returns an allocated, validated user id or NULL.
 */
char *
user_id_normalize(struct simhs *ctx, struct json_object *body)
{
	const char *id, *local;
	char *out;

	if ((id = json_str(body, "user_id")) != NULL)
		out = xstrdup(id);
	else if ((local = json_str(body, "localpart")) != NULL)
		out = xasprintf("@%s:%s", local, ctx->server_name);
	else
		return NULL;
	if (!user_id_valid(out)) {
		free(out);
		return NULL;
	}
	return out;
}

struct device *
device_get(struct user *u, const char *device_id)
{
	struct device *d;
	size_t i;

	for (i = 0; i < u->devices.n; i++) {
		d = u->devices.v[i];
		if (strcmp(d->device_id, device_id) == 0)
			return d;
	}
	return NULL;
}

/* A NULL device_id makes a fresh Synapse-style one (ten capitals). */
struct device *
device_get_or_create(struct user *u, const char *device_id)
{
	struct device *d;
	char id[11];
	size_t i;

	if (device_id == NULL) {
		random_letters(id, 10);
		for (i = 0; i < 10; i++)
			id[i] = (char)toupper((unsigned char)id[i]);
		device_id = id;
	}
	if ((d = device_get(u, device_id)) != NULL)
		return d;
	d = xcalloc(1, sizeof(*d));
	d->device_id = xstrdup(device_id);
	d->user = u;
	TAILQ_INIT(&d->todevice);
	d->otk_count = json_object_new_object();
	json_add_int(d->otk_count, "signed_curve25519", 0);
	d->fallback_types = json_object_new_array();
	d->fallback_names = "both";
	map_init(&d->ll_cache);
	vec_push(&u->devices, d);
	return d;
}

/*
 * Tokens look like Synapse's: syt_<b64 localpart>_<random>_<check>.
 * fixed, when not NULL, is used as is (demo data).
 */
struct token *
token_new(struct simhs *ctx, struct device *d, const char *fixed)
{
	unsigned char b64[400];
	const char *local = d->user->user_id + 1;
	size_t llen = strcspn(local, ":");
	char rnd[21], chk[7], *p;
	struct token *t;

	if (llen > 255)
		llen = 255;
	EVP_EncodeBlock(b64, (const unsigned char *)local, (int)llen);
	if ((p = strchr((char *)b64, '=')) != NULL)
		*p = '\0';
	random_letters(rnd, 20);
	random_b64url(chk, 6);
	for (p = chk; *p; p++)
		if (!isalnum((unsigned char)*p))
			*p = 'x';
	t = xcalloc(1, sizeof(*t));
	if (fixed != NULL)
		t->token = xstrdup(fixed);
	else
		t->token = xasprintf("syt_%s_%s_%s", b64, rnd, chk);
	t->device = d;
	map_put(&ctx->tokens, t->token, t);
	vec_push(&ctx->token_list, t);
	return t;
}

struct token *
token_get(struct simhs *ctx, const char *s)
{
	return map_get(&ctx->tokens, s);
}

uint64_t
todevice_push(struct simhs *ctx, struct device *d, const char *sender,
              const char *type, struct json_object *content)
{
	struct todevice *m;

	m = xcalloc(1, sizeof(*m));
	m->pos = ++ctx->pos;
	m->msg = json_object_new_object();
	json_add_str(m->msg, "sender", sender);
	json_add_str(m->msg, "type", type);
	json_object_object_add(m->msg, "content", json_object_get(content));
	TAILQ_INSERT_TAIL(&d->todevice, m, entry);
	d->ntodevice++;
	longpoll_touch(ctx, d->user);
	return m->pos;
}

/*
 * The device synced with a since at or past these: like Synapse, forget
 * them. Until then a replayed since gets them again.
 */
void
todevice_ack(struct device *d, uint64_t upto)
{
	struct todevice *m;

	while ((m = TAILQ_FIRST(&d->todevice)) != NULL && m->pos <= upto) {
		TAILQ_REMOVE(&d->todevice, m, entry);
		json_object_put(m->msg);
		free(m);
		d->ntodevice--;
	}
}

/* Set global (room_id NULL) or room account data; takes a content ref. */
void
acct_set(struct simhs *ctx, struct user *u, const char *room_id,
         const char *type, struct json_object *content)
{
	struct acct_data *a = NULL;
	size_t i;

	for (i = 0; i < u->account_data.n; i++) {
		a = u->account_data.v[i];
		if (strcmp(a->type, type) == 0 &&
		    ((a->room_id == NULL && room_id == NULL) ||
		     (a->room_id != NULL && room_id != NULL &&
		      strcmp(a->room_id, room_id) == 0)))
			break;
		a = NULL;
	}
	if (a == NULL) {
		a = xcalloc(1, sizeof(*a));
		a->room_id = room_id != NULL ? xstrdup(room_id) : NULL;
		a->type = xstrdup(type);
		vec_push(&u->account_data, a);
	} else
		json_object_put(a->content);
	a->content = json_object_get(content);
	a->pos = ++ctx->pos;
	longpoll_touch(ctx, u);
}

void
devlist_add(struct simhs *ctx, struct user *u, const char *user_id,
            bool is_left)
{
	struct devlist_change *c;

	c = xcalloc(1, sizeof(*c));
	c->user_id = xstrdup(user_id);
	c->is_left = is_left;
	c->pos = ++ctx->pos;
	vec_push(&u->devlists, c);
	longpoll_touch(ctx, u);
}

static void
device_free(void *p)
{
	struct device *d = p;

	todevice_ack(d, UINT64_MAX);
	json_object_put(d->otk_count);
	json_object_put(d->fallback_types);
	map_clear(&d->ll_cache, free);
	json_object_put(d->device_keys);
	json_object_put(d->otk_ids);
	free(d->device_id);
	free(d);
}

static void
acct_free(void *p)
{
	struct acct_data *a = p;

	free(a->room_id);
	free(a->type);
	json_object_put(a->content);
	free(a);
}

static void
devlist_free(void *p)
{
	struct devlist_change *c = p;

	free(c->user_id);
	free(c);
}

static void
filter_free(void *p)
{
	json_object_put(p);
}

static void
user_free(void *p)
{
	struct user *u = p;

	vec_free(&u->devices, device_free);
	vec_free(&u->rooms, NULL);
	vec_free(&u->account_data, acct_free);
	vec_free(&u->devlists, devlist_free);
	vec_free(&u->filters, filter_free);
	free(u->user_id);
	free(u);
}

static void
token_free(void *p)
{
	struct token *t = p;

	free(t->token);
	free(t);
}

void
users_free(struct simhs *ctx)
{
	vec_free(&ctx->devchanges, devlist_free);
	map_clear(&ctx->tokens, NULL);
	vec_free(&ctx->token_list, token_free);
	map_clear(&ctx->users, NULL);
	vec_free(&ctx->user_list, user_free);
}
