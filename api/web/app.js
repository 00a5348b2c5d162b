// app.js: syncv3's live web view. One sliding sync connection (MSC4186 as
// Synapse and matrix-js-sdk speak it: pos and timeout in the query
// string, the list sent whole on every request, a room subscription sent
// once) keeps a room list ordered by bump_stamp, with each room's last
// message, unread counts and who is typing; the selected room is
// subscribed to for its timeline. Everything from the server is put in
// the page with textContent, never parsed as HTML. The token lives in
// this page's memory only.
"use strict";

const SS_URL = "/_matrix/client/unstable/org.matrix.simplified_msc3575/sync";
const LIST = "all";
const LIST_SIZE = 100;
const TIMEOUT_MS = 20000;
const TIMELINE_MAX = 200;

const view = {
	token: null,
	pos: null,
	gen: 0,              // bumped to stop the running loop
	abort: null,         // the request in flight
	rooms: new Map(),    // room id -> what we know of it
	count: 0,            // the list's count, as the server says
	selected: null,      // the subscribed room
	sub_pending: false,  // its subscription still to send
	unsub: [],           // rooms to unsubscribe from
};

function $(id) {
	return document.getElementById(id);
}

function status(text) {
	$("status").textContent = text;
}

function sleep(ms) {
	return new Promise((ok) => setTimeout(ok, ms));
}

function room_of(id) {
	let r = view.rooms.get(id);
	if (r === undefined) {
		r = { id, name: null, heroes: [], bump: 0, last: null, unread: 0,
			highlight: 0, typing: [], timeline: [] };
		view.rooms.set(id, r);
	}
	return r;
}

// A room's name: its own, else its heroes', else its id (spec order).
function display_name(r) {
	if (r.name)
		return r.name;
	const h = r.heroes.map((x) => x.displayname || x.user_id).filter(Boolean);
	return h.length > 0 ? h.join(", ") : r.id;
}

// Up to two letters for an avatar: the first letter or digit of each of
// two words (sigils and punctuation left out).
function initials(name) {
	const words = name.split(/[\s:]+/).filter((w) => /[\p{L}\p{N}]/u.test(w));
	const first = (w) => (w.match(/[\p{L}\p{N}]/u) || [""])[0];
	const s = first(words[0] || "?") + (words.length > 1 ? first(words[1]) : "");
	return s.toUpperCase();
}

function hue(s) {
	let h = 0;
	for (const c of s)
		h = (h * 31 + c.codePointAt(0)) % 360;
	return h;
}

// What an event says in one line (text only).
function summary(ev) {
	const c = ev.content || {};
	if (ev.type === "m.room.message")
		return typeof c.body === "string" ? c.body : "(message)";
	if (ev.type === "m.room.member") {
		const verbs = { join: "joined", leave: "left", invite: "was invited",
			ban: "was banned", knock: "knocked" };
		return (c.displayname || ev.state_key || "") + " " +
		    (verbs[c.membership] || c.membership || "");
	}
	if (ev.type === "m.room.name")
		return "named the room " + (c.name || "");
	if (ev.type === "m.room.topic")
		return "set the topic: " + (c.topic || "");
	return ev.type;
}

function add_timeline(r, events, replace) {
	if (replace)
		r.timeline = [];
	const seen = new Set(r.timeline.map((e) => e.event_id));
	for (const ev of events) {
		if (ev && typeof ev === "object" && !seen.has(ev.event_id)) {
			r.timeline.push(ev);
			seen.add(ev.event_id);
		}
	}
	if (r.timeline.length > TIMELINE_MAX)
		r.timeline.splice(0, r.timeline.length - TIMELINE_MAX);
}

// One room of a response: fields present replace what we had.
function apply_room(id, d) {
	const r = room_of(id);
	if (typeof d.name === "string")
		r.name = d.name;
	if (Array.isArray(d.heroes))
		r.heroes = d.heroes.filter((h) => h && typeof h === "object");
	if (Number.isInteger(d.bump_stamp) && d.bump_stamp > 0)
		r.bump = d.bump_stamp;
	if (Number.isInteger(d.notification_count))
		r.unread = d.notification_count;
	if (Number.isInteger(d.highlight_count))
		r.highlight = d.highlight_count;
	if (Array.isArray(d.timeline) && d.timeline.length > 0) {
		const ev = d.timeline[d.timeline.length - 1];
		if (ev && typeof ev === "object")
			r.last = ev;
		// the subscription's first answer brings the longer timeline
		if (id === view.selected)
			add_timeline(r, d.timeline, d.initial === true || d.limited === true);
	}
}

function apply(data) {
	const lists = data.lists || {};
	if (lists[LIST] && Number.isInteger(lists[LIST].count))
		view.count = lists[LIST].count;
	for (const [id, d] of Object.entries(data.rooms || {})) {
		if (d && typeof d === "object")
			apply_room(id, d);
	}
	const ext = data.extensions || {};
	const typing = (ext.typing && ext.typing.rooms) || {};
	for (const [id, t] of Object.entries(typing)) {
		const ids = t && t.content && t.content.user_ids;
		if (Array.isArray(ids))
			room_of(id).typing = ids.filter((u) => typeof u === "string");
	}
}

function el(tag, cls, text) {
	const e = document.createElement(tag);
	if (cls)
		e.className = cls;
	if (text !== undefined)
		e.textContent = text;
	return e;
}

