/* s_room_list.c: placeholder, replaced below */
#include "api.h"
void
s_room_list_run(struct api *api, struct sreq *r)
{
	(void)api;
	sync_stream_done(r);
}
