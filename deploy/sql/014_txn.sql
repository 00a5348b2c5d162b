-- 014_txn: unsigned.transaction_id belongs to one device. A homeserver
-- puts it on an event only in the sync of the device that sent it, but
-- syncv3_events holds one copy served to everyone, so the accumulator
-- stores events without it and keeps it here, from the sending device's
-- own sync only; the api puts it back for that (user, device) alone.
-- Rows go with their event (events are never cleaned up today; the key
-- makes any future event cleanup take these rows with it).
CREATE TABLE syncv3_txns (
	nid bigint PRIMARY KEY REFERENCES syncv3_events (nid) ON DELETE CASCADE,
	user_id text NOT NULL,
	device_id text NOT NULL,
	txn_id text NOT NULL
);
