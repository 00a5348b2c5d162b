-- Accumulator additions to 001 (which stays as the api reads it).
--
-- Cleanup of superseded state: closed ranges are found by to_pos.
CREATE INDEX syncv3_state_closed ON syncv3_state (to_pos)
	WHERE to_pos IS NOT NULL;

-- (wall clock, position) marks written by the accumulator about once a
-- minute, so a time horizon ("keep 7 days of history") can be turned into
-- a position below which closed state ranges are deleted.
CREATE TABLE syncv3_pos_marks (
	at timestamptz NOT NULL,
	pos bigint NOT NULL
);
CREATE INDEX syncv3_pos_marks_at ON syncv3_pos_marks (at);
