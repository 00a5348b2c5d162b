// matrix-js-sdk pointed only at syncv3's base URL (tests/integration/t_js_sdk.sh):
// logs in through the pass-through /login, calls versions, pushrules and
// capabilities through the api, sends a message and prints what it got as
// one JSON line for the shell side to check against syncv3's own stores.
import * as sdk from "matrix-js-sdk";

const base = process.env.API_URL;
const room = process.env.ROOM_ID;
if (!base || !room) {
	console.error("API_URL and ROOM_ID are needed");
	process.exit(2);
}

const anon = sdk.createClient({ baseUrl: base });
const login = await anon.loginRequest({
	type: "m.login.password",
	identifier: { type: "m.id.user", user: process.env.LOGIN_USER },
	password: process.env.LOGIN_PASSWORD,
	device_id: "JSDEV",
});
const client = sdk.createClient({
	baseUrl: base,
	accessToken: login.access_token,
	userId: login.user_id,
	deviceId: login.device_id,
});
const versions = await client.getVersions();
const rules = await client.getPushRules();
const caps = await client.getCapabilities();
const sent = await client.sendEvent(room, "m.room.message", {
	msgtype: "m.text",
	body: "hello from matrix-js-sdk",
});
const out = {
	user_id: login.user_id,
	device_id: login.device_id,
	access_token: login.access_token,
	flag: versions.unstable_features?.["org.matrix.simplified_msc3575"] === true,
	has_pushrules: typeof rules.global === "object",
	has_room_versions: typeof caps["m.room_versions"] === "object",
	event_id: sent.event_id,
};
// the SDK logs to the console too: our line is marked
process.stdout.write("RESULT " + JSON.stringify(out) + "\n");
