-- Sliding sync's first window first (issue #11 item 8, issue #13 item 4,
-- docs/DESIGN.md "The first window first"). window_cut is the
-- origin_server_ts the window of an initial sync was cut at: every room of
-- the body left out of the window has its last event and its newest bump
-- event (sliding sync's sort key) older than it, so a sliding sync range
-- whose last row is stored and sorts at window_cut or later is the same
-- before and after the rest is stored. window_more is how many rooms the
-- rest adds to the user's lists (rooms the user had no joined, invited or
-- knocked row for): a list without filters counts them before they are
-- stored. Both NULL: no window (or one recorded before this migration).
ALTER TABLE syncv3_devices ADD COLUMN window_cut bigint,
	ADD COLUMN window_more int;

-- The light first sync (poller, SYNCV3_FIRST_TIMELINE_LIMIT) brings one
-- timeline event per room, so most rooms of a new account come without a
-- bump event (006_sliding_sync.sql) and sorted by the time their row was
-- written: all above every room with one, in no order. A joined room with
-- no bump event known now sorts by its last event's origin_server_ts when
-- the user's row is written (its activity as far as the proxy knows; the
-- time of the membership change for the rest, as before), until a bump
-- event moves it.
CREATE OR REPLACE FUNCTION syncv3_ss_user_bump() RETURNS trigger
LANGUAGE plpgsql AS $$
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
		SELECT r.last_ts INTO NEW.ss_bump_ts FROM syncv3_rooms r
		WHERE r.room_id = NEW.room_id AND r.last_ts > 0;
		IF FOUND THEN
			NEW.ss_bump_nid := NEW.pos;
			RETURN NEW;
		END IF;
	END IF;
	NEW.ss_bump_ts := (extract(epoch FROM clock_timestamp()) * 1000)::bigint;
	NEW.ss_bump_nid := NEW.pos;
	RETURN NEW;
END $$;
