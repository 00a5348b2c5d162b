-- 015_chunks: where upstream timeline chunks begin and end, with the
-- tokens that page back from there. A /sync room timeline (a chunk)
-- comes with a prev_batch, a boundary right before its first event, and
-- the response's next_batch is a boundary after its last one; /messages
-- accepts both as `from` (the spec says so, Synapse does). The
-- accumulator keeps both per room, keyed by that event's nid: is_end
-- false, the token pages back from right before nid; true, from right
-- after it. The api answers a timeline whose oldest event is E with the
-- first boundary at or after E: exact when a chunk began at E, else one
-- that repeats events the client has and skips none (docs/INTERNALS.md,
-- "prev_batch"). Per room, not per user: see there. limited (starts
-- only): upstream said the chunk did not continue the syncing user's
-- previous one, so there is history before it. Bounded: the cleanup
-- pass keeps the newest ACC_CHUNKS_KEEP rows of each room it was given.
CREATE TABLE syncv3_chunks (
	room_id text NOT NULL,
	nid bigint NOT NULL,
	is_end boolean NOT NULL,
	token text NOT NULL,
	limited boolean NOT NULL,
	PRIMARY KEY (room_id, nid, is_end)
);
