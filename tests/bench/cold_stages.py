#!/usr/bin/env python3
# tests/bench/cold_stages.py: where one cold login's first window went,
# from the daemons' debug lines (SYNCV3_LOG_LEVEL=debug) in the stack's
# temp dir, lined up with the bench's own request and answer times.
#
#   cold_stages.py DIR USER REQ_MS ANS_MS   (wall clock ms; one JSON line)
#
# Stages, each in ms from the one before (null when a line is missing):
#   claim      request in -> the poller claims the device (whoami, the
#              device row, NOTIFY) and sends its first sync
#   upstream   -> the first bytes of the answer (the homeserver's own
#              time: simhs here, Synapse in a deployment)
#   transfer   -> the last byte, scanned (poller/policy.c)
#   publish    -> the accumulator reads it (ZeroMQ, from the header's
#              sent_ms to the light pass's start)
#   light      the light pass (normalise_light) on the accumulator's loop
#   window     -> the window committed (choice, normalise_pick, commit)
#     of which choice, pick, store: store.c's own times for the choice
#              (qsort, one read of the rest's ids), normalise_pick, and
#              applying and committing the window's rooms
#   notice     -> the window's notices are out
#   answer     -> the bench has the api's complete answer
import datetime, json, re, sys

d, user, req, ans = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])


def ms(stamp):
    t = datetime.datetime.strptime(stamp, "%Y-%m-%dT%H:%M:%S.%fZ")
    return int(t.replace(tzinfo=datetime.timezone.utc).timestamp() * 1000)


def lines(name):
    try:
        with open("%s/%s.log" % (d, name), errors="replace") as f:
            for l in f:
                if user + "/" in l:
                    m = re.match(r"(\S+Z) ", l)
                    if m:
                        yield ms(m.group(1)), l
    except OSError:
        return


def first(name, pat, after):
    for t, l in lines(name):
        m = re.search(pat, l)
        if m and t >= after:
            return t, m
    return None, None


claim, _ = first("poller", r": claimed, since", req - 5)
fb, _ = first("poller", r": first bytes after", claim or req)
done, m200 = first("poller", r": http 200, (\d+) bytes", fb or req)
light_end, ml = first("accumulator",
                      r"light pass of \d+ rooms in (\d+) ms, (-?\d+) ms after",
                      done or req)
win, mw = first("accumulator", r": (\d+) rooms first", light_end or req)
_, mp = first("accumulator", r": window of \d+ rooms: choice (\d+) ms, "
              r"pick (\d+) ms, store (\d+) ms", light_end or req)
note, _ = first("accumulator", r"window notices out", win or req)
light_start = light_end - int(ml.group(1)) if ml else None


def span(a, b):
    return b - a if a is not None and b is not None else None


print(json.dumps({
    "user": user, "total": ans - req,
    "body_bytes": int(m200.group(1)) if m200 else None,
    "window_rooms": int(mw.group(1)) if mw else None,
    "claim": span(req, claim), "upstream": span(claim, fb),
    "transfer": span(fb, done), "publish": span(done, light_start),
    "light": int(ml.group(1)) if ml else None,
    "window": span(light_end, win),
    "choice": int(mp.group(1)) if mp else None,
    "pick": int(mp.group(2)) if mp else None,
    "store": int(mp.group(3)) if mp else None,
    "notice": span(win, note),
    "answer": span(note, ans)}))
