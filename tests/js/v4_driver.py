#!/usr/bin/env python3
"""A small client of the merged MSC4186 form, POST /_matrix/client/v4/sync
(tests/integration/t_ss_v4_driver.sh runs it). No client library speaks
this form yet, so this is one: a connection object that keeps `pos` and
`conn_id` in the body, and a room model that applies responses the way
the MSC tells a client to (`initial` replaces, otherwise merge;
`required_state` entries replace by (type, state_key) and a StateStub,
an entry without `content`, deletes; `expanded_timeline` means older
events were prepended). The scenario below drives it against syncv3 and
the simulated homeserver and checks what the model ends up holding
against what simhs holds.

Python 3 with its standard library only, which every machine that runs
the suite has (lib.sh needs python3 already), so this scenario never
skips for want of node or npm packages, unlike the matrix-js-sdk ones.

Usage: API_URL=... SIMHS_URL=... v4_driver.py; exits 0 when every check
passed, 1 otherwise, printing one line per check.
"""
import json
import os
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request

API = os.environ["API_URL"]
SIM = os.environ["SIMHS_URL"]
failures = []


def check(ok, what, detail="", bug=None):
    """bug: the /work/briefs/s3/ss-bugs.txt entry of a behaviour reported
    broken; while it fails it is an XFAIL, once it passes an XPASS (drop
    the bug argument then), as lib_ss_syn.sh's xfail."""
    if bug is not None:
        print(("XPASS (ss-bugs %s): drop the bug argument of: " % bug if ok else "XFAIL (ss-bugs %s): " % bug) +
              what + ("" if ok else ": " + str(detail)[:300]), flush=True)
        return ok
    print(("ok   " if ok else "FAIL ") + what + ("" if ok else ": " + str(detail)[:800]), flush=True)
    if not ok:
        failures.append(what)
    return ok


def http(method, url, body=None, token=None, timeout=60):
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, method=method)
    req.add_header("Content-Type", "application/json")
    if token:
        req.add_header("Authorization", "Bearer " + token)
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, json.loads(r.read() or b"{}")
    except urllib.error.HTTPError as e:
        raw = e.read()
        try:
            return e.code, json.loads(raw)
        except ValueError:
            return e.code, {"raw": raw.decode(errors="replace")}


def sim(path, body=None):
    st, out = http("POST" if body is not None else "GET", SIM + "/_simhs/" + path, body)
    if st != 200:
        raise RuntimeError("simhs %s: %s %s" % (path, st, out))
    return out


def q(s):
    return urllib.parse.quote(s, safe="")


class Room:
    """What a client holds for one room, built only from responses."""

    def __init__(self):
        self.fields = {}
        self.state = {}  # (type, state_key) -> event
        self.timeline = []  # event ids, oldest first
        self.events = {}

    def apply(self, r):
        if r.get("initial"):
            self.fields, self.state = {}, {}
            if not r.get("expanded_timeline"):
                self.timeline = []
        for k, v in r.items():
            if k not in ("required_state", "timeline", "stripped_state"):
                self.fields[k] = v
        for ev in r.get("required_state", []):
            key = (ev["type"], ev["state_key"])
            if "content" in ev:
                self.state[key] = ev
            else:  # a StateStub: that state is gone
                self.state.pop(key, None)
        tl = [e["event_id"] for e in r.get("timeline", [])]
        for e in r.get("timeline", []):
            self.events[e["event_id"]] = e
        if r.get("expanded_timeline") or r.get("initial"):
            # the server sent the latest N again: replace, keep order
            self.timeline = tl if tl else self.timeline
        else:
            self.timeline += [e for e in tl if e not in self.timeline]
        if "stripped_state" in r:
            self.fields["stripped_state"] = r["stripped_state"]


