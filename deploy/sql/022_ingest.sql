-- 022_ingest: the sort keys of every member's syncv3_user_rooms row
-- (rl_ts of 012_sortkeys.sql, ss_bump_ts/ss_bump_nid of 006 and 016),
-- written once per batch and only where they change (issue #13, ingest).
--
-- Before, a batch's room upsert ran syncv3_rl_room once per room: one
-- UPDATE of the members' rows each, every one firing the count triggers
-- of 012 and 017 over its own transition tables; then acc_rooms_bump
-- rewrote the joined rows again for the bump key. Now the room upsert
-- carries the bump key (accumulator/db.c, acc_rooms_put) and one
-- statement trigger moves both keys of every member row in one UPDATE,
-- from the rows the statement wrote: one new row version per member per
-- batch, none where the keys are already right.

DROP TRIGGER syncv3_rooms_rl ON syncv3_rooms;

-- rr_new: the room rows as written; rr_old (updates only) as they were.
-- A room's rl_ts follows last_ts when that moved (or the room is new);
-- its joined rows follow bump_ts/bump_nid when the bump moved (only ever
-- forward, acc_rooms_put; a new room's when it has one). EXECUTE plans
-- each batch by its size: a plan cached while the tables were small
-- would scan every member row.
CREATE OR REPLACE FUNCTION syncv3_rl_room() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
	src text;
BEGIN
	IF NOT EXISTS (SELECT 1 FROM rr_new) THEN
		RETURN NULL;
	END IF;
	IF TG_OP = 'INSERT' THEN
		src := 'SELECT room_id, last_ts, bump_ts, bump_nid, true AS '
		    'ts_mv, bump_nid > 0 AS bump_mv FROM rr_new';
	ELSE
		src := 'SELECT * FROM (SELECT n.room_id, n.last_ts, '
		    'n.bump_ts, n.bump_nid, n.last_ts <> o.last_ts AS ts_mv, '
		    '(n.bump_ts, n.bump_nid) <> (o.bump_ts, o.bump_nid) AS '
		    'bump_mv FROM rr_new n JOIN rr_old o ON o.room_id = '
		    'n.room_id) m WHERE m.ts_mv OR m.bump_mv';
	END IF;
	EXECUTE 'UPDATE syncv3_user_rooms u SET rl_ts = CASE WHEN n.ts_mv '
	    'THEN n.last_ts ELSE u.rl_ts END, ss_bump_ts = CASE WHEN '
	    'n.bump_mv AND u.membership = ''join'' THEN n.bump_ts ELSE '
	    'u.ss_bump_ts END, ss_bump_nid = CASE WHEN n.bump_mv AND '
	    'u.membership = ''join'' THEN n.bump_nid ELSE u.ss_bump_nid END '
	    'FROM (' || src || ') n WHERE u.room_id = n.room_id AND '
	    '(n.ts_mv AND u.rl_ts <> n.last_ts OR n.bump_mv AND '
	    'u.membership = ''join'' AND (u.ss_bump_ts, u.ss_bump_nid) <> '
	    '(n.bump_ts, n.bump_nid))';
	RETURN NULL;
END $$;
CREATE TRIGGER syncv3_rooms_rl_ins AFTER INSERT ON syncv3_rooms
	REFERENCING NEW TABLE AS rr_new FOR EACH STATEMENT
	EXECUTE FUNCTION syncv3_rl_room();
CREATE TRIGGER syncv3_rooms_rl_upd AFTER UPDATE ON syncv3_rooms
	REFERENCING OLD TABLE AS rr_old NEW TABLE AS rr_new FOR EACH STATEMENT
	EXECUTE FUNCTION syncv3_rl_room();

-- The row triggers of a user's own row return at once on an update that
-- moves neither membership nor pos (every member's key update above, a
-- new prev_batch): the WHEN clause skips even the call. An INSERT always
-- runs them; OLD exists only for UPDATE, hence two triggers each.
DROP TRIGGER syncv3_user_rooms_rl ON syncv3_user_rooms;
DROP TRIGGER syncv3_user_rooms_ss_bump ON syncv3_user_rooms;
CREATE TRIGGER syncv3_user_rooms_rl BEFORE INSERT ON syncv3_user_rooms
	FOR EACH ROW EXECUTE FUNCTION syncv3_rl_user_row();
CREATE TRIGGER syncv3_user_rooms_rl_mv BEFORE UPDATE ON syncv3_user_rooms
	FOR EACH ROW WHEN (NEW.membership IS DISTINCT FROM OLD.membership OR
	NEW.pos IS DISTINCT FROM OLD.pos)
	EXECUTE FUNCTION syncv3_rl_user_row();
CREATE TRIGGER syncv3_user_rooms_ss_bump BEFORE INSERT ON
	syncv3_user_rooms FOR EACH ROW EXECUTE FUNCTION syncv3_ss_user_bump();
CREATE TRIGGER syncv3_user_rooms_ss_bump_mv BEFORE UPDATE ON
	syncv3_user_rooms FOR EACH ROW WHEN (NEW.membership IS DISTINCT FROM
	OLD.membership OR NEW.pos IS DISTINCT FROM OLD.pos)
	EXECUTE FUNCTION syncv3_ss_user_bump();
