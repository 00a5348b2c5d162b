/*
 * lease_sql.c: every statement lease.c runs, in one table so a unit test
 * (tests/unit/test_poller_lease.c) can prepare each one and run them
 * against accumulator-style batches.
 *
 * Lock order (docs/INTERNALS.md, "Row locks"): leases live in
 * syncv3_leases, which the accumulator never touches, so renewing,
 * claiming and releasing them never waits on an accumulator batch. Every
 * statement here that locks several lease rows locks them in (user_id,
 * device_id) order, so two pollers cannot deadlock on them either. The
 * only device rows written here are poll states: the flush takes them
 * with SKIP LOCKED (it never waits; a skipped device is written on the
 * next flush) and the stop of one device locks that one row last.
 * Liveness rows (syncv3_pollers) are locked only by their own poller, one
 * row, while holding nothing else; the claim only reads them.
 */
#include <stdio.h>

#include "pg.h"
#include "poller.h"

/*
 * The live pollers and the active devices ($1 idle secs), as columns
 * live and active: shared by the share alone and by the claim, which
 * computes the share itself (one statement a claim round, issue #13).
 * Live: a liveness row not expired (a frozen poller keeps its
 * connection, but not its row), or, for pollers older than migration
 * 005 (a rolling upgrade), a session named LEASE_APP_NAME holding no
 * advisory lock: ours all hold their id lock.
 */
#define LEASE_COUNTS(idle)                                                     \
	"SELECT (SELECT count(*) FROM syncv3_pollers"                          \
	" WHERE expires >= now()) + (SELECT count(*)"                          \
	" FROM pg_stat_activity a WHERE datname = current_database()"          \
	" AND application_name = '" LEASE_APP_NAME "'"                         \
	" AND NOT EXISTS (SELECT 1 FROM pg_locks k"                            \
	" WHERE k.pid = a.pid AND k.locktype = 'advisory')) AS live,"          \
	" (SELECT count(*) FROM syncv3_devices"                                \
	" WHERE poll_state <> 'expired'"                                       \
	" AND last_seen > now() - make_interval(secs => " idle "::bigint))"    \
	" AS active"

