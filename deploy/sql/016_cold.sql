-- Sliding sync's first window first (issue #11 item 8, issue #13 item 4,
-- docs/DESIGN.md "The first window first"). window_cut is the
-- origin_server_ts the window of an initial sync was cut at: every room of
-- the body left out of the window has its last event and its newest bump
-- event (sliding sync's sort key) older than it, so a sliding sync range
-- whose last row is stored and sorts at window_cut or later is the same
-- before and after the rest is stored. window_more is how many rooms the
-- rest adds to the user's lists (rooms the user had no joined, invited or
-- knocked row for): a list without filters counts them before they are
-- stored. Both NULL: no window (or one recorded before this migration).
ALTER TABLE syncv3_devices ADD COLUMN window_cut bigint,
	ADD COLUMN window_more int;