class Conn:
    """One sliding sync connection of the merged form."""

    def __init__(self, token, conn_id=None):
        self.token, self.conn_id, self.pos = token, conn_id, None
        self.rooms = {}
        self.last = None

    def request(self, body, pos="keep", timeout_ms=None):
        b = dict(body)
        if self.conn_id is not None:
            b["conn_id"] = self.conn_id
        p = self.pos if pos == "keep" else pos
        if p is not None:
            b["pos"] = p
        if timeout_ms is not None:
            b["timeout"] = timeout_ms
        return http("POST", API + "/_matrix/client/v4/sync", b, self.token)

    def sync(self, body, timeout_ms=None, pos="keep"):
        st, out = self.request(body, pos, timeout_ms)
        if st != 200:
            raise RuntimeError("v4 sync %s: %s" % (st, out))
        self.pos = out["pos"]
        for rid, r in out.get("rooms", {}).items():
            self.rooms.setdefault(rid, Room()).apply(r)
        self.last = out
        return out


def sim_state(room):
    return {(e["type"], e["state_key"]): e for e in sim("rooms/%s/state" % q(room))["events"]}


def sim_events(room):
    return sim("rooms/%s/events" % q(room))["events"]


def send(room, sender, body):
    return sim("rooms/%s/send" % q(room), {"sender": sender, "type": "m.room.message",
                                            "content": {"msgtype": "m.text", "body": body}})


def wait_sync_ready(conn, body, secs=20):
    """The first request of an unseen device may wait for its first
    upstream sync; retry a 'not ready' answer until the window comes."""
    end = time.time() + secs
    while True:
        st, out = conn.request(body, None)
        if st == 200:
            conn.pos = out["pos"]
            for rid, r in out.get("rooms", {}).items():
                conn.rooms.setdefault(rid, Room()).apply(r)
            conn.last = out
            return out
        if time.time() > end:
            raise RuntimeError("first v4 sync never succeeded: %s %s" % (st, out))
        time.sleep(0.2)


def state_stub(conn, lists, room, sender):
    """A proxy cannot see state removed upstream: /v3/sync never reports
    a removal, so the accumulator only ever holds present keys (the core's
    decision, docs: sliding sync). What the client can rely on is the
    other half of the rule: an entry it holds that changed comes with its
    content (an Event), never as a StateStub, and its model keeps it."""
    key = ("m.room.topic", "")
    if key not in conn.rooms[room].state:
        raise RuntimeError("the topic was never sent")
    ev = sim("rooms/%s/send" % q(room), {"sender": sender, "type": key[0], "state_key": key[1],
                                         "content": {"topic": "changed"}})["event_id"]
    send(room, sender, "after the topic")
    out = conn.sync({"lists": lists}, timeout_ms=5000)
    rs = out.get("rooms", {}).get(room, {}).get("required_state", [])
    if not any(e.get("event_id") == ev for e in rs):
        out = conn.sync({"lists": lists}, timeout_ms=5000)
        rs += out.get("rooms", {}).get(room, {}).get("required_state", [])
    check([e for e in rs if "content" not in e] == [], "no StateStub for state that is still there", rs)
    check(conn.rooms[room].state.get(key, {}).get("event_id") == ev, "the changed entry replaced the old one",
          conn.rooms[room].state.get(key))


