#!/usr/bin/env bash
# docker-chroot.sh: builds deploy/Dockerfile without a Docker engine, by
# running its steps in clean Debian roots, then runs the image's entrypoint
# for the accumulator as a container would: PID 1 of its own PID
# namespace, as the image's user, against a private PostgreSQL (on the
# host, its socket bind-mounted into the root). It checks that runit
# supervises the daemon (SIGKILLed, it is restarted), that the health check
# passes, and that a TERM to PID 1 (docker stop) stops it cleanly with its
# logs kept by svlogd and copied to standard error (docker logs). Prints
# each step's time.
#
#   sudo tests/docker-chroot.sh [--keep] [--refresh]
#   tests/docker-chroot.sh --plan      parse and check only (no root): the
#                                      steps it would run, one a line
#
#   --keep    leave the roots (and logs) behind, unmounted
#   --refresh rebuild the cached base root (see tests/fresh-machine.sh)
#
# A small interpreter for the subset of the Dockerfile language the file
# uses, failing on anything else: FROM debian:bookworm[-slim] [AS name]
# (both are the cached debootstrap minbase root: -slim's dropped docs make
# no difference to what runs), RUN in shell form, COPY [--from=stage] with
# plain paths (the build context is the checkout less .dockerignore), ENV
# KEY=VALUE, WORKDIR, USER, ENTRYPOINT/CMD in exec form, and EXPOSE,
# VOLUME, LABEL, STOPSIGNAL, HEALTHCHECK [--opts] CMD [exec form] as
# metadata. Needs root, network to the Debian mirror apt uses, and minutes
# (the build stage installs deploy/packages.txt and compiles); so it is
# not part of tests/run_all.sh (tests/integration/t_docker_files.sh runs
# --plan and the entrypoint on the host).
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
DF=$ROOT/deploy/Dockerfile
TAIL=${FRESH_TAIL:-15}
plan=0 keep=0 refresh=0
for a in "$@"; do
	case $a in
	--plan) plan=1 ;;
	--keep) keep=1 ;;
	--refresh) refresh=1 ;;
	*) sed -n '2,31p' "$0" | sed 's/^# \{0,1\}//'; exit 2 ;;
	esac
done
CHROOT_TAG=docker-chroot
DEFPATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin

