// matrix-js-sdk 43 in sliding sync mode against syncv3 (tests/integration/
// t_js_sliding.sh). The SDK knows only API_URL; the driver pokes the
// simulated homeserver's admin API (SIMHS_URL) to make things happen
// upstream and waits for the SDK's own objects and events to show them.
// It asserts nothing itself: it prints one "RESULT {json}" line with what
// the client saw, and the shell checks that against what simhs holds.
// A step that never completes is reported as null/false, not thrown, so
// the shell can say which one failed.
import * as sdk from "matrix-js-sdk";
import { SlidingSync, SlidingSyncEvent } from "matrix-js-sdk/lib/sliding-sync.js";
import { performance } from "node:perf_hooks";

const env = (k) => {
	const v = process.env[k];
	if (!v) {
		console.error(`${k} is needed`);
		process.exit(2);
	}
	return v;
};
const base = env("API_URL");
const simhs = env("SIMHS_URL");
const window = Number(process.env.WINDOW || 3);
const subRoom = env("SUB_ROOM"); // outside the window: opened by subscription
const peer = env("PEER"); // the other user, acting through simhs
// the SDK aborts a request after timeout + 10 s; the poll itself is this
const pollMs = Number(process.env.POLL_MS || 10000);
const stepMs = pollMs + 5000; // "within the sync timeout", with slack

const admin = async (path, body) => {
	const r = await fetch(`${simhs}/_simhs/${path}`, {
		method: "POST",
		headers: { "Content-Type": "application/json" },
		body: JSON.stringify(body),
	});
	if (!r.ok) throw new Error(`simhs ${path}: ${r.status} ${await r.text()}`);
	return r.json();
};

// Resolves with cb's first truthy value, or null after ms.
const until = (ms, setup) =>
	new Promise((resolve) => {
		let done = false;
		let undo = () => {};
		const finish = (v) => {
			if (done) return;
			done = true;
			clearTimeout(timer);
			undo();
			resolve(v);
		};
		const timer = setTimeout(() => finish(null), ms);
		undo = setup(finish) || (() => {});
	});

const bodies = (room) =>
	room
		.getLiveTimeline()
		.getEvents()
		.filter((e) => e.getType() === "m.room.message")
		.map((e) => e.getContent().body);

const anon = sdk.createClient({ baseUrl: base });
const login = await anon.loginRequest({
	type: "m.login.password",
	identifier: { type: "m.id.user", user: env("LOGIN_USER") },
	password: env("LOGIN_PASSWORD"),
	device_id: "JSSLIDE",
});
const client = sdk.createClient({
	baseUrl: base,
	accessToken: login.access_token,
	userId: login.user_id,
	deviceId: login.device_id,
});

const required = [
	["m.room.name", ""],
	["m.room.create", ""],
	["m.room.member", "$LAZY"],
];
const lists = new Map([
	[
		"all",
		{
			ranges: [[0, window - 1]],
			timeline_limit: 2,
			required_state: required,
			filters: {},
		},
	],
]);
const ss = new SlidingSync(base, lists, { timeline_limit: 10, required_state: required }, client, pollMs);

// every room of every response, raw, as the SDK received it
const seenRaw = new Map(); // event_id -> performance.now() of first sight
const requests = { n: 0, errors: [] };
ss.on(SlidingSyncEvent.RoomData, (roomId, data) => {
	for (const ev of data.timeline || []) {
		if (ev.event_id && !seenRaw.has(ev.event_id)) seenRaw.set(ev.event_id, performance.now());
	}
});
ss.on(SlidingSyncEvent.Lifecycle, (state, resp, err) => {
	if (state === "COMPLETE") requests.n++;
	if (err) requests.errors.push(String(err.message || err));
});

const states = [];
client.on(sdk.ClientEvent.Sync, (state) => states.push(state));
const out = { user_id: login.user_id, device_id: login.device_id, access_token: login.access_token };

const synced = until(stepMs * 2, (done) => {
	const f = (state) => state === "SYNCING" && done(true);
	client.on(sdk.ClientEvent.Sync, f);
	return () => client.off(sdk.ClientEvent.Sync, f);
});
await client.startClient({ slidingSync: ss });
out.synced = (await synced) === true;
out.states = [...new Set(states)];

// 1. the window: Room objects with names, bump stamps and timelines
const windowRooms = await until(stepMs, (done) => {
	const check = () => {
		const rs = client.getRooms().filter((r) => r.getMyMembership() === "join");
		if (rs.length >= window && rs.every((r) => bodies(r).length > 0)) done(rs);
	};
	const t = setInterval(check, 50);
	check();
	return () => clearInterval(t);
});
const listed = (windowRooms || []).map((r) => ({
	room_id: r.roomId,
	name: r.name,
	bump_stamp: r.getBumpStamp() ?? null,
	bodies: bodies(r),
}));
// the order a room list shows: newest activity first, as Element sorts
listed.sort((a, b) => (b.bump_stamp ?? 0) - (a.bump_stamp ?? 0));
out.window = listed;
out.list_count = ss.getListData("all")?.joinedCount ?? null;

// 2. a room outside the window, opened by subscription
const subscribed = until(stepMs, (done) => {
	const check = () => {
		const r = client.getRoom(subRoom);
		if (r && bodies(r).length > 0) done(r);
	};
	const t = setInterval(check, 50);
	return () => clearInterval(t);
});
out.sub_before = client.getRoom(subRoom) !== null;
ss.modifyRoomSubscriptions(new Set([subRoom]));
const sr = await subscribed;
out.subscription = sr ? { room_id: sr.roomId, name: sr.name, bodies: bodies(sr) } : null;

