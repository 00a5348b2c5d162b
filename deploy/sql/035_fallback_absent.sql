-- 035_fallback_absent: a homeserver that does not say
-- device_unused_fallback_key_types (no fallback key support: ruma and
-- Conduit may leave it out) is passed on as absent, not as [].
--
-- matrix-rust-sdk (Account::update_key_counts) generates and uploads a
-- fallback key when the field is there, [] included, and not when it is
-- absent (unless it made one before): [] says "supported, none unused".
-- fallback_types is NULL until the homeserver has said it; rows written
-- before this migration keep their '[]', which may have been a default.
ALTER TABLE syncv3_device_keys ALTER COLUMN fallback_types DROP NOT NULL,
	ALTER COLUMN fallback_types DROP DEFAULT;
