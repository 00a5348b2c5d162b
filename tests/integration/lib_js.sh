# Helpers of the scenarios that drive a node script of tests/js
# (t_js_sdk.sh, t_js_sliding.sh), sourced after lib.sh.

# js_setup [chromium]: JS (tests/js) and node22 (its node), or the
# scenario skips (77) when node or the pinned packages are unavailable,
# or, with "chromium", when there is no /usr/bin/chromium. Never runs apt
# (tests/js/setup.sh does, when run by hand or by CI setup).
js_setup() {
	JS=$IT_ROOT/tests/js
	node22=$(SETUP_NO_APT=1 "$JS/setup.sh" 2>"$T/setup.err") || {
		log "SKIP: node/npm or tests/js packages unavailable: $(tail -1 "$T/setup.err")"
		exit 77
	}
	if [ "${1:-}" = chromium ] && [ ! -x /usr/bin/chromium ]; then
		log "SKIP: /usr/bin/chromium missing (apt-get install chromium)"
		exit 77
	fi
}

# js_run LOG SECS SCRIPT [VAR=value...]: runs SCRIPT in tests/js with
# those variables for at most SECS seconds, its stderr in $T/LOG; sets
# js_out to its RESULT line. The scenario fails if it fails or prints none.
js_run() {
	local log=$1 secs=$2 script=$3 out
	shift 3
	out=$(cd "$JS" && env "$@" timeout "$secs" "$node22" "$script" 2>"$T/$log") ||
	    fail "$script: $(tail -5 "$T/$log")"
	js_out=$(printf '%s\n' "$out" | sed -n 's/^RESULT //p')
	[ -n "$js_out" ] || fail "$script: no RESULT line: $(tail -5 "$T/$log")"
}
