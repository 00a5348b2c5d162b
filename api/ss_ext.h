/*
 * ss_ext.h: the sliding sync extensions' own parts (ss.h holds the hook
 * the core calls). ss_ext_cfg.c is pure: the sticky configs read into
 * structs, the lists/rooms scope, the per-connection state blob and the
 * rules deciding which rooms get everything and which only changes.
 * ss_ext.c runs the one statement and writes the members.
 */
#ifndef SYNCV3_SS_EXT_H
#define SYNCV3_SS_EXT_H

#include "map.h"
#include "ss.h"

/* The extensions we serve; any other name a client sends is ignored. */
enum ss_ext_kind {
	SX_TO_DEVICE,
	SX_E2EE,
	SX_ACCOUNT_DATA,
	SX_TYPING,
	SX_RECEIPTS,
	SX_COUNT,
};
const char *ss_ext_name(enum ss_ext_kind k);

/* MSC3885 and Synapse: at most 100 to-device messages a response. */
#define SS_TD_LIMIT_DEFAULT 100
#define SS_TD_LIMIT_MAX 100

struct ss_ext_one {
	bool is_on;
	/* borrowed from the config; NULL: the default ["*"] */
	struct json_object *lists;
	struct json_object *rooms;
};

struct ss_ext_cfg {
	struct ss_ext_one x[SX_COUNT];
	int64_t td_since; /* to_device.since, -1 when absent */
	int64_t td_limit;
};

/* ss_ext_check (ss.h) lives in ss_ext_cfg.c: pure. */
/* Reads the merged sticky configs (borrowed) into out. */
void ss_ext_cfg_load(struct json_object *cfg, struct ss_ext_cfg *out);
/* Is room in e's scope (its lists, its room subscriptions)? */
bool ss_ext_scoped(const struct ss_ext_one *e, const struct ss_ctx *c,
                   const struct ss_ext_room *room);

/*
 * The state a connection keeps between responses: per room-scoped
 * extension (account_data, typing, receipts) whether it was on in the
 * confirmed response and the rooms it covered then. A room in scope now
 * and then gets only changes; a room new to the scope (or the extension
 * newly on) gets everything, so a room that left the window and came
 * back misses nothing of the time it was out.
 */
struct ss_ext_state {
	bool was_on[SX_COUNT];
	struct map scope[SX_COUNT]; /* room_id -> (void *)1 */
	/*
	 * receipts only: a room that left the scope -> the position its
	 * receipts had been sent up to. Account data and typing start over
	 * with all there is when the room comes back; receipts from scratch
	 * are only those of the timeline sent, so the ones made while it was
	 * out would never come (Synapse sends them: "previously" rooms).
	 */
	struct map rc_out; /* room_id -> int64 */
};
/* At most this many rooms kept in rc_out; one more falls back to fresh. */
#define SS_RC_OUT_MAX 1000
/* Parses a blob (NULL or bad: nothing was on). */
void ss_ext_state_parse(const char *blob, struct ss_ext_state *st);
/* The blob of st: malloc'd text. */
char *ss_ext_state_text(const struct ss_ext_state *st);
void ss_ext_state_free(struct ss_ext_state *st);

/*
 * Sorts the rooms of c into what extension k sends this round: fresh
 * (everything: the room is new to k's scope, or k was off), live
 * (changes after c->from_pos) or, receipts only, back (in prev's rc_out:
 * changes after the position it left at). Fills now with the scope (for
 * the next blob). Room ids are borrowed from c.
 */
struct ss_ext_rooms {
	const char **fresh;
	int nfresh;
	const char **live;
	int nlive;
	/* receipts: rooms back in scope, changes after back_since[i] */
	const char **back;
	int64_t *back_since;
	int nback;
};
void ss_ext_sort(enum ss_ext_kind k, const struct ss_ext_cfg *cfg,
                 const struct ss_ctx *c, const struct ss_ext_state *prev,
                 struct ss_ext_rooms *out, struct map *now);
void ss_ext_rooms_free(struct ss_ext_rooms *r);
/*
 * now's rc_out from prev's and the scopes (after ss_ext_sort): the rooms
 * that just left the receipts' scope (at c->from_pos) and those still
 * out.
 */
void ss_ext_rc_out(const struct ss_ctx *c, const struct ss_ext_state *prev,
                   struct ss_ext_state *now);

#endif
