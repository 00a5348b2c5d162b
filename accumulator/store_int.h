/*
 * The store's own state, shared by its files only (store.c, db.c, pos.c,
 * rooms.c, apply.c, cleanup.c); their functions are in accumulator.h.
 */
#ifndef SYNCV3_ACC_STORE_INT_H
#define SYNCV3_ACC_STORE_INT_H

#include "accumulator.h"
#include "map.h"

enum stmt_id {
	S_CAS,
	S_SINCE,
	S_CATCHUP,
	S_COVER,
	S_WIN_REST,
	S_WINDOW,
	S_FILL,
	S_RESERVE,
	S_POSITION,
	S_KNOWN,
	S_CUR,
	S_ST_CLOSE,
	S_EV_INS,
	S_ST_INS,
	S_ROOMS_GET,
	S_ROOMS_PUT,
	S_UR_GET,
	S_UR_PUT,
	S_UR_UPD,
	S_UR_KEYS,
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
	S_TXN,
	S_CHUNKS,
	S_LATE,
	S_CLEAN_CHUNKS,
	S_CLEAN_GAPS,
	S_CLEAN_RDX,
	S_RDX_ANY,
	S_RDX_ADD,
	S_RDX_GET,
	S_RDX_SET,
	S_RDX_ROOM,
	S_TO_DEVICE,
	S_DEVICE_LISTS,
	S_LSN,
};

/* The batch's savepoint, between its groups (store.c, sp_enter). */
enum sp_state {
	SP_NONE,  /* none open */
	SP_FRESH, /* opened with BEGIN, no group in it yet */
	SP_HELD,  /* the last group's, not yet released */
};

struct store {
	PGconn *c; /* NULL once demoted */
	char *conninfo;
	char *owner; /* our name in syncv3_accumulator */
	long long takeover_ms;
	int64_t generation;             /* 0: not (yet) the writer */
	bool is_demoted;                /* another accumulator is the writer */
	int64_t lsn;                    /* WAL position after the last COMMIT */
	int64_t pos_next, pos_end;	/* reserved, not yet handed out */
	int64_t pos_used;		/* highest handed out */
	int64_t pos_committed;		/* in syncv3_position */
	/*
	 * The last to-device position committed (pos_committed when the
	 * position was loaded: nothing before is known), and the batch's
	 * last one, td_committed at its BEGIN: apply.c's to-device notices
	 * say no message is between it and theirs.
	 */
	int64_t td_committed, td_after;
	struct store_stats stats;
	size_t grp_state_rows; /* syncv3_state rows of this group */
	/* the batch: messages taken by store_apply, applied as one group
	 * at the latest by store_batch_commit (distinct devices) */
	struct store_msg **pend;
	size_t npend, cappend;
	enum sp_state sp;
	/* db_q0 only sends while set (a group is applied, store.c);
	 * nlater: statements sent so, not yet answered (db.c) */
	bool is_later;
	size_t nlater;
	/*
	 * db_q_later: statements sent so whose results are read once their
	 * pipeline is (idx: their place among the nlater; r: the result,
	 * NULL until read or when it failed), the first nlres_read of them
	 * read; apply_finish takes them when the group has succeeded.
	 */
	/* nbegin: of the nlater, the batch's BEGIN statements (db.c
	 * db_begin_later); begin_lost: a pipeline of only those failed */
	size_t nbegin;
	bool begin_lost;
	struct later_res {
		size_t idx;
		struct store_msg *m;
		PGresult *r;
	} *lres;
	size_t nlres, nlres_read, caplres;
	/* rooms given chunk boundaries since the last cleanup pass, which
	 * trims only those (015_chunks.sql; room id -> 1) */
	struct map chunk_rooms;
	/* redactions wait for their target (018_redact.sql): whether any
	 * may, checked as the writer of generation rdx_gen (redaction.c) */
	bool rdx_checked, rdx_pending;
	int64_t rdx_gen;
};

/* One message being applied; ch is NULL when it is not applied. */
struct msgctx {
	struct store *st;
	struct store_msg *m;
	struct acc_changes *ch;
	bool was_initial;
	bool was_waiting; /* for a sibling to catch up (008_cold.sql) */
	int64_t cover;    /* a sibling-first sync's cover_pos (008_cold.sql) */
};

#endif
