-- 012_sortkeys: the v3 room_list first page by recency as an index range
-- (api/s_room_list.c), not the membership rule and a sort over every room
-- of the user (issue #13 item 5).
--
-- rl_m: the user's membership of the room by the rule of api/visible.h at
-- the latest position: their newest m.room.member row in syncv3_state
-- when it is at or after the row's own pos (a kick another user's poller
-- delivered counts at once), else the row's membership. rl_ts: the room's
-- last_ts, the first page's recency. Both are kept by triggers as the
-- accumulator writes (member state rows, its own rows, the room row), so
-- they change in the batch's transaction, with syncv3_position: a first
-- page, read at the snapshot's position, sees keys exactly as of it.
ALTER TABLE syncv3_user_rooms ADD COLUMN rl_m text,
	ADD COLUMN rl_ts bigint NOT NULL DEFAULT 0;

-- The first page's window (joined rooms, newest first, ties by room id in
-- the api's byte order); invites are few and read apart. user_id in "C"
-- too: the api's statement names that collation, so no other index can
-- serve it (api/sql.c, LIST_FIRST).
CREATE INDEX syncv3_user_rooms_rl ON syncv3_user_rooms (user_id COLLATE
	"C", rl_ts DESC, room_id COLLATE "C") WHERE rl_m = 'join';
CREATE INDEX syncv3_user_rooms_rl_inv ON syncv3_user_rooms (user_id
	COLLATE "C") WHERE rl_m = 'invite';

-- The user's own row changed membership or pos: combine it with their
-- newest member row, as VIS_MEMBERSHIP_OF does.
CREATE FUNCTION syncv3_rl_user_row() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
	sm text;
	sp bigint;
BEGIN
	IF TG_OP = 'UPDATE' AND NEW.membership = OLD.membership AND
	    NEW.pos = OLD.pos THEN
		RETURN NEW;
	END IF;
	SELECT s.membership, s.from_pos INTO sm, sp FROM syncv3_state s
	WHERE s.state_key = NEW.user_id AND s.room_id = NEW.room_id AND
	    s.type = 'm.room.member' ORDER BY s.from_pos DESC LIMIT 1;
	NEW.rl_m := CASE WHEN sp IS NOT NULL AND sp >= NEW.pos THEN sm
	    ELSE NEW.membership END;
	NEW.rl_ts := coalesce((SELECT r.last_ts FROM syncv3_rooms r WHERE
	    r.room_id = NEW.room_id), 0);
	RETURN NEW;
END $$;
CREATE TRIGGER syncv3_user_rooms_rl BEFORE INSERT OR UPDATE ON
	syncv3_user_rooms FOR EACH ROW EXECUTE FUNCTION syncv3_rl_user_row();

-- A member row of a proxy user: it wins over the user's own row when it
-- is the newest of theirs and not older than that row. Most member rows
-- are of other users: looked up first, so they run no UPDATE (each would
-- run syncv3_rl_count).
CREATE FUNCTION syncv3_rl_member() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
	IF NOT EXISTS (SELECT 1 FROM syncv3_user_rooms u WHERE
	    u.user_id = NEW.state_key AND u.room_id = NEW.room_id AND
	    u.pos <= NEW.from_pos AND u.rl_m IS DISTINCT FROM
	    NEW.membership) THEN
		RETURN NULL;
	END IF;
	UPDATE syncv3_user_rooms u SET rl_m = NEW.membership WHERE
	    u.user_id = NEW.state_key AND u.room_id = NEW.room_id AND
	    u.pos <= NEW.from_pos AND u.rl_m IS DISTINCT FROM NEW.membership
	    AND NOT EXISTS (SELECT 1 FROM syncv3_state s WHERE
	    s.state_key = NEW.state_key AND s.room_id = NEW.room_id AND
	    s.type = 'm.room.member' AND s.from_pos > NEW.from_pos);
	RETURN NULL;
END $$;
CREATE TRIGGER syncv3_state_rl AFTER INSERT ON syncv3_state FOR EACH ROW
	WHEN (NEW.type = 'm.room.member') EXECUTE FUNCTION syncv3_rl_member();

