-- syncv3 poller: one liveness row per poller id (issue #15). A poller
-- renews its row every quarter of SYNCV3_TAKEOVER_MS and stops polling on
-- its own once it has gone three quarters of it without a renewal; the
-- others take over the leases of a poller whose row has expired. A lease
-- whose owner has no row (a poller older than this migration) is only
-- taken once the lease itself expires.
--
-- incarnation counts the processes that ran under the id: each start (and
-- each recovery after a lapse) bumps it, and a renewal matches it, so a
-- process that was superseded under its own id learns so at its next
-- renewal. At most one process per id gets past the session advisory lock
-- on the id (poller/lease_sql.c, LS_LIVE_LOCK), so two never renew the
-- same row at once.
CREATE TABLE syncv3_pollers (
	id text PRIMARY KEY,			-- SYNCV3_POLLER_ID
	incarnation bigint NOT NULL,
	expires timestamptz NOT NULL,
	started timestamptz NOT NULL DEFAULT now()
);
