-- syncv3 core schema. Owned by the accumulator, which applies the numbered
-- files in this folder at startup under an advisory lock (contract 8).
-- Positions: every change the accumulator commits takes positions from
-- syncv3_pos_seq inside its single writer transaction, and the same
-- transaction stores the highest one in syncv3_position. Readers never
-- look at the sequence: a position is visible only once syncv3_position
-- says so, and then everything below it is committed (contract 2).

CREATE SEQUENCE syncv3_pos_seq;

CREATE TABLE syncv3_position (
	id int PRIMARY KEY CHECK (id = 1),
	pos bigint NOT NULL
);
INSERT INTO syncv3_position VALUES (1, 0);

-- Devices (contracts 4 and 5). Written by the api (registration, token
-- replacement, last_seen), the pollers (leases) and the accumulator
-- (since, poll state).
CREATE TABLE syncv3_devices (
	user_id text NOT NULL,
	device_id text NOT NULL,
	token_hash text NOT NULL,		-- hex sha256 of the access token
	token_enc text NOT NULL,		-- AES-256-GCM, base64
	since text NOT NULL DEFAULT '',		-- committed v2 since
	is_initial_done boolean NOT NULL DEFAULT false,
	poll_state text NOT NULL DEFAULT 'new',	-- new|polling|backoff|expired|idle
	poll_error text NOT NULL DEFAULT '',
	poll_updated timestamptz NOT NULL DEFAULT now(),
	lease_owner text,
	lease_expires timestamptz,
	last_seen timestamptz NOT NULL DEFAULT now(),	-- last api request
	created_at timestamptz NOT NULL DEFAULT now(),
	PRIMARY KEY (user_id, device_id)
);
CREATE UNIQUE INDEX syncv3_devices_token ON syncv3_devices (token_hash);
CREATE INDEX syncv3_devices_lease ON syncv3_devices (lease_expires);

-- Events, stored once whoever delivers them (contract 6). nid is the
-- event's position. json holds the event as the homeserver sent it.
CREATE TABLE syncv3_events (
	nid bigint PRIMARY KEY,
	event_id text NOT NULL UNIQUE,
	room_id text NOT NULL,
	type text NOT NULL,
	state_key text,				-- NULL for message events
	sender text NOT NULL DEFAULT '',
	membership text,			-- content.membership of m.room.member
	origin_ts bigint NOT NULL DEFAULT 0,
	is_timeline boolean NOT NULL DEFAULT true, -- false: seen only in a state block
	json text NOT NULL
);
CREATE INDEX syncv3_events_room ON syncv3_events (room_id, nid);
CREATE INDEX syncv3_events_member ON syncv3_events (room_id, nid)
	WHERE type = 'm.room.member';

-- Room state as validity ranges: the entry (room, type, state_key) -> nid
-- holds from position from_pos (inclusive) until to_pos (exclusive, NULL =
-- still current). State at P = rows with from_pos <= P < coalesce(to_pos,
-- inf). One state event costs one row, whatever the room size.
CREATE TABLE syncv3_state (
	room_id text NOT NULL,
	type text NOT NULL,
	state_key text NOT NULL,
	nid bigint NOT NULL,
	from_pos bigint NOT NULL,
	to_pos bigint,
	membership text				-- copied for member queries
);
CREATE INDEX syncv3_state_at ON syncv3_state (room_id, type, state_key, from_pos);
CREATE INDEX syncv3_state_current ON syncv3_state (room_id, type, state_key)
	WHERE to_pos IS NULL;
CREATE INDEX syncv3_state_user ON syncv3_state (state_key, room_id, from_pos)
	WHERE type = 'm.room.member';

-- Per-room summary kept current by the accumulator for room lists.
CREATE TABLE syncv3_rooms (
	room_id text PRIMARY KEY,
	last_nid bigint NOT NULL DEFAULT 0,	-- latest timeline event
	last_ts bigint NOT NULL DEFAULT 0,	-- its origin_server_ts
	name text,				-- m.room.name
	canonical_alias text,
	topic text,
	avatar text,
	room_type text,				-- m.room.create content.type
	is_encrypted boolean NOT NULL DEFAULT false,
	joined_count int NOT NULL DEFAULT 0,
	invited_count int NOT NULL DEFAULT 0,
	updated_pos bigint NOT NULL DEFAULT 0
);

