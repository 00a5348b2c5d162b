/*
 * ss_ext.c: the sliding sync extensions (to_device, e2ee, account_data,
 * typing, receipts). A stub until the extensions land: it serves none,
 * keeps no state and waits for nothing, so the core builds and runs.
 */
#include "ss.h"

void
ss_ext_run(struct api *api, struct ss_ctx *c, api_done_fn done, void *arg)
{
	(void)api;
	c->has_data = false;
	c->new_state = NULL;
	done(arg, 0, NULL, NULL);
}

unsigned
ss_ext_wake(struct json_object *cfg)
{
	(void)cfg;
	return 0;
}

int
ss_ext_check(struct json_object *extensions, struct ss_parse_err *err)
{
	(void)extensions;
	(void)err;
	return 0;
}
