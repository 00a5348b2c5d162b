#!/usr/bin/env bash
# it: serial
# The docker files, as far as a machine without a Docker engine can check
# them: the compose file through `docker compose config` (or docker-compose)
# with and without the metrics profile, the Prometheus config through
# promtool (each skipped with a message when the tool is missing); the
# Dockerfile through the chroot interpreter's plan (tests/docker-chroot.sh
# --plan: only the instructions it can run); the runtime image's package
# derivation; and the image's entrypoint itself, as PID 1 of a new PID
# namespace as in a container, over the repository's runit service
# directories: a SIGKILLed accumulator is restarted by runsv, a TERM to
# PID 1 (docker stop) stops the daemon cleanly with every log line both in
# svlogd's directory and on standard error (docker logs), and a poller
# gets the hostname as its SYNCV3_POLLER_ID. The image's own build, in a
# clean Debian root, is tests/docker-chroot.sh (root, network, minutes).
. "$(dirname "$0")/lib.sh"

D=$IT_ROOT/deploy
EP=$D/docker/entrypoint
[ -x "$EP" ] || fail "no entrypoint $EP"

# --- compose ------------------------------------------------------------------
compose=()
if docker compose version >/dev/null 2>&1; then
	compose=(docker compose)
elif command -v docker-compose >/dev/null 2>&1; then
	compose=(docker-compose)
