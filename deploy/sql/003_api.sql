-- syncv3 api: what the api needs beyond 001_core.sql.
-- syncv3_session_rooms: the rooms a session has been sent by room_list, so
-- streaming mode sends changes of exactly those rooms (plus rooms newly
-- joined, invited or left). Dropped with the session.
CREATE TABLE syncv3_session_rooms (
	session_id bigint NOT NULL REFERENCES syncv3_sessions (session_id)
		ON DELETE CASCADE,
	room_id text NOT NULL,
	PRIMARY KEY (session_id, room_id)
);
