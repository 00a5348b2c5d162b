-- 021_pos_token: a sliding sync pos as a /messages and /relations token
-- (MSC4186; api/ss_pos.c). tok is the upstream token the confirmed
-- response's pos stands for, p_tok the unconfirmed one's: the device's
-- committed v2 since, read in a snapshot at or below the position the
-- response was built at (api/sql.c SS_SINCE). Paging forwards from it
-- never skips an event the response did not carry: an event stored above
-- that position came in a later batch, after the token upstream. NULL: no
-- token known (the device had no since yet), the pos cannot be mapped.
ALTER TABLE syncv3_ss_conns ADD COLUMN tok text, ADD COLUMN p_tok text;