# --- parsing -------------------------------------------------------------------
# Logical lines: continuations joined, comments and blank lines dropped
# (inside a continuation too, as docker does).
lines=()
cur=
while IFS= read -r l || [ -n "$l" ]; do
	[[ $l =~ ^[[:space:]]*# ]] && continue
	[ -z "${l//[[:space:]]/}" ] && continue
	if [[ $l =~ ^(.*)\\[[:space:]]*$ ]]; then
		cur+="${BASH_REMATCH[1]} "
		continue
	fi
	lines+=("$cur$l")
	cur=
done <"$DF"
[ -z "$cur" ] || { echo "docker-chroot: $DF ends inside a continuation" >&2; exit 1; }

bad() { echo "docker-chroot: $DF: $*" >&2; exit 1; }
# json_argv JSON: checks an exec-form array of strings.
json_argv() {
	printf '%s' "$1" | jq -e 'type == "array" and length > 0 and all(type == "string")' \
	    >/dev/null 2>&1 || bad "not an exec-form array: $1"
}
# plain WORD...: no variables, globs or quotes (the subset runs no
# expansion outside RUN).
plain() {
	local w
	for w in "$@"; do
		case $w in *[\$\*\?\[\'\"]*) bad "unsupported characters in '$w'" ;; esac
	done
}

# The steps, checked: "STAGE<TAB>KEYWORD<TAB>ARGS".
steps=()
nstage=-1
declare -A stage_by_name=()
for l in "${lines[@]}"; do
	kw=${l%%[[:space:]]*}
	kw=${kw^^}
	rest=${l#*[[:space:]]}
	rest=${rest#"${rest%%[![:space:]]*}"}
	case $kw in
	FROM)
		read -r img as name extra <<<"$rest"
		case $img in debian:bookworm | debian:bookworm-slim) ;;
		*) bad "FROM $img: only debian:bookworm[-slim] can be emulated" ;;
		esac
		[ -z "$extra" ] || bad "FROM $rest"
		nstage=$((nstage + 1))
		if [ -n "${as:-}" ]; then
			[ "${as^^}" = AS ] && [ -n "$name" ] || bad "FROM $rest"
			stage_by_name[$name]=$nstage
		fi
		;;
	RUN)
		case $rest in '['*) bad "RUN in exec form is not supported" ;; esac ;;
	COPY)
		# shellcheck disable=SC2086
		set -f; set -- $rest; set +f
		[ $# -ge 2 ] || bad "COPY $rest"
		case $1 in
		--from=*)
			[ -n "${stage_by_name[${1#--from=}]:-}" ] || bad "COPY $1: no earlier stage of that name" ;;
		--*) bad "COPY $1: only --from is supported" ;;
		esac
		plain "$@" ;;
	ENV)
		# shellcheck disable=SC2086
		set -f; set -- $rest; set +f
		for kv in "$@"; do
			[[ $kv =~ ^[A-Za-z_][A-Za-z0-9_]*=[^\$\'\"]*$ ]] || bad "ENV $kv: only KEY=VALUE, unquoted"
		done ;;
	WORKDIR) plain "$rest"; case $rest in /*) ;; *) bad "WORKDIR $rest: not absolute" ;; esac ;;
	USER) plain "$rest" ;;
	ENTRYPOINT | CMD) json_argv "$rest" ;;
	HEALTHCHECK)
		opts=${rest%%CMD *}
		for o in $opts; do
			case $o in --interval=* | --timeout=* | --start-period=* | --retries=*) ;;
			*) bad "HEALTHCHECK $o" ;;
			esac
		done
		[[ $rest == *"CMD "* ]] || bad "HEALTHCHECK without CMD"
		json_argv "${rest#*CMD }" ;;
	EXPOSE | VOLUME | LABEL | STOPSIGNAL) ;;
	*) bad "$kw is not in the subset this interpreter runs" ;;
	esac
	[ "$nstage" -ge 0 ] || bad "$kw before FROM"
	steps+=("$nstage"$'\t'"$kw"$'\t'"$rest")
done
[ "$nstage" -ge 0 ] || bad "no FROM"

# The build context: the checkout less .dockerignore's patterns (plain
# paths and globs, anchored at the top; no '!' exceptions, no '**').
excludes=()
if [ -f "$ROOT/.dockerignore" ]; then
	while IFS= read -r p || [ -n "$p" ]; do
		p=${p%%#*}
		p=${p//[[:space:]]/}
		[ -z "$p" ] && continue
		case $p in '!'* | *'**'*) bad ".dockerignore: '$p' is not supported" ;; esac
		p=${p#/}
		excludes+=("--exclude=./${p%/}")
	done <"$ROOT/.dockerignore"
fi

if [ "$plan" = 1 ]; then
	for s in "${steps[@]}"; do
		IFS=$'\t' read -r n kw rest <<<"$s"
		printf 'stage %s: %s %s\n' "$n" "$kw" "$rest"
	done
	echo "context excludes: ${excludes[*]}"
	exit 0
fi

# --- running ------------------------------------------------------------------------
. "$ROOT/tests/lib_chroot.sh"
# The private cluster's helpers (it_pg_start...); not its trap.
. "$ROOT/tests/integration/lib.sh"
trap - EXIT
start=$(date +%s)
chroot_base "$refresh"
chroot_workdir docker
pg_up=0
chroot_on_exit() {
	[ "$pg_up" = 1 ] && it_pg_stop "$T/pg"
	rm -rf "$T"
}

phase "build context: $ROOT less .dockerignore"
mkdir "$W/context"
tar -C "$ROOT" --anchored "${excludes[@]}" -cf - . | tar -C "$W/context" -xf -
say "   $(du -sh "$W/context" | cut -f1), $(find "$W/context" -type f | wc -l) files"
phase_end context

declare -a sroot=() suser=() scwd=()
declare -A senv=()
entry='' health=''

# stage_cmd N: sets CMD to the command prefix that runs a command in
# stage N's root, as its user, in its workdir, with its environment only.
stage_cmd() {
	local n=$1 r=${sroot[$1]} u=${suser[$1]} spec=0:0 uid gid e=()
	if [ "$u" != root ] && [ "$u" != 0 ]; then
		uid=$(awk -F: -v u="${u%%:*}" '$1 == u || $3 == u { print $3; exit }' "$r/etc/passwd")
		gid=$(awk -F: -v u="${u%%:*}" '$1 == u || $3 == u { print $4; exit }' "$r/etc/passwd")
		[ -n "$uid" ] || die "USER $u: no such user in the root"
		spec=$uid:$gid
	fi
	# shellcheck disable=SC2206
	e=(${senv[$n]:-})
	CMD=(chroot --userspec="$spec" --groups="${spec#*:}" "$r" /usr/bin/env -i
	    -C "${scwd[$n]}" PATH="$DEFPATH" HOSTNAME="$(uname -n)"
	    HOME="$(awk -F: -v s="${spec%%:*}" '$3 == s { print $6; exit }' "$r/etc/passwd")"
	    ${e[@]+"${e[@]}"} ${extra_env[@]+"${extra_env[@]}"})
}
in_stage() { stage_cmd "$1"; shift; "${CMD[@]}" "$@"; }
extra_env=()

# copy_in SRCROOT DESTROOT CWD SRC... DEST: docker's COPY: a directory's
# contents, a file by name; owned by root, modes kept.
copy_in() {
	local from=$1 to=$2 cwd=$3 dest s t
	shift 3
	dest=${!#}
	case $dest in /*) ;; *) dest=$cwd/$dest ;; esac
	local n=$(($# - 1)) i=0
	for s in "$@"; do
		i=$((i + 1))
		[ "$i" -le "$n" ] || break
		s=$from/${s#/}
		[ -e "$s" ] || die "COPY: $s does not exist"
		if [ -d "$s" ]; then
			mkdir -p "$to$dest"
			tar -C "$s" --owner=0 --group=0 --numeric-owner -cf - . |
			    tar -C "$to$dest" -xpf -
		else
			t=$to$dest
			if [ "$n" -gt 1 ] || [[ $dest == */ ]] || [ -d "$t" ]; then
				mkdir -p "$t"
				t=$t/$(basename "$s")
			else
				mkdir -p "$(dirname "$t")"
			fi
			cp --preserve=mode,timestamps "$s" "$t"
			chown 0:0 "$t"
		fi
	done
}

