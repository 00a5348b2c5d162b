/*
 * Helpers around json-c used by every daemon. All untrusted JSON (bodies
 * from clients, upstream responses, peer meta frames) goes through
 * json_parse_bounded().
 */
#include <stdarg.h>
#include <string.h>

#include "json_util.h"

/*
 * Parses exactly one JSON value from untrusted bytes: depth-limited,
 * strict, UTF-8 checked, and nothing but whitespace after it (json-c alone
 * would accept a prefix). Returns NULL with *err saying why.
 */
struct json_object *
json_parse_bounded(const char *buf, size_t len, const char **err)
{
	struct json_tokener *tok;
	struct json_object *obj = NULL;
	enum json_tokener_error jerr;
	size_t off;
	const char *e = NULL;

	if (len > INT32_MAX) {
		e = "too large";
		goto out;
	}
	if ((tok = json_tokener_new_ex(JSON_MAX_DEPTH)) == NULL) {
		e = "out of memory";
		goto out;
	}
	json_tokener_set_flags(tok, JSON_TOKENER_STRICT |
	    JSON_TOKENER_VALIDATE_UTF8);
	obj = json_tokener_parse_ex(tok, buf, (int)len);
	jerr = json_tokener_get_error(tok);
	off = json_tokener_get_parse_end(tok);
	if (obj == NULL || jerr != json_tokener_success) {
		e = jerr == json_tokener_continue ? "truncated JSON"
		    : json_tokener_error_desc(jerr);
		json_object_put(obj);
		obj = NULL;
	} else {
		for (; off < len; off++) {
			char c = buf[off];
			if (c != ' ' && c != '\t' && c != '\r' && c != '\n') {
				e = "trailing data after JSON value";
				json_object_put(obj);
				obj = NULL;
				break;
			}
		}
	}
	json_tokener_free(tok);
out:
	if (err != NULL)
		*err = e;
	return obj;
}

const char *
json_get_str(struct json_object *obj, const char *key)
{
	struct json_object *v;

	if (obj == NULL || !json_object_is_type(obj, json_type_object) ||
	    !json_object_object_get_ex(obj, key, &v) ||
	    !json_object_is_type(v, json_type_string))
		return NULL;
	return json_object_get_string(v);
}

static struct json_object *
get_typed(struct json_object *obj, const char *key, enum json_type t)
{
	struct json_object *v;

	if (obj == NULL || !json_object_is_type(obj, json_type_object) ||
	    !json_object_object_get_ex(obj, key, &v) ||
	    !json_object_is_type(v, t))
		return NULL;
	return v;
}

struct json_object *
json_get_obj(struct json_object *obj, const char *key)
{
	return get_typed(obj, key, json_type_object);
}

struct json_object *
json_get_arr(struct json_object *obj, const char *key)
{
	return get_typed(obj, key, json_type_array);
}

bool
json_get_int(struct json_object *obj, const char *key, int64_t *out)
{
	struct json_object *v = get_typed(obj, key, json_type_int);

	if (v == NULL)
		return false;
	*out = json_object_get_int64(v);
	return true;
}

bool
json_get_bool(struct json_object *obj, const char *key, bool *out)
{
	struct json_object *v = get_typed(obj, key, json_type_boolean);

	if (v == NULL)
		return false;
	*out = json_object_get_boolean(v);
	return true;
}

struct json_object *
json_get_path(struct json_object *obj, ...)
{
	va_list ap;
	const char *key;

	va_start(ap, obj);
	while (obj != NULL && (key = va_arg(ap, const char *)) != NULL)
		obj = json_get_obj(obj, key) ? json_get_obj(obj, key)
		    : get_typed(obj, key, json_type_array);
	va_end(ap);
	return obj;
}

const char *
json_plain(struct json_object *obj, size_t *len)
{
	return json_object_to_json_string_length(obj,
	    JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE, len);
}
