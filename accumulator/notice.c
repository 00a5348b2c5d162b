/*
 * The change notices of one message: gathered as struct proto_notice
 * while its batch is applied (store.c, rooms.c, apply.c) and sent as they
 * are by notify.c after COMMIT. The ids (and a typing notice's list) a
 * notice points to often belong to the parsed body or a PGresult, freed
 * before COMMIT, so the list keeps its own copy of each notice's strings
 * and to-device messages (one block per notice, in bufs[]).
 */
#include <stdlib.h>
#include <string.h>

#include "accumulator.h"
#include "util.h"

/* The copy of n's strings, packed one after the other. */
static char *
notice_strings(struct proto_notice *n)
{
	const char **f[] = {&n->room_id, &n->user_id, &n->device_id,
	    &n->membership, &n->state, &n->user_ids};
	size_t len = 0, k;
	char *buf, *p;

	for (size_t i = 0; i < sizeof(f) / sizeof(f[0]); i++)
		if (*f[i] != NULL)
			len += strlen(*f[i]) + 1;
	if (n->td == NULL)
		n->td_len = 0;
	if ((len += n->td_len) == 0)
		return NULL;
	p = buf = xmalloc(len);
	for (size_t i = 0; i < sizeof(f) / sizeof(f[0]); i++) {
		if (*f[i] == NULL)
			continue;
		k = strlen(*f[i]) + 1;
		memcpy(p, *f[i], k);
		*f[i] = p;
		p += k;
	}
	if (n->td_len > 0) {
		memcpy(p, n->td, n->td_len);
		n->td = p;
	}
	return buf;
}

/* Adds a copy of n (seq and epoch are notify.c's, set when sent). */
void
notice_add(struct notice_list *l, const struct proto_notice *n)
{
	if (l->n == l->cap) {
		l->cap = l->cap ? l->cap * 2 : 16;
		l->v = xrealloc(l->v, l->cap * sizeof(*l->v));
		l->bufs = xrealloc(l->bufs, l->cap * sizeof(*l->bufs));
	}
	l->v[l->n] = *n;
	l->bufs[l->n] = notice_strings(&l->v[l->n]);
	l->n++;
}

void
notice_clear(struct notice_list *l)
{
	for (size_t i = 0; i < l->n; i++)
		free(l->bufs[i]);
	free(l->v);
	free(l->bufs);
	memset(l, 0, sizeof(*l));
}
