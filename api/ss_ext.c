/*
 * ss_ext.c: the sliding sync extensions (to_device, e2ee, account_data,
 * typing, receipts). Their configs are checked and their wake-ups known
 * (ss_ext_cfg.c); serving them lands with their statement.
 */
#include "ss_ext.h"

void
ss_ext_run(struct api *api, struct ss_ctx *c, api_done_fn done, void *arg)
{
	struct ss_parse_err err;

	(void)api;
	c->has_data = false;
	c->new_state = NULL;
	if (ss_ext_check(c->cfg, &err) == -1) {
		done(arg, err.status, err.errcode, err.msg);
		return;
	}
	done(arg, 0, NULL, NULL);
}

unsigned
ss_ext_wake(struct json_object *cfg)
{
	struct ss_ext_cfg x;
	unsigned w = 0;

	ss_ext_cfg_load(cfg, &x);
	if (x.x[SX_TO_DEVICE].is_on || x.x[SX_E2EE].is_on)
		w |= SS_WAKE_TO_DEVICE;
	if (x.x[SX_ACCOUNT_DATA].is_on)
		w |= SS_WAKE_ACCOUNT_DATA;
	if (x.x[SX_TYPING].is_on)
		w |= SS_WAKE_TYPING;
	if (x.x[SX_RECEIPTS].is_on)
		w |= SS_WAKE_RECEIPTS;
	return w;
}
