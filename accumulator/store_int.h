/* Shared between store.c and rooms.c only. */
#ifndef SYNCV3_ACC_STORE_INT_H
#define SYNCV3_ACC_STORE_INT_H

#include "accumulator.h"

enum stmt_id {
	S_CAS,
	S_SINCE,
	S_RESERVE,
	S_POSITION,
	S_KNOWN,
	S_CUR,
	S_ST_CLOSE,
	S_ROOMS_GET,
	S_ROOMS_PUT,
	S_UR_GET,
	S_UR_PUT,
	S_TYPING,
	S_RECEIPTS,
	S_ADATA,
	S_DKEYS,
	S_POLL,
	S_MARK,
	S_CLEAN_HORIZON,
	S_CLEAN_STATE,
	S_CLEAN_DL,
	S_CLEAN_MARKS,
};

struct store {
	PGconn *c;
	char *conninfo;
	int64_t pos_next, pos_end;	/* reserved, not yet handed out */
	int64_t pos_used;		/* highest handed out */
	int64_t pos_committed;		/* in syncv3_position */
	int64_t batch_start_pos;
	struct store_stats stats;
	/* messages taken by store_apply, applied as one group at the
	 * latest by store_batch_commit (distinct devices) */
	struct store_msg **pend;
	size_t npend, cappend;
};

/* One message being applied; ch is NULL when it is not applied. */
struct msgctx {
	struct store *st;
	struct store_msg *m;
	struct acc_changes *ch;
	bool was_initial;
};

PGresult *store_q(struct store *st, int id, int nparams,
    const char *const *params);
int store_q0(struct store *st, int id, int nparams,
    const char *const *params);
int store_copy(struct store *st, const char *sql, const char *data,
    size_t len);
int store_reserve(struct store *st, int64_t n);
int64_t store_pos_next(struct store *st);

/* rooms.c: the room parts of a group of messages, in order */
int rooms_apply(struct store *st, struct msgctx *xs, size_t n);

#endif