function typing_text(ids) {
	if (ids.length === 0)
		return "";
	return ids.join(", ") + (ids.length === 1 ? " is typing" : " are typing");
}

function room_item(r) {
	const li = el("li", "room" + (r.id === view.selected ? " selected" : ""));
	const name = display_name(r);
	const av = el("div", "avatar", initials(name));
	av.style.background = "hsl(" + hue(r.id) + ", 45%, 45%)";
	li.dataset.roomId = r.id;
	li.append(av);
	const body = el("div", "body");
	body.append(el("div", "name", name));
	if (r.typing.length > 0)
		body.append(el("div", "typing-line", typing_text(r.typing)));
	else
		body.append(el("div", "last", r.last ? summary(r.last) : ""));
	li.append(body);
	if (r.unread > 0 || r.highlight > 0)
		li.append(el("span", "unread" + (r.highlight > 0 ? " highlight" : ""),
		    String(r.highlight > 0 ? r.highlight : r.unread)));
	li.addEventListener("click", () => select(r.id));
	return li;
}

// Newest first, as bump_stamp orders them; ties by id, so it is stable.
function ordered() {
	return Array.from(view.rooms.values()).sort((a, b) =>
	    b.bump - a.bump || (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
}

function render_timeline() {
	const r = view.selected ? view.rooms.get(view.selected) : null;
	$("room-name").textContent = r ? display_name(r) : "";
	const ol = $("timeline");
	ol.replaceChildren(...(r ? r.timeline : []).map((ev) => {
		const li = el("li", "event" + (ev.type === "m.room.message" ? "" : " state"));
		li.dataset.eventId = ev.event_id || "";
		li.append(el("span", "sender", ev.sender || ""), el("span", "text", summary(ev)));
		return li;
	}));
	ol.scrollTop = ol.scrollHeight;
	$("typing").textContent = r ? typing_text(r.typing) : "";
}

function render() {
	$("rooms").replaceChildren(...ordered().map(room_item));
	$("count").textContent = view.count + (view.count === 1 ? " room" : " rooms");
	render_timeline();
}

// A click: subscribe to the room (and drop the previous one), at once.
function select(id) {
	if (view.selected === id)
		return;
	if (view.selected)
		view.unsub.push(view.selected);
	view.selected = id;
	view.sub_pending = true;
	const r = view.rooms.get(id);
	if (r)
		r.timeline = r.last ? [r.last] : [];
	render();
	if (view.abort)
		view.abort.abort();	// the loop sends the subscription now
}

function request_body() {
	const body = {
		lists: { [LIST]: { ranges: [[0, LIST_SIZE - 1]], timeline_limit: 1,
			required_state: [["m.room.name", ""], ["m.room.avatar", ""]],
			filters: {} } },
		extensions: { typing: { enabled: true } },
	};
	if (view.selected && view.sub_pending)
		body.room_subscriptions = { [view.selected]: { timeline_limit: 50,
			required_state: [["m.room.name", ""]] } };
	if (view.unsub.length > 0)
		body.unsubscribe_rooms = view.unsub.slice();
	return body;
}

// One request; returns false when the loop must stop.
async function round(gen) {
	const body = request_body();
	let url = SS_URL + "?timeout=" + (view.pos ? TIMEOUT_MS : 0);
	if (view.pos)
		url += "&pos=" + encodeURIComponent(view.pos);
	const ctl = new AbortController();
	view.abort = ctl;
	let res, data = null;
	try {
		res = await fetch(url, { method: "POST", signal: ctl.signal,
			headers: { Authorization: "Bearer " + view.token,
				"Content-Type": "application/json" },
			body: JSON.stringify(body) });
		data = await res.json().catch(() => null);
	} catch (e) {
		if (gen !== view.gen)
			return false;
		if (ctl.signal.aborted)
			return true;	// a new subscription: go again at once
		status("network error; retrying");
		await sleep(2000);
		return true;
	} finally {
		view.abort = null;
	}
	if (gen !== view.gen)
		return false;
	const err = data && typeof data.errcode === "string" ? data.errcode : "";
	if (res.status === 401 || res.status === 403) {
		status("token refused (" + (err || res.status) + ")");
		return false;
	}
	if (res.status === 400) {	// the connection is gone: start again
		view.pos = null;
		view.sub_pending = view.selected !== null;
		status("connection reset (" + (err || 400) + ")");
		return true;
	}
	if (!res.ok || data === null || typeof data !== "object") {
		status("error " + res.status + (err ? " " + err : "") + "; retrying");
		await sleep(2000);
		return true;
	}
	view.sub_pending = false;
	view.unsub.splice(0, body.unsubscribe_rooms ? body.unsubscribe_rooms.length : 0);
	view.pos = typeof data.pos === "string" ? data.pos : null;
	apply(data);
	render();
	status("live");
	return true;
}

async function run(gen) {
	while (gen === view.gen && await round(gen))
		;
}

function connect(ev) {
	ev.preventDefault();
	const t = $("token").value.trim();
	if (!t)
		return;
	view.gen++;
	if (view.abort)
		view.abort.abort();
	Object.assign(view, { token: t, pos: null, rooms: new Map(), count: 0,
		selected: null, sub_pending: false, unsub: [] });
	$("token").value = "";
	render();
	status("connecting");
	run(view.gen);
}

document.addEventListener("DOMContentLoaded", () => {
	$("login").addEventListener("submit", connect);
});
