/*
 * scenario.c: bulk data for benchmarks and large-account tests
 * (POST /_simhs/scenario) and the fixed demo data behind -d. Everything
 * goes through the same room model as single admin calls, just without
 * HTTP in between, so 10,000 rooms take seconds.
 */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "simhs.h"

#define SCENARIO_MAX_EVENTS 20000000LL

struct scenario {
	int64_t users;
	int64_t rooms_per_user;
	int64_t members;
	int64_t messages;
	const char *prefix;
};

static void
send_text(struct simhs *ctx, struct room *r, const char *sender,
          const char *body)
{
	struct json_object *c = json_object_new_object();

	json_add_str(c, "msgtype", "m.text");
	json_add_str(c, "body", body);
	room_append(ctx, r, sender, "m.room.message", NULL, c);
	json_object_put(c);
}

static int64_t
int_arg(struct json_object *b, const char *key, int64_t dflt)
{
	struct json_object *v = json_get(b, key, json_type_int);

	return v != NULL ? json_object_get_int64(v) : dflt;
}

static const char *
scenario_parse(struct json_object *b, struct scenario *s)
{
	const char *p;

	s->users = int_arg(b, "users", 1);
	s->rooms_per_user = int_arg(b, "rooms_per_user", 1);
	s->members = int_arg(b, "members_per_room", 2);
	s->messages = int_arg(b, "messages_per_room", 5);
	s->prefix = json_str(b, "prefix");
	if (s->prefix == NULL)
		s->prefix = "bench";
	if (s->users < 1 || s->users > 100000 || s->rooms_per_user < 0 ||
	    s->rooms_per_user > 100000 || s->members < 1 ||
	    s->members > 10000 || s->messages < 0 || s->messages > 100000)
		return "users 1-100000, rooms_per_user 0-100000, "
		       "members_per_room 1-10000, messages_per_room 0-100000";
	if (s->users * s->rooms_per_user * (8 + s->members + s->messages) >
	    SCENARIO_MAX_EVENTS)
		return "scenario too large (20M events max)";
	if (s->prefix[0] == '\0' || strlen(s->prefix) > 64)
		return "bad prefix";
	for (p = s->prefix; *p; p++)
		if (!islower((unsigned char)*p) &&
		    !isdigit((unsigned char)*p) && strchr("._=-", *p) == NULL)
			return "prefix must be [a-z0-9._=-]";
	return NULL;
}

/* One room: creator, the shared filler members, then messages. */
static struct room *
scenario_room(struct simhs *ctx, const struct scenario *s, struct user *u,
              struct ptrvec *fillers, int64_t n)
{
	struct user *sender;
	struct room *r;
	const char *err;
	char name[160];
	size_t i;

	snprintf(name, sizeof(name), "%s room %s #%lld", s->prefix, u->user_id,
	         (long long)n);
	r = admin_room_create(ctx, u, NULL, name, false, false);
	for (i = 0; i < fillers->n; i++)
		(void)admin_membership(ctx, r, "join", fillers->v[i],
		                       fillers->v[i], NULL, &err);
	for (n = 0; n < s->messages; n++) {
		sender = (size_t)n % (fillers->n + 1) == 0
		             ? u
		             : fillers->v[(size_t)n % (fillers->n + 1) - 1];
		snprintf(name, sizeof(name), "message %lld in %s", (long long)n,
		         r->room_id);
		send_text(ctx, r, sender->user_id, name);
	}
	return r;
}

static struct json_object *
scenario_user(struct simhs *ctx, const struct scenario *s, int64_t i)
{
	struct json_object *o = json_object_new_object();
	struct device *d;
	struct token *t;
	struct user *u;
	char buf[160];

	snprintf(buf, sizeof(buf), "@%s%lld:%s", s->prefix, (long long)i,
	         ctx->server_name);
	u = user_get_or_create(ctx, buf);
	snprintf(buf, sizeof(buf), "SIMDEV%lld", (long long)i);
	d = device_get_or_create(u, buf);
	t = token_new(ctx, d, NULL);
	json_add_str(o, "user_id", u->user_id);
	json_add_str(o, "access_token", t->token);
	json_add_str(o, "device_id", d->device_id);
	return o;
}

/* POST /_simhs/scenario */
void
scenario_run(struct evhttp_request *req, struct simhs *ctx,
             struct json_object *b)
{
	struct json_object *users, *rooms, *o, *uo;
	struct ptrvec fillers = {0};
	struct scenario s;
	struct room *r;
	struct user *u;
	const char *err;
	char buf[160];
	int64_t i, j;

	if ((err = scenario_parse(b, &s)) != NULL) {
		http_reply_error(req, 400, "M_INVALID_PARAM", err);
		return;
	}
	for (i = 0; i < s.members - 1; i++) {
		snprintf(buf, sizeof(buf), "@%s-m%lld:%s", s.prefix,
		         (long long)i, ctx->server_name);
		vec_push(&fillers, user_get_or_create(ctx, buf));
	}
	users = json_object_new_array();
	rooms = json_object_new_array();
	for (i = 1; i <= s.users; i++) {
		uo = scenario_user(ctx, &s, i);
		u = user_get(ctx, json_str(uo, "user_id"));
		json_object_array_add(users, uo);
		for (j = 0; j < s.rooms_per_user; j++) {
			r = scenario_room(ctx, &s, u, &fillers, j);
			json_object_array_add(
			    rooms, json_object_new_string(r->room_id));
		}
	}
	vec_free(&fillers, NULL);
	o = json_object_new_object();
	json_object_object_add(o, "users", users);
	json_object_object_add(o, "rooms", rooms);
	json_add_int(o, "pos", (int64_t)ctx->pos);
	http_reply_json(req, 200, o);
}

/* -d: alice and bob in "Demo room", bob typing. See README.md. */
void
scenario_demo(struct simhs *ctx)
{
	static const char *lines[] = {"Hello Bob!", "Hi Alice, how are you?",
	                              "Fine, testing the sliding sync proxy.",
	                              "Looks like it works."};
	struct user *alice, *bob;
	struct json_object *ids;
	const char *err;
	struct room *r;
	char *id;
	size_t i;

	id = xasprintf("@alice:%s", ctx->server_name);
	alice = user_get_or_create(ctx, id);
	free(id);
	id = xasprintf("@bob:%s", ctx->server_name);
	bob = user_get_or_create(ctx, id);
	free(id);
	(void)token_new(ctx, device_get_or_create(alice, "ALICEDEV"),
	                "syt_alice_demo");
	(void)token_new(ctx, device_get_or_create(bob, "BOBDEV"),
	                "syt_bob_demo");
	id = xasprintf("!demo:%s", ctx->server_name);
	r = admin_room_create(ctx, alice, id, "Demo room", true, false);
	free(id);
	(void)admin_membership(ctx, r, "join", bob, bob, "Bob", &err);
	for (i = 0; i < sizeof(lines) / sizeof(lines[0]); i++)
		send_text(ctx, r, i % 2 ? bob->user_id : alice->user_id,
		          lines[i]);
	ids = json_object_new_array();
	json_object_array_add(ids, json_object_new_string(bob->user_id));
	room_set_typing(ctx, r, ids);
	json_object_put(ids);
	log_debug(ctx, "demo: %s with alice and bob", r->room_id);
}
