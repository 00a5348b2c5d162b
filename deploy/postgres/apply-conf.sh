#!/bin/sh
# deploy/postgres/apply-conf.sh DATADIR: makes the cluster in DATADIR use
# deploy/postgres/syncv3.conf. Copies it beside postgresql.conf (so the
# cluster does not depend on the checkout staying where it is) and adds
# one include line to postgresql.conf if it is not there yet, so clusters
# made before this file existed get it too. Run as the cluster's owner or
# as root; takes effect at the next start (or pg_ctl reload for most
# settings; wal_buffers needs a restart).
set -eu
data=${1:?usage: apply-conf.sh DATADIR}
here=$(cd "$(dirname "$0")" && pwd)
[ -f "$data/postgresql.conf" ] || { echo "apply-conf.sh: no $data/postgresql.conf" >&2; exit 1; }
cp "$here/syncv3.conf" "$data/syncv3.conf"
grep -q "^include_if_exists 'syncv3.conf'" "$data/postgresql.conf" ||
    printf "\n# syncv3's settings (deploy/postgres/syncv3.conf)\ninclude_if_exists 'syncv3.conf'\n" \
    >>"$data/postgresql.conf"
owner=$(stat -c %U "$data")
[ "$(id -u)" = 0 ] && chown "$owner" "$data/syncv3.conf"
exit 0
