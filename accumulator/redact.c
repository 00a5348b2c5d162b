/*
 * The redaction algorithm of the room versions (client-server spec
 * "Redactions", room versions 1-11): which top-level keys and which
 * content keys of each event type survive. Pure: json-c objects in, a new
 * object out, no I/O; redaction.c decides when to run it and stores the
 * result.
 */
#include <stdlib.h>
#include <string.h>

#include "redact.h"

/* What changed between room versions, as flags of redact_rules(). */
enum {
	RV_ALIASES = 1 << 0, /* v1-5: m.room.aliases keeps aliases */
	RV_ALLOW = 1 << 1,   /* v8+: join_rules keeps allow */
	RV_JAVUS = 1 << 2,   /* v9+: member keeps join_authorised_... */
	RV_V11 = 1 << 3,     /* v11+: create keeps all, fewer top keys */
};

/*
 * The rules of a room version string. Absent means "1" (the spec's
 * default for a create event without room_version). A version that is not
 * a number is an unstable one, and those build on the newest rules.
 */
static int
redact_rules(const char *version)
{
	char *end;
	long v;

	if (version == NULL || *version == '\0')
		version = "1";
	v = strtol(version, &end, 10);
	if (*end != '\0' || end == version || v < 1)
		v = 11;
	if (v <= 5)
		return RV_ALIASES;
	if (v < 8)
		return 0;
	if (v < 9)
		return RV_ALLOW;
	if (v < 11)
		return RV_ALLOW | RV_JAVUS;
	return RV_ALLOW | RV_JAVUS | RV_V11;
}

/* key of o when it is of type t (o may be NULL), else NULL */
static struct json_object *
get_typed(struct json_object *o, const char *key, enum json_type t)
{
	struct json_object *v;

	if (o == NULL || !json_object_object_get_ex(o, key, &v) ||
	    !json_object_is_type(v, t))
		return NULL;
	return v;
}

static const char *
get_str(struct json_object *o, const char *key)
{
	return json_object_get_string(get_typed(o, key, json_type_string));
}

/* Copies key of from into to, sharing the value, when it is there. */
static void
keep(struct json_object *to, struct json_object *from, const char *key)
{
	struct json_object *v;

	if (json_object_object_get_ex(from, key, &v))
		json_object_object_add(to, key, json_object_get(v));
}

static void
keep_list(struct json_object *to, struct json_object *from,
          const char *const *keys)
{
	for (; *keys != NULL; keys++)
		keep(to, from, *keys);
}

/* The content an event of type keeps under rules. */
static struct json_object *
prune_content(const char *type, struct json_object *c, int rules)
{
	static const char *const pl[] = {
	    "ban",           "events", "events_default", "kick", "redact",
	    "state_default", "users",  "users_default",  NULL};
	struct json_object *out, *tpi, *signed_;

	if (strcmp(type, "m.room.create") == 0 && (rules & RV_V11))
		return json_object_get(c);
	out = json_object_new_object();
	if (strcmp(type, "m.room.member") == 0) {
		keep(out, c, "membership");
		if (rules & RV_JAVUS)
			keep(out, c, "join_authorised_via_users_server");
		/* v11 keeps third_party_invite, with only its signed key */
		if ((rules & RV_V11) &&
		    (tpi = get_typed(c, "third_party_invite",
		                     json_type_object)) != NULL &&
		    json_object_object_get_ex(tpi, "signed", &signed_)) {
			struct json_object *t = json_object_new_object();
			json_object_object_add(t, "signed",
			                       json_object_get(signed_));
			json_object_object_add(out, "third_party_invite", t);
		}
	} else if (strcmp(type, "m.room.create") == 0)
		keep(out, c, "creator");
	else if (strcmp(type, "m.room.join_rules") == 0) {
		keep(out, c, "join_rule");
		if (rules & RV_ALLOW)
			keep(out, c, "allow");
	} else if (strcmp(type, "m.room.power_levels") == 0) {
		keep_list(out, c, pl);
		if (rules & RV_V11)
			keep(out, c, "invite");
	} else if (strcmp(type, "m.room.aliases") == 0) {
		if (rules & RV_ALIASES)
			keep(out, c, "aliases");
	} else if (strcmp(type, "m.room.history_visibility") == 0)
		keep(out, c, "history_visibility");
	else if (strcmp(type, "m.room.redaction") == 0 && (rules & RV_V11))
		keep(out, c, "redacts");
	return out;
}

struct json_object *
redact_prune(struct json_object *ev, const char *room_version,
             struct json_object *because)
{
	static const char *const top[] = {
	    "event_id",    "type",        "room_id",          "sender",
	    "state_key",   "hashes",      "signatures",       "depth",
	    "prev_events", "auth_events", "origin_server_ts", NULL};
	static const char *const top_old[] = {"prev_state", "origin",
	                                      "membership", NULL};
	/* what Synapse keeps of unsigned: none of it is content */
	static const char *const uns_keep[] = {"age", "age_ts",
	                                       "replaces_state", NULL};
	int rules = redact_rules(room_version);
	struct json_object *out, *c, *u, *uo;
	const char *type;

	if (!json_object_is_type(ev, json_type_object))
		return NULL;
	out = json_object_new_object();
	keep_list(out, ev, top);
	if (!(rules & RV_V11))
		keep_list(out, ev, top_old);
	type = get_str(ev, "type");
	if ((c = get_typed(ev, "content", json_type_object)) != NULL &&
	    type != NULL)
		json_object_object_add(out, "content",
		                       prune_content(type, c, rules));
	else
		json_object_object_add(out, "content",
		                       json_object_new_object());
	uo = json_object_new_object();
	if ((u = get_typed(ev, "unsigned", json_type_object)) != NULL)
		keep_list(uo, u, uns_keep);
	if (because != NULL)
		json_object_object_add(uo, "redacted_because",
		                       json_object_get(because));
	json_object_object_add(out, "unsigned", uo);
	return out;
}

const char *
redact_target(struct json_object *redaction)
{
	struct json_object *c;
	const char *t;

	/* v1-10 put it at the top, v11 in content; either will do */
	if ((t = get_str(redaction, "redacts")) != NULL && *t != '\0')
		return t;
	if ((c = get_typed(redaction, "content", json_type_object)) != NULL &&
	    (t = get_str(c, "redacts")) != NULL && *t != '\0')
		return t;
	return NULL;
}
