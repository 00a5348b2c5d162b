-- 017_ssperf: a sliding sync list's count without counting (api/sql.c,
-- SS_LIST; issue #11 benchmarks). A list without filters shows the
-- user's rooms by their own row's membership: every join, invite and
-- knock, and some bans and leaves (SS_CANDIDATES). Counting 10,000 rows
-- of syncv3_user_rooms took 2.3-10 ms of a new connection's request; the
-- joins, invites and knocks are kept here as one row per user, and the
-- bans and leaves, few, are counted through their own index.
--
-- Kept per statement like syncv3_rl_counts (012_sortkeys.sql), whose
-- count is of another membership (the visible one, rl_m) and so cannot
-- serve here. The accumulator writes a batch's rows in one statement, in
-- the batch's transaction: a list read at a snapshot sees the count of
-- the same snapshot.
CREATE TABLE syncv3_ss_counts (
	user_id text PRIMARY KEY,
	shown bigint NOT NULL
);
CREATE FUNCTION syncv3_ss_count() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
	IF TG_OP = 'INSERT' THEN
		INSERT INTO syncv3_ss_counts AS c (user_id, shown) SELECT
		    n.user_id, count(*) FROM ss_new n WHERE n.membership IN
		    ('join', 'invite', 'knock') GROUP BY n.user_id
		    ON CONFLICT (user_id) DO UPDATE SET
		    shown = c.shown + excluded.shown;
	ELSIF TG_OP = 'DELETE' THEN
		UPDATE syncv3_ss_counts c SET shown = c.shown - d.k FROM
		    (SELECT o.user_id, count(*) AS k FROM ss_old o WHERE
		    o.membership IN ('join', 'invite', 'knock') GROUP BY
		    o.user_id) d WHERE c.user_id = d.user_id;
	ELSE
		INSERT INTO syncv3_ss_counts AS c (user_id, shown) SELECT
		    d.user_id, sum(d.k) FROM (SELECT n.user_id, 1 AS k FROM
		    ss_new n WHERE n.membership IN ('join', 'invite', 'knock')
		    UNION ALL SELECT o.user_id, -1 FROM ss_old o WHERE
		    o.membership IN ('join', 'invite', 'knock')) d GROUP BY
		    d.user_id HAVING sum(d.k) <> 0 ON CONFLICT (user_id) DO
		    UPDATE SET shown = c.shown + excluded.shown;
	END IF;
	RETURN NULL;
END $$;
CREATE TRIGGER syncv3_user_rooms_ss_ins AFTER INSERT ON syncv3_user_rooms
	REFERENCING NEW TABLE AS ss_new FOR EACH STATEMENT
	EXECUTE FUNCTION syncv3_ss_count();
CREATE TRIGGER syncv3_user_rooms_ss_upd AFTER UPDATE ON syncv3_user_rooms
	REFERENCING OLD TABLE AS ss_old NEW TABLE AS ss_new FOR EACH STATEMENT
	EXECUTE FUNCTION syncv3_ss_count();
CREATE TRIGGER syncv3_user_rooms_ss_del AFTER DELETE ON syncv3_user_rooms
	REFERENCING OLD TABLE AS ss_old FOR EACH STATEMENT
	EXECUTE FUNCTION syncv3_ss_count();

-- The bans and leaves a list may still show, read one by one.
CREATE INDEX syncv3_user_rooms_ss_gone ON syncv3_user_rooms (user_id)
	WHERE membership IN ('leave', 'ban');

-- The rows already stored.
INSERT INTO syncv3_ss_counts (user_id, shown) SELECT user_id, count(*)
	FROM syncv3_user_rooms WHERE membership IN ('join', 'invite', 'knock')
	GROUP BY user_id;
