/*
 * live.c: this poller's identity in Postgres (issue #15): the session
 * advisory lock that lets one process at a time run under a poller id,
 * and the liveness row (syncv3_pollers, migration 005) the other pollers
 * watch. lease.c drives it from a timer every SYNCV3_TAKEOVER_MS / 4 and
 * acts on what live_renew says; this file only talks to Postgres through
 * lease_sql.c and keeps the clock.
 *
 * The invariant (docs/INTERNALS.md, "Poller identity and takeover"): the
 * others take our devices once our row has expired, takeover_ms after the
 * last renewal Postgres executed; we start no poll once three quarters of
 * takeover_ms have passed since we sent the last renewal that succeeded,
 * and lease.c ends every request in flight at that point. Sent is no later
 * than executed, so we stop before anyone may start.
 */
#include <stdlib.h>

#include "log.h"
#include "pg.h"
#include "pg_lit.h"
#include "poller.h"
#include "util.h"

/* How long we may go on polling after the last good renewal was sent. */
static long long
deadline_ms(const struct poller *p)
{
	return p->cfg.takeover_ms * 3 / 4;
}

/*
 * Takes the session lock on our id: 0 held (now or already), 1 held by
 * another live session (same id on two hosts, or the previous run not
 * gone yet), -1 error. Only a holder names itself in application_name,
 * which is what the others count as live pollers (LS_SHARE), so a
 * process waiting here does not shrink their fair share.
 */
int
live_lock(struct poller *p)
{
	const char *params[1] = {p->cfg.poller_id};
	PGresult *r;
	bool got;

	if (p->has_id_lock)
		return 0;
	if ((r = lease_q(p, LS_LIVE_LOCK, 1, params)) == NULL)
		return -1;
	got = PQgetvalue(r, 0, 0)[0] == 't';
	PQclear(r);
	if (!got)
		return 1;
	if (pg_exec(p->pg, "live",
	            "SET application_name = '" LEASE_APP_NAME "'") == -1)
		return -1;
	p->has_id_lock = true;
	return 0;
}

/*
 * Starts a new incarnation under our id, with the lock held: 0 begun, or
 * the milliseconds to wait first, or -1 on error. Another incarnation's
 * row still live means that process may be polling (it lost its session,
 * and with it the lock, but not yet its deadline): it stops before its
 * row expires, so we wait for that. Our own row (a recovery after a
 * lapse, our devices already dropped) is no reason to wait.
 */
long long
live_begin(struct poller *p)
{
	char ms[PG_I64_LEN];
	const char *params[2] = {p->cfg.poller_id, ms};
	long long left = 0, sent;
	PGresult *r;

	if ((r = lease_q(p, LS_LIVE_READ, 1, params)) == NULL)
		return -1;
	if (PQntuples(r) == 1 && atoll(PQgetvalue(r, 0, 0)) != p->incarnation)
		left = atoll(PQgetvalue(r, 0, 1));
	PQclear(r);
	if (left > 0)
		return left;
	pg_i64(ms, p->cfg.takeover_ms);
	sent = now_ms();
	if ((r = lease_q(p, LS_LIVE_BEGIN, 2, params)) == NULL)
		return -1;
	p->incarnation = atoll(PQgetvalue(r, 0, 0));
	p->live_ok_ms = sent;
	PQclear(r);
	log_info("live: poller %s, incarnation %lld", p->cfg.poller_id,
	         p->incarnation);
	return 0;
}

/*
 * Renews our row. The send time, not the answer's, is what counts
 * towards the deadline: Postgres executes the renewal after we send it,
 * so the row outlives the deadline by at least a quarter of takeover_ms.
 * A renewal sent past the deadline is still sent, and Postgres decides:
 * the row never expired (its old expiry is not yet past) means no claim
 * could take our devices, so they stay ours. Deciding that here, without
 * asking, lapsed a poller whose previous renewal merely took long to
 * answer on a loaded machine, and with it a large initial sync waiting
 * for its ack, fetched again from scratch.
 */
enum live_renewal
live_renew(struct poller *p)
{
	char inc[PG_I64_LEN], ms[PG_I64_LEN];
	const char *params[3] = {p->cfg.poller_id, inc, ms};
	long long sent = now_ms();
	enum live_renewal v;
	PGresult *r;

	pg_i64(inc, p->incarnation);
	pg_i64(ms, p->cfg.takeover_ms);
	if ((r = lease_q(p, LS_LIVE_RENEW, 3, params)) == NULL)
		return LIVE_FAILED;
	if (PQntuples(r) != 1 || PQgetvalue(r, 0, 0)[0] != 't') {
		log_warnx("live: poller %s: %s", p->cfg.poller_id,
		          PQntuples(r) != 1
		              ? "another process began under this id"
		              : "liveness expired before it was renewed");
		v = LIVE_LOST;
	} else {
		p->live_ok_ms = sent;
		v = PQgetvalue(r, 0, 1)[0] == 't' ? LIVE_PEER_DEAD : LIVE_OK;
	}
	PQclear(r);
	return v;
}

bool
live_may_poll(struct poller *p)
{
	return !p->is_lapsed && now_ms() - p->live_ok_ms <= deadline_ms(p);
}

/* Clean exit: the row goes, so a restart under our id need not wait. */
void
live_end(struct poller *p)
{
	char inc[PG_I64_LEN];
	const char *params[2] = {p->cfg.poller_id, inc};

	pg_i64(inc, p->incarnation);
	PQclear(lease_q(p, LS_LIVE_END, 2, params));
}
