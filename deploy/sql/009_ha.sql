-- syncv3 accumulator: which accumulator is active (issue #15). The active
-- one holds the writer lock (a session advisory lock, accumulator/db.c)
-- on its writer connection and renews this row every quarter of
-- SYNCV3_ACC_TAKEOVER_MS from its event loop. A standby that finds the
-- lock taken and the row expired ends the holder's writer session
-- (pg_terminate_backend on backend_pid), which releases the lock and
-- fences the old process: whatever it still sends on that session fails,
-- so it can commit nothing more. A process that dies takes its session
-- and the lock with it at once; the row is for one that hangs.
--
-- generation counts takeovers: each new holder bumps it and a renewal
-- matches it, so a process that was replaced learns so at its next
-- renewal and stands by again.
CREATE TABLE syncv3_accumulator (
	id smallint PRIMARY KEY DEFAULT 1 CHECK (id = 1),
	generation bigint NOT NULL,
	owner text NOT NULL,			-- its SYNCV3_INGEST, for people
	backend_pid int NOT NULL,		-- its writer session
	expires timestamptz NOT NULL,
	started timestamptz NOT NULL DEFAULT now()
);
