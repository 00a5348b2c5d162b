-- syncv3 poller: device leases (contract 4) in a table of their own.
-- The lease columns of syncv3_devices put the pollers' lease renewal on the
-- rows the accumulator locks for its compare-and-set on since (SELECT ...
-- FOR UPDATE OF d): a renewal locking a poller's rows in scan order crossed
-- an accumulator batch locking them in key order, and Postgres found a
-- deadlock (issue #9). Here leases live on rows the accumulator never
-- touches, so lease renewal cannot wait on it.
--
-- No foreign key to syncv3_devices on purpose: checking one takes FOR KEY
-- SHARE on the device row, which conflicts with the accumulator's FOR
-- UPDATE and would bring the crossing back. A lease whose device is gone
-- matches no device row and is handed back at the next heartbeat.
CREATE TABLE syncv3_leases (
	user_id text NOT NULL,
	device_id text NOT NULL,
	owner text NOT NULL,			-- SYNCV3_POLLER_ID
	expires timestamptz NOT NULL,
	PRIMARY KEY (user_id, device_id)
);
CREATE INDEX syncv3_leases_owner ON syncv3_leases (owner);

INSERT INTO syncv3_leases (user_id, device_id, owner, expires)
	SELECT user_id, device_id, lease_owner, lease_expires
	FROM syncv3_devices
	WHERE lease_owner IS NOT NULL AND lease_expires IS NOT NULL;

DROP INDEX syncv3_devices_lease;
ALTER TABLE syncv3_devices DROP COLUMN lease_owner,
	DROP COLUMN lease_expires;
