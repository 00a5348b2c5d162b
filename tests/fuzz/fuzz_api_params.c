/*
 * libFuzzer target for the api's sticky parameters (api/params.c): a
 * request body is merged into stored parameters and parsed with
 * negotiation. Checks: no crash; a merged object always re-validates;
 * merging the same delta twice changes nothing the second time; every
 * negotiated value is within its bounds; every room id kept fits the
 * spec's 255 bytes. Seed corpus:
 * tests/fuzz/corpus/api_params/.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "api.h"
#include "json_util.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void
check_params(struct json_object *obj)
{
	struct params p;

	params_parse(obj, &p);
	if (p.has_to_device && (p.td_limit < 1 || p.td_limit > TD_LIMIT_MAX))
		abort();
	if (p.has_member && (p.m_limit < 1 || p.m_limit > M_LIMIT_MAX ||
	    p.m_room == NULL || p.m_page < -1))
		abort();
	if (p.has_typing && p.typing_room == NULL)
		abort();
	if (p.has_list && (p.l_limit < 1 || p.l_limit > L_LIMIT_MAX ||
	    p.l_timeline < 0 || p.l_timeline > L_TIMELINE_MAX ||
	    p.l_nsorts < 1 || p.l_nsorts > PARAMS_MAX_SORTS ||
	    p.l_nst > PARAMS_MAX_STATE || p.l_nspaces > PARAMS_MAX_SPACES ||
	    p.l_page < -1))
		abort();
	for (int i = 0; p.has_list && i < p.l_nsorts; i++)
		if (sort_name(p.l_sorts[i])[0] == 'u')
			abort();
	if ((p.has_typing && strlen(p.typing_room) > 255) ||
	    (p.has_member && strlen(p.m_room) > 255))
		abort();
	for (int i = 0; p.has_list && i < p.l_nspaces; i++)
		if (strlen(p.l_spaces[i]) > 255)
			abort();
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct json_object *delta, *stored, *copy, *fresh;
	const char *ec, *em;
	bool changed;

	delta = json_parse_bounded((const char *)data, size, NULL);
	if (delta == NULL)
		return 0;
	stored = json_tokener_parse("{\"typing\":{\"room_id\":\"!a:hs\"},"
	    "\"room_member\":{\"room_id\":\"!a:hs\",\"limit\":3,"
	    "\"next_page\":\"2\"},\"room_list\":{\"sort\":[\"by_name\"],"
	    "\"state_events\":[[\"*\",\"*\"]]}}");
	if (params_merge(stored, delta, &changed, &ec, &em) == 0) {
		check_params(stored);
		if (params_merge(stored, delta, &changed, &ec, &em) != 0 ||
		    changed)
			abort();
		/* what was stored must pass as a body again */
		copy = NULL;
		if (json_object_deep_copy(stored, &copy, NULL) != 0)
			abort();
		fresh = json_object_new_object();
		if (params_merge(fresh, copy, &changed, &ec, &em) != 0)
			abort();
		json_object_put(fresh);
		json_object_put(copy);
	} else if (ec == NULL || em == NULL)
		abort();
	json_object_put(stored);
	json_object_put(delta);
	return 0;
}
