#!/usr/bin/env bash
# The merged MSC4186 form (POST /_matrix/client/v4/sync) driven by a
# small client of our own, tests/js/v4_driver.py (stdlib Python: no
# client library speaks this form yet, and python3 is on every machine
# that runs the suite): conn_id, include/exclude/lazy_members
# required_state, range, expanded_timeline, stripped_state for an
# invite, pos and timeout in the body. StateStub: a proxy cannot see
# state removed upstream (/v3/sync never reports it), so the driver
# checks the other half, a changed entry comes as an Event, not a stub.
# The driver prints one line per check and exits non-zero if one failed.
source "$(dirname "$0")/lib.sh"

start_stack
python3 "$IT_ROOT/tests/js/v4_driver.py" >"$T/driver.log" 2>&1
rc=$?
cat "$T/driver.log" >&2
[ $rc = 0 ] || fail "v4 driver: $(grep -c '^FAIL' "$T/driver.log") checks failed"
it_pass