-- The room's last event moved: so does every user row's recency.
CREATE FUNCTION syncv3_rl_room() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
	IF TG_OP = 'UPDATE' AND NEW.last_ts = OLD.last_ts OR NOT EXISTS
	    (SELECT 1 FROM syncv3_user_rooms u WHERE u.room_id = NEW.room_id
	    AND u.rl_ts <> NEW.last_ts) THEN
		RETURN NULL;
	END IF;
	UPDATE syncv3_user_rooms u SET rl_ts = NEW.last_ts WHERE
	    u.room_id = NEW.room_id AND u.rl_ts <> NEW.last_ts;
	RETURN NULL;
END $$;
CREATE TRIGGER syncv3_rooms_rl AFTER INSERT OR UPDATE ON syncv3_rooms
	FOR EACH ROW EXECUTE FUNCTION syncv3_rl_room();

-- The first page's count: the user's joined rooms by rl_m, kept per
-- statement (the accumulator writes a batch's rows in one), so a count of
-- 10,000 rooms is one row, not 10,000 index entries (~10 ms).
CREATE TABLE syncv3_rl_counts (
	user_id text PRIMARY KEY,
	joined bigint NOT NULL
);
CREATE FUNCTION syncv3_rl_count() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
	IF TG_OP = 'INSERT' THEN
		INSERT INTO syncv3_rl_counts AS c (user_id, joined) SELECT
		    n.user_id, count(*) FROM rl_new n WHERE n.rl_m = 'join'
		    GROUP BY n.user_id ON CONFLICT (user_id) DO UPDATE SET
		    joined = c.joined + excluded.joined;
	ELSIF TG_OP = 'DELETE' THEN
		UPDATE syncv3_rl_counts c SET joined = c.joined - d.k FROM
		    (SELECT o.user_id, count(*) AS k FROM rl_old o WHERE
		    o.rl_m = 'join' GROUP BY o.user_id) d WHERE
		    c.user_id = d.user_id;
	ELSE
		INSERT INTO syncv3_rl_counts AS c (user_id, joined) SELECT
		    d.user_id, sum(d.k) FROM (SELECT n.user_id, 1 AS k FROM
		    rl_new n WHERE n.rl_m = 'join' UNION ALL SELECT o.user_id,
		    -1 FROM rl_old o WHERE o.rl_m = 'join') d GROUP BY
		    d.user_id HAVING sum(d.k) <> 0 ON CONFLICT (user_id) DO
		    UPDATE SET joined = c.joined + excluded.joined;
	END IF;
	RETURN NULL;
END $$;
CREATE TRIGGER syncv3_user_rooms_rl_ins AFTER INSERT ON syncv3_user_rooms
	REFERENCING NEW TABLE AS rl_new FOR EACH STATEMENT
	EXECUTE FUNCTION syncv3_rl_count();
CREATE TRIGGER syncv3_user_rooms_rl_upd AFTER UPDATE ON syncv3_user_rooms
	REFERENCING OLD TABLE AS rl_old NEW TABLE AS rl_new FOR EACH STATEMENT
	EXECUTE FUNCTION syncv3_rl_count();
CREATE TRIGGER syncv3_user_rooms_rl_del AFTER DELETE ON syncv3_user_rooms
	REFERENCING OLD TABLE AS rl_old FOR EACH STATEMENT
	EXECUTE FUNCTION syncv3_rl_count();

-- The rows already stored, by the same rules.
UPDATE syncv3_user_rooms u SET rl_ts = coalesce((SELECT r.last_ts FROM
	syncv3_rooms r WHERE r.room_id = u.room_id), 0), rl_m = coalesce(
	(SELECT CASE WHEN s.from_pos >= u.pos THEN s.membership END FROM
	syncv3_state s WHERE s.state_key = u.user_id AND s.room_id =
	u.room_id AND s.type = 'm.room.member' ORDER BY s.from_pos DESC
	LIMIT 1), u.membership);
INSERT INTO syncv3_rl_counts (user_id, joined) SELECT user_id, count(*)
	FROM syncv3_user_rooms WHERE rl_m = 'join' GROUP BY user_id
	ON CONFLICT (user_id) DO UPDATE SET joined = excluded.joined;