for s in "${steps[@]}"; do
	IFS=$'\t' read -r n kw rest <<<"$s"
	case $kw in
	FROM)
		phase "stage $n: FROM $rest (clean $SUITE $VARIANT root)"
		sroot[n]=$W/stage$n suser[n]=root scwd[n]=/
		chroot_root "${sroot[n]}"
		phase_end "FROM" ;;
	RUN)
		phase "stage $n: RUN $(printf '%s' "$rest" | tr -s ' \t' ' ' | cut -c1-110)"
		log=$W/stage$n-step$SECONDS.log
		rc=0
		in_stage "$n" /bin/sh -c "$rest" </dev/null >"$log" 2>&1 || rc=$?
		tail -n "$TAIL" "$log" | sed 's/^/   | /'
		[ "$rc" = 0 ] || die "RUN failed (exit $rc); log: $log"
		phase_end RUN ;;
	COPY)
		phase "stage $n: COPY $rest"
		from=$W/context
		set -f; set -- $rest; set +f
		case $1 in --from=*) from=${sroot[${stage_by_name[${1#--from=}]}]}; shift ;; esac
		copy_in "$from" "${sroot[n]}" "${scwd[n]}" "$@"
		phase_end COPY ;;
	ENV) senv[$n]="${senv[$n]:-} $rest" ;;
	WORKDIR) scwd[n]=$rest; mkdir -p "${sroot[n]}$rest" ;;
	USER) suser[n]=$rest ;;
	ENTRYPOINT) entry=$rest ;;
	HEALTHCHECK) health=${rest#*CMD } ;;
	*) say "== stage $n: $kw $rest (metadata)" ;;
	esac
done

# --- the image, run ----------------------------------------------------------------
RT=${sroot[nstage]}
[ -n "$entry" ] || die "the image has no ENTRYPOINT"
mapfile -t EP < <(printf '%s' "$entry" | jq -r '.[]')
host=$(uname -n)
cur=$RT/var/log/syncv3/accumulator/$host/current

