-- Sliding sync (MSC4186, api/ss_*.c).
--
-- bump_ts, bump_nid: the origin_server_ts and nid of the room's newest
-- timeline event of a type the MSC counts as activity (m.room.create,
-- m.room.message, m.room.encrypted, m.sticker, m.call.invite,
-- m.poll.start, m.beacon_info), newest by (ts, nid): nids follow arrival,
-- and one initial sync delivers many rooms' histories in any order. Kept
-- by the accumulator as it writes (accumulator/rooms.c, only ever moved
-- forward); the api sorts a user's rooms by it and sends bump_ts as
-- bump_stamp.
ALTER TABLE syncv3_rooms ADD COLUMN bump_ts bigint NOT NULL DEFAULT 0,
	ADD COLUMN bump_nid bigint NOT NULL DEFAULT 0;
UPDATE syncv3_rooms r SET bump_ts = b.origin_ts, bump_nid = b.nid FROM
	(SELECT DISTINCT ON (e.room_id) e.room_id, e.origin_ts, e.nid FROM
	syncv3_events e WHERE e.is_timeline AND e.type IN ('m.room.create',
	'm.room.message', 'm.room.encrypted', 'm.sticker', 'm.call.invite',
	'm.poll.start', 'm.beacon_info') ORDER BY e.room_id, e.origin_ts DESC,
	e.nid DESC) b WHERE b.room_id = r.room_id;

-- The per-user sort key (api/ss_rooms.c lists): ss_bump_ts, ss_bump_nid
-- of each user's row are the room's bump_ts, bump_nid while the user is
-- joined (write_bumps in accumulator/rooms.c updates the joined rows
-- with the room), else the time and position of the membership change
-- (this trigger, when the accumulator writes the row). The index makes a
-- window of a user in 10,000 rooms an index scan of its first rows.
ALTER TABLE syncv3_user_rooms ADD COLUMN ss_bump_ts bigint NOT NULL
	DEFAULT 0, ADD COLUMN ss_bump_nid bigint NOT NULL DEFAULT 0;
CREATE INDEX syncv3_user_rooms_ss ON syncv3_user_rooms (user_id,
	ss_bump_ts DESC, ss_bump_nid DESC, room_id);
CREATE INDEX syncv3_user_rooms_room ON syncv3_user_rooms (room_id);
CREATE FUNCTION syncv3_ss_user_bump() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
	IF TG_OP = 'UPDATE' AND NEW.membership = OLD.membership AND
	    NEW.pos = OLD.pos THEN
		RETURN NEW;
	END IF;
	IF NEW.membership = 'join' THEN
		SELECT r.bump_ts, r.bump_nid INTO NEW.ss_bump_ts, NEW.ss_bump_nid
		FROM syncv3_rooms r WHERE r.room_id = NEW.room_id AND
		r.bump_nid > 0;
		IF FOUND THEN
			RETURN NEW;
		END IF;
	END IF;
	NEW.ss_bump_ts := (extract(epoch FROM clock_timestamp()) * 1000)::bigint;
	NEW.ss_bump_nid := NEW.pos;
	RETURN NEW;
END $$;
CREATE TRIGGER syncv3_user_rooms_ss_bump BEFORE INSERT OR UPDATE ON
	syncv3_user_rooms FOR EACH ROW EXECUTE FUNCTION syncv3_ss_user_bump();
UPDATE syncv3_user_rooms u SET ss_bump_ts = r.bump_ts, ss_bump_nid =
	r.bump_nid FROM syncv3_rooms r WHERE r.room_id = u.room_id AND
	u.membership = 'join' AND r.bump_nid > 0;

-- Connections (the api writes them all). Keyed by user, device and the
-- client's conn_id; conn is what a pos names. gen is the generation of
-- the response the client has confirmed (by sending its pos), pos the
-- database position it covered, subs/ext the sticky subscriptions and
-- extension configs as of then, ext_state the extensions' own blob. The
-- response sent but not yet confirmed is kept apart in p_*: a request
-- naming p_gen confirms it (it becomes gen), a request naming gen drops
-- it (the client lost it). ver changes on every write: a request saves
-- only if nobody wrote the row since it loaded it (two racing requests of
-- one connection cannot corrupt it). top_gen is the highest generation
-- ever handed out: every response gets a new one, so the pos of a
-- response that was dropped never matches again. Idle rows are deleted after
-- SYNCV3_SS_CONN_IDLE_S, with their rooms.
CREATE TABLE syncv3_ss_conns (
	conn bigserial PRIMARY KEY,
	user_id text NOT NULL,
	device_id text NOT NULL,
	conn_id text NOT NULL,
	dialect text NOT NULL,
	gen bigint NOT NULL DEFAULT 0,
	pos bigint NOT NULL DEFAULT 0,
	subs text NOT NULL DEFAULT '{}',
	ext text NOT NULL DEFAULT '{}',
	ext_state text,
	p_gen bigint,
	p_pos bigint,
	p_subs text,
	p_ext text,
	p_ext_state text,
	ver bigint NOT NULL DEFAULT 0,
	top_gen bigint NOT NULL DEFAULT 0,
	created_at timestamptz NOT NULL DEFAULT now(),
	last_used timestamptz NOT NULL DEFAULT now(),
	UNIQUE (user_id, device_id, conn_id)
);
CREATE INDEX syncv3_ss_conns_used ON syncv3_ss_conns (last_used);

-- What a connection has sent of a room, one row per response that sent
-- it (gen). The state a request continues from is, per room, the newest
-- row with gen <= the confirmed gen; rows of an unconfirmed response have
-- a higher gen and are dropped when the client retries. nid: the timeline
-- was sent up to this event; tl_limit: with this timeline_limit; rs: the
-- required_state config (canonical text) the state was sent for, as of
-- state_pos; lazy: the members sent for $LAZY / lazy_members;
-- membership: the user's membership as sent (a leave is sent once).
CREATE TABLE syncv3_ss_rooms (
	conn bigint NOT NULL REFERENCES syncv3_ss_conns (conn)
		ON DELETE CASCADE,
	room_id text NOT NULL,
	gen bigint NOT NULL,
	nid bigint NOT NULL DEFAULT 0,
	tl_limit int NOT NULL DEFAULT 0,
	rs text NOT NULL DEFAULT '',
	state_pos bigint NOT NULL DEFAULT 0,
	lazy text NOT NULL DEFAULT '{}',	-- JSON: user id -> member event's from_pos
	membership text NOT NULL,
	PRIMARY KEY (conn, room_id, gen)
);
