/*
 * json-c helpers: bounded parsing of untrusted input (depth limit, UTF-8
 * validation, whole-buffer check) and typed getters that return NULL or a
 * default instead of coercing the wrong type.
 */
#ifndef SYNCV3_JSON_UTIL_H
#define SYNCV3_JSON_UTIL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <json-c/json.h>

#define JSON_MAX_DEPTH 64

/*
 * Parses exactly one JSON value filling buf[0..len). Trailing bytes other
 * than whitespace, invalid UTF-8, too deep nesting or a NUL inside the
 * buffer all fail. Returns a new reference or NULL; *err (may be NULL) gets
 * a static description.
 */
struct json_object *json_parse_bounded(const char *buf, size_t len,
    const char **err);

/* Typed getters: NULL/false when missing or of another type. */
const char *json_get_str(struct json_object *obj, const char *key);
struct json_object *json_get_obj(struct json_object *obj, const char *key);
struct json_object *json_get_arr(struct json_object *obj, const char *key);
bool json_get_int(struct json_object *obj, const char *key, int64_t *out);
bool json_get_bool(struct json_object *obj, const char *key, bool *out);
/* obj->a->b->... with a NULL-terminated path; NULL if any step missing. */
struct json_object *json_get_path(struct json_object *obj, ...);

/* Compact serialisation without escaping '/'; borrowed from obj. */
const char *json_plain(struct json_object *obj, size_t *len);

#endif