phase "a private PostgreSQL for the accumulator, socket at /run/syncv3-pg in the root"
it_pg_start "$T/pg" || die "postgres did not start"
pg_up=1
"$(pg_bindir)/createdb" -h "$T/pg" -U postgres syncv3
mkdir -p "$RT/run/syncv3-pg"
mnt --bind "$T/pg" "$RT/run/syncv3-pg"
extra_env=(SYNCV3_DB="host=/run/syncv3-pg user=postgres dbname=syncv3"
    SYNCV3_INGEST=ipc:///run/syncv3/ingest.sock
    SYNCV3_NOTICES=ipc:///run/syncv3/notices.sock SYNCV3_LOG_LEVEL=debug)
migrated() {
	[ "$("$(pg_bindir)/psql" -h "$T/pg" -U postgres -d syncv3 -XAtqc \
	    'SELECT count(*) FROM syncv3_schema_migrations' 2>/dev/null)" -ge 1 ] 2>/dev/null
}
phase_end postgres

phase "ENTRYPOINT syncv3-accumulator -n, as $(printf '%s' "${suser[nstage]}")"
in_stage "$nstage" "${EP[@]}" syncv3-accumulator -n >"$W/n.log" 2>&1 ||
    { cat "$W/n.log"; die "syncv3-accumulator -n failed in the image"; }
grep '^SYNCV3_DB=' "$W/n.log" | sed 's/^/   | /'
phase_end "-n"

# until SECS CMD: polls CMD every 0.1 s for up to SECS seconds.
until_ok() {
	local i
	for ((i = 0; i < $1 * 10; i++)); do
		"${@:2}" >/dev/null 2>&1 && return 0
		sleep 0.1
	done
	return 1
}
kids() { pgrep -P "$1" ${2:+-f "$2"} || true; }

phase "ENTRYPOINT accumulator as PID 1 of a new PID namespace (docker run)"
t0=$(date +%s%N)
stage_cmd "$nstage"
unshare --pid --fork --mount-proc="$RT/proc" --kill-child \
    "${CMD[@]}" "${EP[@]}" accumulator </dev/null >"$W/docker-logs.txt" 2>&1 &
ns=$!
pid1=
until_ok 10 eval 'pid1=$(kids $ns); [ -n "$pid1" ] && [ -n "$(kids $pid1 runsv)" ]' ||
    die "the entrypoint did not start runsv"
until_ok 30 migrated || { tail "$W/docker-logs.txt"; die "the accumulator did not migrate the schema"; }
rsv=$(kids "$pid1" runsv)
acc=$(kids "$rsv" syncv3-accumulator)
say "   PID 1 $pid1 (host pid), runsv $rsv, accumulator $acc; schema migrated after $((($(date +%s%N) - t0) / 1000000)) ms"
phase_end start

phase "HEALTHCHECK ${health}"
mapfile -t HC < <(printf '%s' "$health" | jq -r '.[]')
until_ok 10 in_stage "$nstage" "${HC[@]}" || die "the health check fails"
in_stage "$nstage" "${HC[@]}" | sed 's/^/   | /'
phase_end healthcheck

phase "SIGKILL to the accumulator: runsv restarts it"
kill -KILL "$acc"
t0=$(date +%s%N)
until_ok 20 eval 'a=$(kids $rsv syncv3-accumulator); [ -n "$a" ] && [ "$a" != '"$acc"' ]' ||
    die "runsv did not restart the accumulator"
say "   restarted as $(kids "$rsv" syncv3-accumulator) after $((($(date +%s%N) - t0) / 1000000)) ms"
until_ok 20 in_stage "$nstage" "${HC[@]}" || die "unhealthy after the restart"
phase_end restart

phase "TERM to PID 1 (docker stop)"
t0=$(date +%s%N)
kill -TERM "$pid1"
rc=0
wait "$ns" || rc=$?
say "   exit $rc after $((($(date +%s%N) - t0) / 1000000)) ms"
[ "$rc" = 0 ] || die "the container exited $rc"
[ -z "$(inroot_pids "$RT")" ] || die "processes left in the root: $(inroot_pids "$RT")"
say "   last lines svlogd kept in /var/log/syncv3/accumulator/$host/current:"
tail -4 "$cur" | sed 's/^/   | /'
tail -1 "$cur" | grep -q 'exiting' || die "no clean shutdown in the log"
[ -z "$(grep -Fvxf "$W/docker-logs.txt" "$cur")" ] ||
    die "lines in svlogd's log missing from standard error (docker logs)"
say "   all $(wc -l <"$cur") lines also on standard error (docker logs)"
phase_end stop

say "image built and run: $(( $(date +%s) - start ))s in all"
