-- 034_rdx_wait: when a redaction began to wait for its target
-- (018_redact.sql). One whose target never arrives (an event outside
-- every user's history here) goes once it has waited longer than the
-- horizon (SYNCV3_ACC_HORIZON_SECS, accumulator/cleanup.c): a target that
-- arrives later comes from a sync the homeserver answered after the
-- redaction, which it serves pruned. Rows waiting before this migration
-- count from it.
ALTER TABLE syncv3_redactions ADD COLUMN IF NOT EXISTS at timestamptz
	NOT NULL DEFAULT now();
