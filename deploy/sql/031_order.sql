-- 031_order: a timeline order apart from the change position.
--
-- A nid is when the accumulator stored an event (contract 2), and stays
-- the position every "changed since" read compares with. An event that a
-- lagging poller delivers in one timeline chunk before an event already
-- stored (the anchor) belongs before it in the room: it gets a new nid as
-- always, and ord places it between the anchor and the room's event just
-- before it (accumulator/rooms.c, S_LATE). A room's timeline order is
-- coalesce(ord, nid): NULL, for every event stored in order, means the
-- nid. ord < nid whenever set (an anchor precedes what is placed before
-- it), so coalesce(ord, nid) <= nid for every row.
--
-- Each placement is a gap in what a client may already hold: one whose
-- position is at or past anchor_pos (the lowest nid of the room's events
-- ordered at or after the place) and below late_pos (the first nid placed
-- there) has seen events after the place but not the ones placed, so the
-- api must send it the room afresh rather than append them
-- (docs/INTERNALS.md, "Late events: timeline order").
--
-- ord is set by an UPDATE only, on rows placed late (rare); the partial
-- index holds those rows alone, so events stored in order cost nothing
-- more to insert.
ALTER TABLE syncv3_events ADD COLUMN IF NOT EXISTS ord double precision;
CREATE INDEX IF NOT EXISTS syncv3_events_ord ON syncv3_events (room_id, ord)
	WHERE ord IS NOT NULL;
CREATE TABLE IF NOT EXISTS syncv3_order_gaps (
	room_id text NOT NULL,
	anchor_pos bigint NOT NULL,
	late_pos bigint NOT NULL,
	PRIMARY KEY (room_id, late_pos)
);