const top = listed.length > 0 ? listed[0].room_id : subRoom;
out.top = top;

// 3. extensions: each caused upstream, each awaited on the SDK's events
const onEvent = (pred) =>
	until(stepMs, (done) => {
		const f = (ev) => pred(ev) && done(ev);
		client.on(sdk.ClientEvent.Event, f);
		return () => client.off(sdk.ClientEvent.Event, f);
	});

const toDev = until(stepMs, (done) => {
	const f = (m) => m.message?.type === "org.syncv3.test" && done(m.message);
	client.on(sdk.ClientEvent.ReceivedToDeviceMessage, f);
	return () => client.off(sdk.ClientEvent.ReceivedToDeviceMessage, f);
});
await admin("to_device", {
	sender: peer,
	type: "org.syncv3.test",
	content: { hello: "to-device" },
	user_id: login.user_id,
	device_id: login.device_id,
});
const td = await toDev;
out.to_device = td ? { sender: td.sender, content: td.content } : null;

const typing = onEvent((ev) => ev.getType() === "m.typing" && ev.getRoomId() === top && (ev.getContent().user_ids || []).includes(peer));
await admin(`rooms/${encodeURIComponent(top)}/typing`, { user_ids: [peer] });
const ty = await typing;
out.typing = ty ? ty.getContent().user_ids : null;

const lastEv = client.getRoom(top)?.getLiveTimeline().getEvents().at(-1)?.getId();
const receipt = onEvent((ev) => ev.getType() === "m.receipt" && ev.getRoomId() === top && JSON.stringify(ev.getContent()).includes(peer));
await admin(`rooms/${encodeURIComponent(top)}/receipt`, { user_id: peer, event_id: lastEv });
const rc = await receipt;
out.receipt = rc ? { event_id: lastEv, content: rc.getContent() } : null;
// the Room model took it: whose receipt is on that event
out.receipt_users = (client.getRoom(top)?.getUsersReadUpTo(client.getRoom(top).findEventById(lastEv)) || []).sort();

const acct = until(stepMs, (done) => {
	const f = (ev) => ev.getType() === "org.syncv3.test" && done(ev);
	client.on(sdk.ClientEvent.AccountData, f);
	return () => client.off(sdk.ClientEvent.AccountData, f);
});
await admin("account_data", { user_id: login.user_id, type: "org.syncv3.test", content: { hello: "account data" } });
const ad = await acct;
out.account_data = ad ? ad.getContent() : null;
out.account_data_store = client.getAccountData("org.syncv3.test")?.getContent() ?? null;

// 4. a message upstream, live: time from the upstream send to the Room
// timeline event (the client's long poll is parked when it is sent)
const live = async (label) => {
	const body = `live ${label} ${Date.now()}`;
	const arrived = until(stepMs, (done) => {
		const f = (ev, room) => room?.roomId === top && ev.getContent().body === body && done(performance.now());
		client.on(sdk.RoomEvent.Timeline, f);
		return () => client.off(sdk.RoomEvent.Timeline, f);
	});
	await new Promise((r) => setTimeout(r, 300)); // let the poll park
	const t0 = performance.now();
	const sent = await admin(`rooms/${encodeURIComponent(top)}/send`, {
		sender: peer,
		type: "m.room.message",
		content: { msgtype: "m.text", body },
	});
	const t1 = await arrived;
	return { event_id: sent.event_id, body, ms: t1 === null ? null : Math.round((t1 - t0) * 10) / 10 };
};
out.live = [];
for (let i = 0; i < 5; i++) out.live.push(await live(i));
out.live_in_room = bodies(client.getRoom(top)).slice(-5);

// 5. a message sent by the client itself (passed through to simhs)
// coming back through sliding sync (the raw room data, not the local echo)
const mine = `from the sdk ${Date.now()}`;
const t0 = performance.now();
const sent = await client.sendEvent(top, "m.room.message", { msgtype: "m.text", body: mine });
const back = await until(stepMs, (done) => {
	const check = () => seenRaw.has(sent.event_id) && done(seenRaw.get(sent.event_id));
	const t = setInterval(check, 20);
	check();
	return () => clearInterval(t);
});
out.own = { event_id: sent.event_id, body: mine, back: back !== null, ms: back === null ? null : Math.round((back - t0) * 10) / 10 };
out.own_in_room = client.getRoom(top)?.findEventById(sent.event_id)?.getContent().body ?? null;

// 6. an invite, shown as one; then rejected upstream, it must not stay
// an invite nor turn into a joined room
const invRoom = (await admin("rooms", { creator: peer, name: "JS invite" })).room_id;
const membershipOf = (want) =>
	until(stepMs, (done) => {
		const t = setInterval(() => {
			const m = client.getRoom(invRoom)?.getMyMembership();
			if (m && want(m)) done(m);
		}, 50);
		return () => clearInterval(t);
	});
const invited = membershipOf((m) => m === "invite");
await admin(`rooms/${encodeURIComponent(invRoom)}/invite`, { sender: peer, user_id: login.user_id });
out.invite = (await invited) === "invite";
const rejected = membershipOf((m) => m !== "invite");
await admin(`rooms/${encodeURIComponent(invRoom)}/leave`, { user_id: login.user_id });
out.rejected_membership = await rejected; // null: still an invite

out.requests = requests.n;
out.errors = requests.errors.slice(0, 5);
client.stopClient();
process.stdout.write("RESULT " + JSON.stringify(out) + "\n");
process.exit(0);
