-- 030_rl_keys: the room upsert's member key update (022_ingest.sql) no
-- longer runs the count triggers of 012 and 017 (issue #13, item 3).
--
-- That UPDATE writes only rl_ts, ss_bump_ts and ss_bump_nid, and the row
-- triggers that could move membership or rl_m skip it (their WHEN, 022):
-- every user's count is the same after it. Yet each count trigger sorted
-- or hashed both transition tables, one row per member of every room
-- with a new event, to find no difference (two of the four count
-- statements of every batch in tests/bench/bench_e2e.sh). A statement
-- trigger's WHEN cannot read the rows, so the key update says what it
-- is by a setting local to syncv3_rl_room: the function's SET clause,
-- restored when it returns or fails (a later CREATE OR REPLACE of
-- syncv3_rl_room must repeat it).
ALTER FUNCTION syncv3_rl_room() SET syncv3.rl_keys_only = 'on';

DROP TRIGGER syncv3_user_rooms_rl_upd ON syncv3_user_rooms;
CREATE TRIGGER syncv3_user_rooms_rl_upd AFTER UPDATE ON syncv3_user_rooms
	REFERENCING OLD TABLE AS rl_old NEW TABLE AS rl_new FOR EACH STATEMENT
	WHEN (current_setting('syncv3.rl_keys_only', true) IS DISTINCT FROM
	'on') EXECUTE FUNCTION syncv3_rl_count();
DROP TRIGGER syncv3_user_rooms_ss_upd ON syncv3_user_rooms;
CREATE TRIGGER syncv3_user_rooms_ss_upd AFTER UPDATE ON syncv3_user_rooms
	REFERENCING OLD TABLE AS ss_old NEW TABLE AS ss_new FOR EACH STATEMENT
	WHEN (current_setting('syncv3.rl_keys_only', true) IS DISTINCT FROM
	'on') EXECUTE FUNCTION syncv3_ss_count();