fi
# compose_json [ARGS...]: the resolved compose file as JSON.
compose_json() {
	if [ "${compose[*]}" = "docker compose" ]; then
		"${compose[@]}" -f "$D/docker-compose.yml" "$@" config --format json
	else
		"${compose[@]}" -f "$D/docker-compose.yml" "$@" config |
		    python3 -c 'import json, sys, yaml; json.dump(yaml.safe_load(sys.stdin), sys.stdout)'
	fi
}
if [ ${#compose[@]} = 0 ]; then
	log "skip: neither the docker compose plugin nor docker-compose; compose file not checked"
else
	plain=$(compose_json) || fail "${compose[*]} config rejects the compose file"
	metrics=$(compose_json --profile metrics) ||
	    fail "${compose[*]} config --profile metrics rejects the compose file"
	standby=$(compose_json --profile standby) ||
	    fail "${compose[*]} config --profile standby rejects the compose file"
	# Only prometheus (metrics) and the standby accumulator (standby) are
	# in a profile (docker compose leaves them out of the plain config,
	# docker-compose 1 shows them with their profiles).
	for j in "$plain" "$metrics" "$standby"; do
		got=$(printf '%s' "$j" | jq -c '[.services | to_entries[] |
		    select(.value.profiles != null) | {(.key): .value.profiles}] |
		    map(select(. != {"prometheus":["metrics"]} and
		        . != {"accumulator-2":["standby"]}))')
		[ "$got" = '[]' ] || fail "services in a profile: $got, expected prometheus in metrics and accumulator-2 in standby only"
	done
	assert_jq "$standby" '.services["accumulator-2"] | [.command, .environment.SYNCV3_INGEST]' \
	    '[["accumulator"],"tcp://*:7701"]' "the standby accumulator binds its own endpoint"
	assert_jq "$metrics" '.services.prometheus.profiles' '["metrics"]' \
	    "the prometheus service with --profile metrics"
	# Its config is the file in the tree.
	src=$(printf '%s' "$metrics" | jq -r '.services.prometheus.volumes[] |
	    if type == "string" then split(":")[0] else .source end' | head -1)
	[ "$(readlink -f "$src")" = "$(readlink -f "$D/prometheus/prometheus.yml")" ] ||
	    fail "prometheus mounts $src, not deploy/prometheus/prometheus.yml"
	# Every syncv3 service is the one image, its command one of the
	# entrypoint's services, its logs on the shared volume.
	for s in $(printf '%s' "$plain" | jq -r '.services | to_entries[] |
	    select(.value.build != null) | .key'); do
		cmd=$(printf '%s' "$plain" | jq -r --arg s "$s" '.services[$s].command | join(" ")')
		case $cmd in accumulator | poller | api | simhs) ;;
		*) fail "service $s: command [$cmd] is not one of the entrypoint's services" ;;
		esac
		printf '%s' "$plain" | jq -e --arg s "$s" '.services[$s].volumes[] |
		    if type == "string" then . else "\(.source):\(.target)" end |
		    select(startswith("syncv3-logs:/var/log/syncv3"))' >/dev/null ||
		    fail "service $s does not keep its logs on the syncv3-logs volume"
	done
	# --scale poller=N: nothing in the poller service may be per-container.
	printf '%s' "$plain" | jq -e '.services.poller |
	    (.container_name == null) and (.hostname == null) and
	    ((.ports // []) | length == 0) and
	    ((.environment // {}) | has("SYNCV3_POLLER_ID") | not)' >/dev/null ||
	    fail "the poller service has a per-container setting; --scale would break"
	log "compose: ${compose[*]} config ok, with and without --profile metrics"
fi
if command -v promtool >/dev/null 2>&1; then
	promtool check config "$D/prometheus/prometheus.yml" >"$T/promtool.log" 2>&1 ||
	    fail "promtool rejects deploy/prometheus/prometheus.yml: $(cat "$T/promtool.log")"
	log "prometheus.yml: promtool ok"
else
	log "skip: no promtool (Debian package prometheus); prometheus.yml not checked"
fi
# Each scraped job is a compose service, found through docker's DNS.
for n in $(awk '/- names: \[/ { gsub(/.*\[|\].*/, ""); print }' "$D/prometheus/prometheus.yml"); do
	grep -q "^  $n:$" "$D/docker-compose.yml" ||
	    fail "prometheus.yml scrapes $n, which is no compose service"
done

# --- the Dockerfile -------------------------------------------------------------
"$IT_ROOT/tests/docker-chroot.sh" --plan >"$T/plan.log" 2>&1 ||
    fail "the Dockerfile uses what tests/docker-chroot.sh cannot run: $(tail -3 "$T/plan.log")"
grep -q 'packages.txt' "$T/plan.log" || fail "the build stage does not use deploy/packages.txt"
# The packages the runtime stage names itself are in the one list.
pkgs=$(sed 's/#.*//' "$D/packages.txt")
# (The line of the runtime stage's apt-get install that starts with runit.)
named=$(sed -n '/^[[:space:]]*runit /{s/\$(.*//; p}' "$D/Dockerfile")
[ -n "$named" ] || fail "no runit in the runtime stage's packages"
for p in $named; do
	printf '%s\n' $pkgs | grep -qx -- "$p" || fail "the runtime stage installs $p, not in deploy/packages.txt"
done

# --- runtime-packages -------------------------------------------------------------
bins=("$BIN"/syncv3-accumulator "$BIN"/syncv3-poller "$BIN"/syncv3-api "$BIN"/syncv3-simhs)
rp=$("$D/docker/runtime-packages" "${bins[@]}") || fail "runtime-packages failed"
[ -n "$rp" ] || fail "runtime-packages found no package"
for p in $rp; do
	dpkg-query -W -f='${Status}\n' "$p" 2>/dev/null | grep -q 'install ok installed' ||
	    fail "runtime-packages names $p, which is not an installed package"
done
# Every library the accumulator loads is in one of them.
for p in $rp; do dpkg-query -L "$p"; done >"$T/rp-files"
for l in $(ldd "$BIN/syncv3-accumulator" | awk '$2 == "=>" { print $3 }'); do
	grep -qxF -e "$l" -e "$(readlink -f "$l")" -e "/usr$l" -e "${l#/usr}" "$T/rp-files" ||
	    fail "$l (loaded by the accumulator) is in none of: $(echo $rp)"
done
"$D/docker/runtime-packages" "$D/docker/entrypoint" >/dev/null 2>&1 &&
    fail "runtime-packages accepts a script as a binary"

# --- the entrypoint as PID 1 ------------------------------------------------------
if ! unshare --pid --fork --mount-proc true 2>/dev/null; then
	log "skip: cannot make a PID namespace here (unshare needs root); entrypoint not run"
	it_pass
	exit 0
fi
it_setup
mkdir -p "$T/env" "$T/run" "$T/logs"
export SYNCV3_SV=$D/runit SYNCV3_RUN=$T/run SYNCV3_LOGDIR=$T/logs
export SYNCV3_BIN=$BIN SYNCV3_ENVDIR=$T/env
host=$(uname -n)

"$D/docker/healthcheck" >/dev/null 2>&1 && fail "healthcheck passes with no service started"

# ep NAME SERVICE: the entrypoint as PID 1 of a new PID namespace (killed
# with it if the test dies); its standard error, docker logs, in NAME.log.
ep() {
	start_proc "$1" unshare --pid --fork --mount-proc --kill-child "$EP" "$2"
}
# kids PID [PATTERN]: its children (matching PATTERN).
kids() { pgrep -P "$1" ${2:+-f "$2"}; }
ep_pid() { kids "${IT_PIDS[$1]}"; }

ep acc accumulator
wait_for "[ -n \"\$(ep_pid acc)\" ]" 10 || fail "the entrypoint did not start"
pid1=$(ep_pid acc)
[ "$(awk '/^NSpid:/ { print $NF }' "/proc/$pid1/status")" = 1 ] ||
    fail "the entrypoint is not PID 1 of its namespace"
wait_for "[ \"\$(psql_q 'SELECT count(*) FROM syncv3_schema_migrations' 2>/dev/null)\" -ge 1 ]" 20 ||
    fail "the accumulator under the entrypoint did not migrate the schema"
rsv=$(kids "$pid1" runsv)
[ -n "$rsv" ] || fail "no runsv under the entrypoint"
acc_pid() { kids "$rsv" "$BIN/syncv3-accumulator"; }
old=$(acc_pid)
[ -n "$old" ] || fail "no accumulator under runsv"
wait_for "'$D/docker/healthcheck'" 10 || fail "healthcheck fails on a running accumulator"

kill -KILL "$old"
wait_for "p=\$(acc_pid); [ -n \"\$p\" ] && [ \"\$p\" != $old ]" 20 ||
    fail "runsv did not restart the SIGKILLed accumulator"
log "accumulator: pid $old killed, restarted by runsv as $(acc_pid)"
wait_for "grep -q 'ingest' '$T/logs/accumulator/$host/current'" 10 ||
    fail "the restarted accumulator logs nothing"

# docker stop: TERM to PID 1.
t0=$(date +%s%N)
kill -TERM "$pid1"
wait "${IT_PIDS[acc]}"
rc=$?
unset "IT_PIDS[acc]"
ms=$((($(date +%s%N) - t0) / 1000000))
assert_eq "$rc" 0 "exit status of the container after TERM"
log "TERM to PID 1: stopped in $ms ms"
cur=$T/logs/accumulator/$host/current
tail -1 "$cur" | grep -q 'exiting' ||
    fail "the accumulator did not finish a clean shutdown: $(tail -3 "$cur")"
[ "$(grep -c 'exiting' "$cur")" = 1 ] || fail "SIGKILLed run logged a clean exit"
kill -0 "$old" 2>/dev/null && fail "the killed accumulator is still there"
[ -z "$(kids "$rsv")" ] || fail "processes left after the stop"
# Every line svlogd kept is in docker logs too.
missing=$(grep -Fvxf "$T/acc.log" "$cur" | head -3)
[ -z "$missing" ] || fail "lines kept by svlogd but not on standard error: $missing"
[ "$(wc -l <"$cur")" -ge 3 ] || fail "svlogd kept almost nothing: $(cat "$cur")"

# A poller: its lease owner name is the hostname.
start_simhs
start_accumulator
ep pol poller
wait_for "grep -q 'polling' '$T/logs/poller/$host/current'" 20 || fail "the poller did not start"
grep -q "poller $host: polling" "$T/logs/poller/$host/current" ||
    fail "the poller's id is not the hostname: $(grep polling "$T/logs/poller/$host/current")"
pid1=$(ep_pid pol)
kill -TERM "$pid1"
wait "${IT_PIDS[pol]}" || fail "the poller's container did not exit 0 on TERM"
unset "IT_PIDS[pol]"
tail -1 "$T/logs/poller/$host/current" | grep -q 'stopped' ||
    fail "the poller did not stop cleanly: $(tail -3 "$T/logs/poller/$host/current")"
it_pass