-- Per user and room: membership and what only that user's v2 sync tells.
CREATE TABLE syncv3_user_rooms (
	user_id text NOT NULL,
	room_id text NOT NULL,
	membership text NOT NULL,		-- join|invite|leave|ban|knock
	pos bigint NOT NULL,			-- when membership last changed
	invite_state text,			-- stripped state JSON array (invites)
	heroes text,				-- JSON array from summary m.heroes
	notification_count bigint NOT NULL DEFAULT 0,
	highlight_count bigint NOT NULL DEFAULT 0,
	updated_pos bigint NOT NULL DEFAULT 0,
	prev_batch text,			-- latest timeline prev_batch
	PRIMARY KEY (user_id, room_id)
);
CREATE INDEX syncv3_user_rooms_pos ON syncv3_user_rooms (user_id, updated_pos);

-- Typing: one row per room, bumped only when the list really changes.
CREATE TABLE syncv3_typing (
	room_id text PRIMARY KEY,
	user_ids text NOT NULL,			-- JSON array of user ids
	pos bigint NOT NULL
);

-- To-device messages, kept until every live session of the device has
-- acknowledged them (the api deletes).
CREATE TABLE syncv3_to_device (
	pos bigint PRIMARY KEY,
	user_id text NOT NULL,
	device_id text NOT NULL,
	json text NOT NULL
);
CREATE INDEX syncv3_to_device_dev ON syncv3_to_device (user_id, device_id, pos);

-- Account data, global (room_id = '') and per room; latest value only.
CREATE TABLE syncv3_account_data (
	user_id text NOT NULL,
	room_id text NOT NULL,
	type text NOT NULL,
	json text NOT NULL,
	pos bigint NOT NULL,
	PRIMARY KEY (user_id, room_id, type)
);
CREATE INDEX syncv3_account_data_pos ON syncv3_account_data (user_id, pos);

-- Read receipts: latest m.receipt EDU content per room and user.
CREATE TABLE syncv3_receipts (
	room_id text NOT NULL,
	user_id text NOT NULL,
	receipt_type text NOT NULL,
	thread_id text NOT NULL DEFAULT '',
	event_id text NOT NULL,
	ts bigint NOT NULL DEFAULT 0,
	pos bigint NOT NULL,
	PRIMARY KEY (room_id, user_id, receipt_type, thread_id)
);

-- E2EE device data per device: device list changes are a log, key counts
-- the latest value.
CREATE TABLE syncv3_device_lists (
	pos bigint PRIMARY KEY,
	user_id text NOT NULL,
	device_id text NOT NULL,
	target_user text NOT NULL,
	change text NOT NULL			-- changed|left
);
CREATE INDEX syncv3_device_lists_dev ON syncv3_device_lists (user_id, device_id, pos);

CREATE TABLE syncv3_device_keys (
	user_id text NOT NULL,
	device_id text NOT NULL,
	otk_counts text NOT NULL DEFAULT '{}',
	fallback_types text NOT NULL DEFAULT '[]',
	pos bigint NOT NULL,
	PRIMARY KEY (user_id, device_id)
);

-- v3 sessions (the api). params holds the sticky stream parameters;
-- acked_to_device is the to-device position of the newest since the
-- session has sent, which releases messages for deletion.
CREATE TABLE syncv3_sessions (
	session_id bigserial PRIMARY KEY,
	user_id text NOT NULL,
	device_id text NOT NULL,
	params text NOT NULL DEFAULT '{}',
	acked_to_device bigint NOT NULL DEFAULT 0,
	created_at timestamptz NOT NULL DEFAULT now(),
	last_used timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX syncv3_sessions_dev ON syncv3_sessions (user_id, device_id);
CREATE INDEX syncv3_sessions_used ON syncv3_sessions (last_used);