const struct lease_stmt lease_stmts[LS_COUNT] = {
    /* $1 idle secs -> live pollers, active devices (LEASE_COUNTS) */
    [LS_SHARE] = {"lease share", LEASE_COUNTS("$1")},
    /*
     * $1 owner, $2 batch, $3 idle secs, $4 lease secs, $5 devices we
     * hold, $6 SYNCV3_MAX_DEVICES (0: no cap). Our fair share s
     * is policy_share's (poller/policy.c) of LEASE_COUNTS, computed
     * here so that a claim round is one statement, not two (issue #13:
     * the claim was a new device's largest hop); we take up to
     * min(s - $5, $2). Devices without
     * a live lease, most recently used first: no lease, an expired one,
     * or one whose owner's liveness row has expired (a dead poller,
     * taken over within SYNCV3_TAKEOVER_MS; an owner without a row is
     * waited out to its lease). The lease rows are written in key
     * order, and one another poller took meanwhile (live again once we
     * get its row) is left alone. Device rows are only read. Also, per
     * device (docs/DESIGN.md, "Sibling devices"): whether another device
     * of the user is synced and being polled now (a live lease of a live
     * poller, state polling), the highest cover_pos another device of
     * the user waits on (our first request starts after this read, so
     * it may carry it), whether the device itself still waits, and s.
     */
    [LS_CLAIM] =
        {"lease claim",
         "WITH s AS (SELECT CASE WHEN $6::bigint > 0"
         " THEN least(q.n, $6::bigint) ELSE q.n END AS share"
         " FROM (SELECT (k.active + greatest(k.live, 1) - 1)"
         " / greatest(k.live, 1) AS n FROM (" LEASE_COUNTS(
             "$3") ") k) q),"
                   " c AS (SELECT d.user_id, d.device_id, d.token_enc,"
                   " d.since, left(d.token_hash, 16) AS fp,"
                   " EXISTS (SELECT 1 FROM syncv3_devices s"
                   " JOIN syncv3_leases sl ON sl.user_id = s.user_id"
                   " AND sl.device_id = s.device_id"
                   " JOIN syncv3_pollers sp ON sp.id = sl.owner"
                   " WHERE s.user_id = d.user_id AND s.device_id <> d.device_id"
                   " AND s.is_initial_done AND s.cover_pos IS NULL"
                   " AND s.since <> '' AND s.poll_state = 'polling'"
                   " AND sl.expires > now() AND sp.expires > now()) AS sib,"
                   " (SELECT coalesce(max(s.cover_pos), 0) FROM syncv3_devices "
                   "s"
                   " WHERE s.user_id = d.user_id AND s.device_id <> "
                   "d.device_id)"
                   " AS cover, d.cover_pos IS NOT NULL AS waits"
                   " FROM syncv3_devices d LEFT JOIN syncv3_leases l"
                   " ON l.user_id = d.user_id AND l.device_id = d.device_id"
                   " WHERE d.poll_state <> 'expired'"
                   " AND (l.expires IS NULL OR l.expires < now()"
                   " OR EXISTS (SELECT 1 FROM syncv3_pollers p"
                   " WHERE p.id = l.owner AND p.expires < now()))"
                   " AND d.last_seen > now() - make_interval(secs => "
                   "$3::bigint)"
                   " ORDER BY d.last_seen DESC LIMIT (SELECT"
                   " greatest(least(share - $5::bigint, $2::bigint), 0)"
                   " FROM s)),"
                   " w AS (INSERT INTO syncv3_leases AS x"
                   " (user_id, device_id, owner, expires)"
                   " SELECT user_id, device_id, $1::text,"
                   " now() + make_interval(secs => $4::bigint) FROM c"
                   " ORDER BY user_id, device_id"
                   " ON CONFLICT (user_id, device_id) DO UPDATE"
                   " SET owner = excluded.owner, expires = excluded.expires"
                   " WHERE x.expires < now() OR EXISTS (SELECT 1"
                   " FROM syncv3_pollers p WHERE p.id = x.owner"
                   " AND p.expires < now())"
                   " RETURNING x.user_id, x.device_id)"
                   " SELECT c.user_id, c.device_id, c.token_enc, c.since, c.fp,"
                   " c.sib, c.cover, c.waits, (SELECT share FROM s)"
                   " FROM c JOIN w ON w.user_id = c.user_id"
                   " AND w.device_id = c.device_id"},
    /*
     * $1 owner, $2 lease secs, $3 idle secs. Renews every lease of
     * ours, locked in key order; returns each with its device's token
     * fingerprint, poll state and whether it is still in use (device
     * rows read, not locked).
     */
    [LS_HEARTBEAT] =
        {"lease heartbeat",
         "UPDATE syncv3_leases l SET"
         " expires = now() + make_interval(secs => $2::bigint)"
         " FROM (SELECT user_id, device_id FROM syncv3_leases"
         " WHERE owner = $1 ORDER BY user_id, device_id"
         " FOR UPDATE) k, syncv3_devices d"
         " WHERE l.user_id = k.user_id AND l.device_id = k.device_id"
         " AND l.owner = $1"
         " AND d.user_id = l.user_id AND d.device_id = l.device_id"
         " RETURNING l.user_id, l.device_id, left(d.token_hash, 16),"
         " d.poll_state,"
         " d.last_seen > now() - make_interval(secs => $3::bigint)"},
    /* $1 owner, $2 user, $3 device */
    [LS_RELEASE] = {"lease release",
                    "DELETE FROM syncv3_leases WHERE owner = $1"
                    " AND user_id = $2 AND device_id = $3"},
    /* $1 owner: every lease of ours, in key order */
    [LS_RELEASE_ALL] = {"lease release all",
                        "DELETE FROM syncv3_leases l USING (SELECT user_id,"
                        " device_id FROM syncv3_leases WHERE owner = $1"
                        " ORDER BY user_id, device_id FOR UPDATE) k"
                        " WHERE l.user_id = k.user_id"
                        " AND l.device_id = k.device_id"},
    /*
     * $1 owner, $2-$6 arrays of user, device, state, error, token
     * fingerprint. Writes the poll states of devices we hold whose
     * token is still the one we poll with, taking their rows with SKIP
     * LOCKED in key order; returns the ones it skipped (locked by
     * someone else just now), which stay to be written next time.
     */
    [LS_FLUSH] = {"lease flush",
                  "WITH v AS (SELECT * FROM unnest($2::text[], $3::text[],"
                  " $4::text[], $5::text[], $6::text[]) AS v(u, dv, s, e, fp)),"
                  " m AS (SELECT v.u, v.dv, v.s, v.e FROM v"
                  " JOIN syncv3_leases l ON l.user_id = v.u"
                  " AND l.device_id = v.dv AND l.owner = $1"
                  " JOIN syncv3_devices d ON d.user_id = v.u"
                  " AND d.device_id = v.dv AND left(d.token_hash, 16) = v.fp),"
                  " k AS (SELECT d.user_id, d.device_id, m.s, m.e"
                  " FROM syncv3_devices d JOIN m ON d.user_id = m.u"
                  " AND d.device_id = m.dv ORDER BY d.user_id, d.device_id"
                  " FOR UPDATE OF d SKIP LOCKED),"
                  " w AS (UPDATE syncv3_devices d SET poll_state = k.s,"
                  " poll_error = k.e, poll_updated = now() FROM k"
                  " WHERE d.user_id = k.user_id AND d.device_id = k.device_id"
                  " RETURNING d.user_id, d.device_id)"
                  " SELECT m.u, m.dv FROM m WHERE NOT EXISTS (SELECT 1 FROM w"
                  " WHERE w.user_id = m.u AND w.device_id = m.dv)"},
    /*
     * $1 user, $2 device, $3 state, $4 error, $5 owner, $6 token
     * fingerprint: a final state (expired, idle) and the lease given
     * back, if the device is still ours with that token. One lease row,
     * then one device row.
     */
    [LS_STOP] =
        {"lease stop",
         "WITH r AS (DELETE FROM syncv3_leases l WHERE l.user_id = $1"
         " AND l.device_id = $2 AND l.owner = $5 AND EXISTS (SELECT 1"
         " FROM syncv3_devices d WHERE d.user_id = $1"
         " AND d.device_id = $2 AND left(d.token_hash, 16) = $6)"
         " RETURNING l.user_id, l.device_id)"
         " UPDATE syncv3_devices d SET poll_state = $3, poll_error = $4,"
         " poll_updated = now() FROM r WHERE d.user_id = r.user_id"
         " AND d.device_id = r.device_id"
         " AND left(d.token_hash, 16) = $6"},
    /* $1 user, $2 device, $3 owner: the token of a device we hold */
    [LS_TOKEN] = {"lease token",
                  "SELECT d.token_enc, d.since, left(d.token_hash, 16)"
                  " FROM syncv3_devices d JOIN syncv3_leases l"
                  " ON l.user_id = d.user_id AND l.device_id = d.device_id"
                  " WHERE d.user_id = $1 AND d.device_id = $2"
                  " AND l.owner = $3"},
    /*
     * Liveness (live.c, docs/INTERNALS.md "Poller identity and
     * takeover"). $1 owner: a session advisory lock on the id, so at
     * most one process runs under it; the key is a 64-bit hash of the
     * id (a collision only makes two ids wait for each other).
     */
    [LS_LIVE_LOCK] = {"live lock",
                      "SELECT pg_try_advisory_lock(hashtextextended("
                      "'syncv3-poller ' || $1::text, 0))"},
    /* $1 owner -> incarnation, ms until its row expires (<= 0: expired) */
    [LS_LIVE_READ] = {"live read", "SELECT incarnation, ceil(extract(epoch FROM"
                                   " expires - now()) * 1000)::bigint"
                                   " FROM syncv3_pollers WHERE id = $1"},
    /* $1 owner, $2 takeover ms -> the new incarnation */
    [LS_LIVE_BEGIN] = {"live begin",
                       "INSERT INTO syncv3_pollers AS p (id, incarnation,"
                       " expires) VALUES ($1, 1, now() + $2::bigint"
                       " * interval '1 millisecond') ON CONFLICT (id)"
                       " DO UPDATE SET incarnation = p.incarnation + 1,"
                       " expires = excluded.expires, started = now()"
                       " RETURNING incarnation"},
    /*
     * $1 owner, $2 incarnation, $3 takeover ms. Renews our row; no row
     * back: another process began under our id. Returns whether the
     * row was still live when renewed (if not, others may have taken
     * our devices) and whether an expired poller still holds leases
     * (then claim at once).
     */
    [LS_LIVE_RENEW] = {"live renew",
                       "WITH o AS (SELECT expires FROM syncv3_pollers"
                       " WHERE id = $1 AND incarnation = $2::bigint"
                       " FOR UPDATE), u AS (UPDATE syncv3_pollers p"
                       " SET expires = now() + $3::bigint"
                       " * interval '1 millisecond' FROM o"
                       " WHERE p.id = $1 AND p.incarnation = $2::bigint"
                       " RETURNING o.expires >= now() AS live)"
                       " SELECT u.live, EXISTS (SELECT 1"
                       " FROM syncv3_pollers q JOIN syncv3_leases l"
                       " ON l.owner = q.id WHERE q.expires < now()"
                       " AND q.id <> $1) FROM u"},
    /* $1 owner, $2 incarnation: clean exit, nothing left to wait for */
    [LS_LIVE_END] = {"live end", "DELETE FROM syncv3_pollers"
                                 " WHERE id = $1 AND incarnation = $2::bigint"},
    /* $1 user, $2 device: the committed since */
    [LS_SINCE] = {"lease since", "SELECT since FROM syncv3_devices"
                                 " WHERE user_id = $1 AND device_id = $2"},
    [LS_SYNCED] = {"lease synced", "SELECT is_initial_done FROM syncv3_devices"
                                   " WHERE user_id = $1 AND device_id = $2"},
};

/*
 * Runs one statement of the table on the lease connection. A blocking
 * query reads whatever the server sent before its result, NOTIFYs
 * included (one that arrived during or just before it): libpq queues
 * them and the socket is left empty, so the LISTEN event (lease.c,
 * notify_cb) would not fire for them until something else arrived, and a
 * catch-up or a new device waited for the next notice, the claim timer or
 * the sibling's refill (issue #13: a new device answered after 1.3 s and
 * after 45 s). notify_cb runs on the next round to take them. Each
 * statement is prepared once per session: parsing and planning the claim
 * took 1.1 of its 1.5 ms on the loop, on a new device's path, and every
 * flush, heartbeat and renewal paid the same. All run outside a
 * transaction block (pg_query_prepared).
 */
PGresult *
lease_q(struct poller *p, enum lease_stmt_id id, int n,
        const char *const *params)
{
	char name[32];
	PGresult *r;

	snprintf(name, sizeof(name), "syncv3_lease_%d", (int)id);
	r = pg_query_prepared(p->pg, lease_stmts[id].name, name,
	                      lease_stmts[id].sql, n, params);

	if (p->pg_ev != NULL)
		event_active(p->pg_ev, EV_READ, 0);
	return r;
}
