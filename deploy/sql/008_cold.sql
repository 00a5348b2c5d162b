-- syncv3: a device's first sync without rooms (issue #13, item 1). When
-- another device of the same user is stored and being polled, a new
-- device's first upstream sync asks for no rooms (to-device, device lists
-- and account data only) and its rooms are the ones already stored. The
-- events between the sibling's last committed since and the new device's
-- first next_batch reach us only through the sibling, so the new device
-- counts as synced (is_initial_done) only once a sibling has committed a
-- poll that started after the new device's first commit.
--
-- cover_pos: set by the accumulator in that first commit to a position of
-- the commit (NULL: not waiting), carried in the NOTIFY on
-- syncv3_catchup; a sibling's body whose request started after that NOTIFY
-- (meta catchup >= cover_pos) sets is_initial_done and clears it, as does
-- a refill (a full initial sync the poller falls back to when no sibling
-- catches up). docs/DESIGN.md, "Sibling devices".
ALTER TABLE syncv3_devices ADD COLUMN cover_pos bigint;

-- The first window first (issue #13, item 4): an initial sync of many
-- rooms is stored in two transactions, the most recently active rooms
-- first, then the rest with the since (contract 1 unchanged: the since
-- moves only with the second). window_pos is the position at which the
-- first part was committed and window_rooms how many rooms it holds at
-- least; the api may answer a first page of up to that many rooms by
-- recency from then on. fill_lo..fill_hi are the positions the second
-- transaction took for this device's body alone: a membership the user
-- gained there was already the user's when the window was answered, so
-- the api does not stream it as a new join. docs/DESIGN.md, "The first
-- window first".
ALTER TABLE syncv3_devices ADD COLUMN window_pos bigint,
	ADD COLUMN window_rooms int,
	ADD COLUMN fill_lo bigint,
	ADD COLUMN fill_hi bigint;
