-- 011_admin: what the admin API (api/admin.c, issue #14) shows about a
-- device's polling that no column kept: when a poll last succeeded and
-- how old the device's since is. Both are stamped by a trigger on the
-- accumulator's own since update (acc_since, once per applied body, in
-- the commit that stores the body), so no daemon writes them itself:
-- last_ok on every committed body (since set to a next_batch), since_at
-- when the since changed. An admin resync sets since to '' and stamps
-- neither. Existing devices start with NULL (unknown until their next
-- committed body).
ALTER TABLE syncv3_devices
	ADD COLUMN last_ok timestamptz,
	ADD COLUMN since_at timestamptz;

CREATE FUNCTION syncv3_devices_since_stamp() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
	IF NEW.since <> '' THEN
		NEW.last_ok := now();
	END IF;
	IF NEW.since IS DISTINCT FROM OLD.since THEN
		NEW.since_at := now();
	END IF;
	RETURN NEW;
END
$$;

CREATE TRIGGER syncv3_devices_since_stamp
	BEFORE UPDATE OF since ON syncv3_devices
	FOR EACH ROW EXECUTE FUNCTION syncv3_devices_since_stamp();