def main():
    A, B, C = "@alice:localhost", "@bob:localhost", "@carol:localhost"
    tok = sim("login", {"user_id": A, "device_id": "V4DEV"})["access_token"]
    for u in ("bob", "carol"):
        sim("users", {"localpart": u})
    rooms = []
    for i in range(4):
        r = sim("rooms", {"creator": A, "name": "V4 %d" % i, "topic": "topic %d" % i})["room_id"]
        sim("rooms/%s/join" % q(r), {"user_id": B, "displayname": "Bob"})
        sim("rooms/%s/join" % q(r), {"user_id": C, "displayname": "Carol"})
        for m in range(3):
            send(r, B, "v4 room %d msg %d" % (i, m))
        rooms.append(r)
    # an invite from carol to alice, with the invite_state simhs derives
    inv = sim("rooms", {"creator": C, "name": "Invite room", "encrypted": True})["room_id"]
    sim("rooms/%s/invite" % q(inv), {"sender": C, "user_id": A})

    def bump_order():
        order = []
        for r in rooms + [inv]:
            evs = sim_events(r)
            if r == inv:  # for a non-joined room the membership event counts
                pos = max(e["pos"] for e in evs if e["type"] == "m.room.member" and e["state_key"] == A)
            else:
                pos = max(e["pos"] for e in evs if e["type"] in ("m.room.message", "m.room.create"))
            order.append((pos, r))
        return [r for _, r in sorted(order, reverse=True)]

    rs_list = {"include": [{"type": "m.room.name", "state_key": ""}, {"type": "m.room.topic"}],
               "lazy_members": True}
    lists = {"top": {"range": [0, 1], "timeline_limit": 2, "required_state": rs_list}}
    main = Conn(tok, "main")
    out = wait_sync_ready(main, {"lists": lists})
    order = bump_order()
    check(isinstance(out.get("pos"), str) and out["pos"] != "", "pos is an opaque string", out.get("pos"))
    check(out.get("lists", {}).get("top", {}).get("count") == len(order), "list count = every room incl. the invite",
          out.get("lists"))
    check(sorted(out.get("rooms", {})) == sorted(order[:2]), "range [0,1] = the two most recent rooms",
          (sorted(out.get("rooms", {})), order))
    for rid in order[:2]:
        r = out["rooms"].get(rid, {})
        if rid == inv:
            continue
        check(r.get("initial") is True, "first sending is initial: " + rid, r)
        st = sim_state(rid)
        want = {k for k in st if k in (("m.room.name", ""), ("m.room.topic", ""))}
        senders = {e["sender"] for e in r.get("timeline", [])}
        want |= {("m.room.member", s) for s in senders}
        got = {(e["type"], e["state_key"]) for e in r.get("required_state", [])}
        check(got == want, "include (exact + type-only) and lazy_members for timeline senders", (got, want))
        tl = [e["event_id"] for e in r.get("timeline", [])]
        check(tl == [e["event_id"] for e in sim_events(rid)][-2:], "timeline = the last timeline_limit events",
              tl)

    # the invite, when in range, carries stripped_state and nothing of
    # the room's contents
    full = Conn(tok, "invites")
    out = full.sync({"lists": {"inv": {"timeline_limit": 5, "required_state": {"include": [{}]},
                                       "filters": {"is_invited": True}}}})
    ri = out.get("rooms", {}).get(inv, {})
    check(out["lists"]["inv"]["count"] == 1 and list(out.get("rooms", {})) == [inv],
          "is_invited list holds only the invite", out.get("rooms", {}).keys())
    ss = ri.get("stripped_state")
    check(isinstance(ss, list) and any(e.get("type") == "m.room.member" and e.get("state_key") == A and
                                       e.get("content", {}).get("membership") == "invite" for e in ss),
          "stripped_state has the invite member event", ri)
    check(ss is not None and any(e.get("type") == "m.room.name" for e in ss), "stripped_state has the room name", ss)
    check("timeline" not in ri and "required_state" not in ri and "invite_state" not in ri,
          "an invite has no timeline/required_state/invite_state in the merged form", sorted(ri))

    # include everything, exclude the create event; lazy memberships are
    # not filtered by exclude
    sub = rooms[0]
    rs_all = {"include": [{}], "exclude": [{"type": "m.room.create", "state_key": ""},
                                           {"type": "m.room.member"}], "lazy_members": True}
    ex = Conn(tok, "exclude")
    out = ex.sync({"room_subscriptions": {sub: {"timeline_limit": 1, "required_state": rs_all}}})
    r = out.get("rooms", {}).get(sub, {})
    st = sim_state(sub)
    last_sender = sim_events(sub)[-1]["sender"]
    want = {k for k in st if k[0] not in ("m.room.create", "m.room.member")} | {("m.room.member", last_sender)}
    got = {(e["type"], e["state_key"]) for e in r.get("required_state", [])}
    check(got == want, "include [{}] minus exclude, plus the lazy member exclude does not filter", (got, want))
    check("lists" not in r, "a room only subscribed has no lists field", r.get("lists"))

    # state_key without type: all types with that key
    sk = Conn(tok, "statekey")
    out = sk.sync({"room_subscriptions": {sub: {"timeline_limit": 0,
                                                "required_state": {"include": [{"state_key": B}]}}}})
    got = {(e["type"], e["state_key"]) for e in out["rooms"].get(sub, {}).get("required_state", [])}
    check(got == {k for k in sim_state(sub) if k[1] == B}, "include {state_key} alone matches every type", got)

    # connections are separate: "main"'s pos is not "exclude"'s
    st_, body = ex.request({}, main.pos)
    check(st_ == 400 and body.get("errcode") == "M_UNKNOWN_POS", "another connection's pos is M_UNKNOWN_POS",
          (st_, body))
    st_, body = Conn(tok, "main").request({"lists": lists}, "not-a-pos")
    check(st_ == 400 and body.get("errcode") == "M_UNKNOWN_POS", "a forged pos is M_UNKNOWN_POS", (st_, body))
    other = sim("login", {"user_id": A, "device_id": "V4OTHER"})["access_token"]
    st_, body = Conn(other, "main").request({"lists": lists}, main.pos)
    check(st_ == 400 and body.get("errcode") == "M_UNKNOWN_POS", "another device's pos is M_UNKNOWN_POS",
          (st_, body))

    # incremental, lazy: bob again (sent already) brings no member;
    # carol (never sent on "main") brings hers; timeout in the body holds
    # the request until the event comes
    top = order[0] if order[0] != inv else order[1]
    sent_members = {k for k in main.rooms[top].state if k[0] == "m.room.member"}
    res = {}

    def poll():
        t0 = time.time()
        res["out"] = main.sync({"lists": lists}, timeout_ms=10000)
        res["ms"] = (time.time() - t0) * 1000

    th = threading.Thread(target=poll)
    th.start()
    time.sleep(0.5)
    e1 = send(top, B, "v4 live from bob")["event_id"]
    e2 = send(top, C, "v4 live from carol")["event_id"]
    th.join(20)
    out = res.get("out", {})
    r = out.get("rooms", {}).get(top, {})
    check(res.get("ms", 99999) < 10000, "a long poll (timeout in the body) answered before its timeout",
          res.get("ms"))
    if [e["event_id"] for e in r.get("timeline", [])] != [e1, e2]:
        # the two sends may have split across two responses
        out = main.sync({"lists": lists}, timeout_ms=2000)
        r2 = out.get("rooms", {}).get(top, {})
        r = dict(r, timeline=r.get("timeline", []) + r2.get("timeline", []),
                 required_state=r.get("required_state", []) + r2.get("required_state", []))
    check([e["event_id"] for e in r.get("timeline", [])] == [e1, e2], "only the new events, in order", r)
    check(not r.get("initial"), "an incremental room update is not initial", r)
    got = {(e["type"], e["state_key"]) for e in r.get("required_state", [])}
    want = {("m.room.member", s) for s in (B, C)} - sent_members
    check(got == want, "lazy_members: only members not sent before on this connection", (got, want, sent_members))

    # range: activity moves an out-of-range room into [0,1]
    old = [x for x in bump_order() if x != inv][-1]
    send(old, B, "v4 bumped into range")
    out = main.sync({"lists": lists}, timeout_ms=5000)
    if old not in out.get("rooms", {}):
        out = main.sync({"lists": lists}, timeout_ms=5000)
    r = out.get("rooms", {}).get(old, {})
    check(r.get("initial") is True and r.get("lists") == ["top"], "a room moved into range comes initial, in its list",
          r)
    check(len(r.get("timeline", [])) == 2, "and with timeline_limit events", r.get("timeline"))

    # expanded_timeline: a subscription raising timeline_limit for a room
    # already sent with 2 events
    before = list(main.rooms[old].timeline)
    out = main.sync({"lists": lists, "room_subscriptions": {old: {"timeline_limit": 6,
                                                                  "required_state": {"include": []}}}},
                    timeout_ms=5000)
    r = out.get("rooms", {}).get(old, {})
    want = [e["event_id"] for e in sim_events(old)][-6:]
    check(r.get("expanded_timeline") is True, "raising timeline_limit sets expanded_timeline", r)
    check([e["event_id"] for e in r.get("timeline", [])] == want, "with the latest 6 events, oldest first",
          ([e["event_id"] for e in r.get("timeline", [])], want))
    check(main.rooms[old].timeline[-len(before):] == before, "the expanded timeline ends with what the client had",
          main.rooms[old].timeline)

    # StateStub: see state_stub() for why removal itself cannot be shown
    try:
        state_stub(main, lists, top, B)
    except RuntimeError as e:
        check(False, "StateStub rule", e)

    print("v4 driver: %d failed" % len(failures), flush=True)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
