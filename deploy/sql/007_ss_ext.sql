-- syncv3 api: the sliding sync extensions (api/ss_ext.c).
-- syncv3_ss_to_device_acks: what each sliding sync connection that has the
-- to_device extension on acknowledged (its newest to_device.since). A
-- to-device message is deleted once every live v3 session
-- (syncv3_sessions.acked_to_device) and every connection here acknowledged
-- it; a connection's row goes with it when it expires, so an expired
-- connection holds nothing back.
CREATE TABLE syncv3_ss_to_device_acks (
	conn bigint PRIMARY KEY REFERENCES syncv3_ss_conns (conn)
		ON DELETE CASCADE,
	user_id text NOT NULL,
	device_id text NOT NULL,
	acked bigint NOT NULL DEFAULT 0
);
CREATE INDEX syncv3_ss_to_device_acks_dev
	ON syncv3_ss_to_device_acks (user_id, device_id);

-- The receipts extension reads a room's receipts after a position (every
-- response of a connection whose window holds the room).
CREATE INDEX syncv3_receipts_room_pos ON syncv3_receipts (room_id, pos);
