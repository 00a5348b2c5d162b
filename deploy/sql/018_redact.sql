-- 018_redact: redactions waiting for their target. An m.room.redaction
-- can be stored before the event it redacts (pollers of different users
-- lag each other), so every redaction is kept here until its target is
-- stored, then the target's json is pruned (accumulator/redaction.c) and
-- the row goes. Keyed by target first: new events are looked up by id.
-- The room is part of the key: a redaction only applies in its own room,
-- so one naming an event of another room never matches (and never keeps
-- that room's real redaction out).
CREATE TABLE syncv3_redactions (
	target text NOT NULL,			-- event_id it redacts
	room_id text NOT NULL,
	json text NOT NULL,			-- the redaction event
	PRIMARY KEY (target, room_id)
);
