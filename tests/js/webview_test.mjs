// Headless Chromium (Debian's chromium, driven by playwright-core) opens
// syncv3's web view at API_URL/_syncv3/client/, pastes ACCESS_TOKEN and
// watches the room list it builds from the api's sliding sync endpoint
// (t_webview.sh). It drives the homeserver through SIMHS_URL's admin API:
// a message sent upstream must reach the page, typing must show, a click
// must open the room's timeline, and event content must stay text.
// Prints one line "RESULT <json>" for the shell to check; saves a
// screenshot to SHOT.
import { chromium } from "playwright-core";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";

const api = process.env.API_URL;
const sim = process.env.SIMHS_URL + "/_simhs";
const token = process.env.ACCESS_TOKEN;
const rooms = JSON.parse(process.env.ROOMS); // expected ids, newest first
const xroom = process.env.XSS_ROOM;          // has the hostile messages
const other = process.env.OTHER_ID;

async function simPost(p, body) {
	const r = await fetch(sim + "/" + p, { method: "POST",
		headers: { "Content-Type": "application/json" }, body: JSON.stringify(body) });
	if (!r.ok)
		throw new Error(p + ": " + r.status + " " + await r.text());
	return r.json();
}

const dir = fs.mkdtempSync(path.join(os.tmpdir(), "syncv3-webview-"));
const ctx = await chromium.launchPersistentContext(dir, {
	executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
	headless: true,
	viewport: { width: 1100, height: 700 },
	args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
		"--no-first-run", "--disable-background-networking",
		"--disable-component-update", "--disable-sync"],
});
const out = { console: [] };
let page = null;
try {
	page = await ctx.newPage();
	page.on("console", (m) => { if (m.type() === "error") out.console.push(m.text()); });
	page.on("pageerror", (e) => out.console.push("pageerror: " + e.message));
	const resp = await page.goto(api + "/_syncv3/client/");
	out.csp = resp.headers()["content-security-policy"] || null;
	await page.fill("#token", token);
	await page.click("#connect");
	const order = () => page.$$eval("#rooms li.room", (l) => l.map((e) => e.dataset.roomId));
	await page.waitForFunction((n) => document.querySelectorAll("#rooms li.room").length >= n,
		rooms.length, { timeout: 20000 });
	out.order = await order();
	out.names = await page.$$eval("#rooms li.room .name", (l) => l.map((e) => e.textContent));
	out.initials = await page.$$eval("#rooms li.room .avatar", (l) => l.map((e) => e.textContent));
	out.token_field = await page.inputValue("#token");

	// a message upstream in the oldest room: it moves to the top
	const oldest = rooms[rooms.length - 1];
	const body = "live " + Date.now();
	const t0 = Date.now();
	await simPost("rooms/" + encodeURIComponent(oldest) + "/send",
		{ sender: other, type: "m.room.message", content: { msgtype: "m.text", body } });
	await page.waitForFunction(([id, b]) => {
		const li = document.querySelector("#rooms li.room");
		return li && li.dataset.roomId === id && li.querySelector(".last") &&
		    li.querySelector(".last").textContent === b;
	}, [oldest, body], { timeout: 10000 });
	out.live_ms = Date.now() - t0;
	out.order_after = await order();

	// typing upstream shows in the list (when the api serves the extension)
	if (process.env.CHECK_TYPING === "1") {
	await simPost("rooms/" + encodeURIComponent(oldest) + "/typing", { user_ids: [other] });
	await page.waitForFunction(([id, u]) => {
		const li = document.querySelector(`#rooms li.room[data-room-id="${CSS.escape(id)}"]`);
		const t = li && li.querySelector(".typing-line");
		return t && t.textContent.includes(u);
	}, [oldest, other], { timeout: 10000 });
	out.typing = true;
	}

	// a click opens the hostile room's timeline: all of it, as text
	await page.click(`#rooms li.room[data-room-id="${xroom}"]`);
	await page.waitForFunction((n) => document.querySelectorAll("#timeline li.event").length >= n,
		Number(process.env.XSS_EVENTS), { timeout: 10000 });
	out.timeline = await page.$$eval("#timeline li.event .text", (l) => l.map((e) => e.textContent));
	out.html_elements = await page.$$eval("#timeline img, #timeline b, #timeline script, #rooms img, #rooms b",
		(l) => l.length);
	out.xss = await page.evaluate(() => window.__xss === undefined ? null : window.__xss);
	const body2 = "in the timeline " + Date.now();
	const t1 = Date.now();
	await simPost("rooms/" + encodeURIComponent(xroom) + "/send",
		{ sender: other, type: "m.room.message", content: { msgtype: "m.text", body: body2 } });
	await page.waitForFunction((b) => Array.from(document.querySelectorAll("#timeline .text"))
		.some((e) => e.textContent === b), body2, { timeout: 10000 });
	out.timeline_live_ms = Date.now() - t1;
	out.unread = await page.$$eval("#rooms li.room", (l) => l.map((e) => {
		const u = e.querySelector(".unread");
		return u ? Number(u.textContent) : 0;
	}));
} catch (e) {
	out.error = e.message.split("\n")[0]; // the shell reports it
} finally {
	if (page) {
		await page.screenshot({ path: process.env.SHOT, fullPage: true });
		out.status = await page.textContent("#status").catch(() => null);
		out.dom_rooms = await page.$$eval("#rooms li.room", (l) => l.map((e) => e.textContent)).catch(() => null);
	}
	await ctx.close();
	fs.rmSync(dir, { recursive: true, force: true });
}
console.log("RESULT " + JSON.stringify(out));
