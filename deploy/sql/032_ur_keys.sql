-- 032_ur_keys: a syncing user's own row of a room with new events is
-- written once per batch, not twice (issue #13, ingest).
--
-- The room upsert's key update (022_ingest.sql) writes rl_ts and
-- ss_bump_* of every member's row of a room whose last_ts or bump moved;
-- right after it the accumulator wrote the rows of the users whose
-- pollers delivered the batch again (acc_ur_upd: prev_batch, unread
-- counts). Two non-HOT versions of the same rows each batch. This
-- function is that second write for the rows whose membership and pos
-- stay, run before the room upsert and with the keys the upsert's
-- trigger would give them, so the trigger finds them already right and
-- passes over them.
--
-- The keys follow syncv3_rl_room's rules exactly, from the room row as
-- it is before the upsert (o) and as the upsert will write it (k.w: the
-- batch writes the room; k.ts its last_ts; k.bts/k.bnid the batch's
-- newest bump event, (0, 0) if none): rl_ts moves when the room is new or
-- its last_ts changes; a joined row's bump key when the room is new and
-- has a bump, or the batch's bump is above the room's (the upsert moves
-- it only forward). membership and pos are the row's own (the caller
-- passes only rows where they stay), so the row triggers of 022 skip,
-- and with syncv3.rl_keys_only set (030) so do the count triggers: no
-- membership moves, and rl_m is only written by them and by member state.
-- PL/pgSQL, not SQL: a SQL function's UPDATE was planned at every call
-- (~0.8 ms a batch in tests/bench/bench_e2e.sh); this one keeps its plan
-- for the session (rows by primary key from the arrays, any batch size).
CREATE OR REPLACE FUNCTION syncv3_ur_keys(us text[], r text[], m text[],
	p bigint[], inv text[], h text[], nc bigint[], hc bigint[],
	up bigint[], pb text[], w bool[], ts bigint[], bts bigint[],
	bnid bigint[]) RETURNS void
LANGUAGE plpgsql SET syncv3.rl_keys_only = 'on' AS $$
BEGIN
UPDATE syncv3_user_rooms u SET membership = k.m, pos = k.p,
	invite_state = k.inv, heroes = k.h, notification_count = k.nc,
	highlight_count = k.hc, updated_pos = CASE WHEN k.up = 0 THEN
	u.updated_pos ELSE k.up END, prev_batch = k.pb,
	rl_ts = CASE WHEN k.ts_mv THEN k.ts ELSE u.rl_ts END,
	ss_bump_ts = CASE WHEN k.bump_mv AND u.membership = 'join' THEN k.bts
	ELSE u.ss_bump_ts END,
	ss_bump_nid = CASE WHEN k.bump_mv AND u.membership = 'join' THEN
	k.bnid ELSE u.ss_bump_nid END
FROM (SELECT x.*, x.w AND (o.room_id IS NULL OR o.last_ts <> x.ts) AS
	ts_mv, x.w AND CASE WHEN o.room_id IS NULL THEN x.bnid > 0 ELSE
	(o.bump_ts, o.bump_nid) < (x.bts, x.bnid) END AS bump_mv
	FROM unnest($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)
	AS x(us, r, m, p, inv, h, nc, hc, up, pb, w, ts, bts, bnid)
	LEFT JOIN syncv3_rooms o ON o.room_id = x.r) k
WHERE u.user_id = k.us AND u.room_id = k.r;
END $$;
