// Headless Chromium (Debian's chromium, driven by playwright-core) loads a
// page from another origin (a loopback port of ours) whose script calls
// syncv3's api with an Authorization header: the browser sends CORS
// pre-flights and only lets the page read answers carrying CORS headers,
// so success here is CORS proven in a real browser (t_js_browser.sh).
import { chromium } from "playwright-core";
import http from "node:http";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";

const api = process.env.API_URL;
const token = process.env.ACCESS_TOKEN;
const room = process.env.ROOM_ID;
const page_html = "<!doctype html><title>syncv3 cors</title><p>cors test</p>";
const server = http.createServer((req, res) => {
	res.writeHead(200, { "Content-Type": "text/html" });
	res.end(page_html);
});
await new Promise((ok) => server.listen(0, "127.0.0.1", ok));
const origin = `http://127.0.0.1:${server.address().port}`;
const dir = fs.mkdtempSync(path.join(os.tmpdir(), "syncv3-chromium-"));
const ctx = await chromium.launchPersistentContext(dir, {
	executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
	headless: true,
	args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
		"--no-first-run", "--disable-background-networking",
		"--disable-component-update", "--disable-sync"],
});
let out;
try {
	const page = await ctx.newPage();
	await page.goto(origin + "/");
	out = await page.evaluate(async ({ api, token, room }) => {
		const auth = { Authorization: "Bearer " + token };
		const r = {};
		const who = await fetch(api + "/_matrix/client/v3/account/whoami", { headers: auth });
		r.whoami = { status: who.status, body: await who.json() };
		const v = await fetch(api + "/_matrix/client/versions");
		r.flag = (await v.json()).unstable_features["org.matrix.simplified_msc3575"];
		const sent = await fetch(api + "/_matrix/client/v3/rooms/" + encodeURIComponent(room) +
			"/send/m.room.message/browser1", {
			method: "PUT",
			headers: { ...auth, "Content-Type": "application/json" },
			body: JSON.stringify({ msgtype: "m.text", body: "hello from chromium" }),
		});
		r.sent = { status: sent.status, body: await sent.json() };
		const s = await fetch(api + "/_matrix/client/v3/sync", {
			method: "POST",
			headers: { ...auth, "Content-Type": "application/json" },
			body: JSON.stringify({ room_list: {} }),
		});
		r.v3 = s.status;
		// MSC4108's rendezvous (sign in with a QR code): js-sdk sends
		// If-Match / If-None-Match and reads the answer's ETag, which a
		// page sees only when Access-Control-Expose-Headers names it
		try {
			const rz = await fetch(api + "/_matrix/client/unstable/org.simhs/echo", {
				method: "PUT",
				headers: { "Content-Type": "text/plain", "If-Match": '"e1"' },
				body: "rz",
			});
			const poll = await fetch(api + "/_matrix/client/unstable/org.simhs/echo", {
				headers: { "If-None-Match": '"e1"' },
			});
			r.rz = { status: rz.status, etag: rz.headers.get("etag"),
				if_match: (await rz.json()).headers["if-match"],
				if_none_match: (await poll.json()).headers["if-none-match"] };
		} catch (e) {
			r.rz = { error: String(e) };
		}
		// a header the api does not allow fails the pre-flight
		try {
			await fetch(api + "/_matrix/client/versions", { headers: { "X-Not-Allowed": "1" } });
			r.custom_blocked = false;
		} catch (e) {
			r.custom_blocked = true;
		}
		try {
			await fetch("http://127.0.0.1:1/nothing", { headers: auth });
			r.blocked = false;
		} catch (e) {
			r.blocked = true;
		}
		return r;
	}, { api, token, room });
	out.origin = origin;
} finally {
	await ctx.close();
	server.close();
	fs.rmSync(dir, { recursive: true, force: true });
}
process.stdout.write("RESULT " + JSON.stringify(out) + "\n");
