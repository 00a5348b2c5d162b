/*
 * The redaction algorithm (redact.c), on json-c objects only, so the
 * simulated homeserver serves redacted events by the same rules.
 */
#ifndef SYNCV3_REDACT_H
#define SYNCV3_REDACT_H

#include <json-c/json.h>

/*
 * ev as the room version's redaction algorithm leaves it, with
 * unsigned.redacted_because set to because (may be NULL): a new object
 * sharing ev's values, or NULL when ev is not an object.
 */
struct json_object *redact_prune(struct json_object *ev,
    const char *room_version, struct json_object *because);
/* The event id a redaction names (top-level or content redacts). */
const char *redact_target(struct json_object *redaction);

#endif
