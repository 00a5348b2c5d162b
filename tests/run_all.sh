#!/usr/bin/env bash
# Runs every test against the build in $1 (default build-test): unit tests
# (with a scratch Postgres for the storage tests), the libFuzzer corpus
# replay plus a short fuzz run (and t_rss.sh on that build's daemons,
# which have no sanitizer), and the integration scenarios. Prints one
# summary line per group and "N passed, N failed" last.
set -u
ROOT=$(cd "$(dirname "$0")/.." && pwd)
BUILD=${1:-$ROOT/build-test}
FUZZ_SECS=${FUZZ_SECS:-10}
total_pass=0 total_fail=0

. "$ROOT/tests/integration/lib.sh"
trap - EXIT
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=0}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}

count() { total_pass=$((total_pass + $1)); total_fail=$((total_fail + $2)); }

echo "== unit tests"
it_pg_start "$T/pg" || exit 1
"$(pg_bindir)/createdb" -h "$IT_PGHOST" -U postgres unit
export SYNCV3_TEST_DB="host=$IT_PGHOST user=postgres dbname=unit"
ctest --test-dir "$BUILD" -L unit --output-on-failure 2>&1 | tee "$T/unit.log" | grep -E '^ *[0-9]+/[0-9]+ Test|tests passed|FAILED|Failed' 
u_total=$(grep -Eo 'out of [0-9]+' "$T/unit.log" | grep -Eo '[0-9]+' || echo 0)
u_fail=$(grep -Eo 'tests passed, [0-9]+ tests failed' "$T/unit.log" | grep -Eo '[0-9]+ tests failed' | grep -Eo '[0-9]+' || echo 1)
count $((u_total - u_fail)) "$u_fail"
unset SYNCV3_TEST_DB
it_pg_stop "$T/pg"

echo "== release build"
# -O3 inlines more than the default RelWithDebInfo, and gcc's
# -Wformat-overflow then sees through helpers (a NULL reaching a "%s"
# once): the daemons must build warning-free as packagers build them.
RB=$BUILD-release
if cmake -S "$ROOT" -B "$RB" -DCMAKE_BUILD_TYPE=Release -DWERROR=ON \
    -DBUILD_TESTS=OFF >/dev/null && cmake --build "$RB" -j "$(nproc)" >"$T/relbuild.log" 2>&1; then
	echo "ok   release build (gcc -O3 -Werror)"; count 1 0
else
	echo "FAIL release build"; grep -E -A6 'error|warning' "$T/relbuild.log" | head -40; count 0 1
fi

echo "== fuzz targets (corpus replay + ${FUZZ_SECS}s each)"
if command -v clang >/dev/null; then
	FB=$BUILD-fuzz
	if CC=clang cmake -S "$ROOT" -B "$FB" -DFUZZ=ON -DWERROR=ON \
	    -DBUILD_TESTS=OFF >/dev/null && cmake --build "$FB" -j "$(nproc)" >/dev/null 2>"$T/fuzzbuild.log"; then
		for f in "$FB"/bin/fuzz_*; do
			[ -x "$f" ] || continue
			name=$(basename "$f"); corpus=$ROOT/tests/fuzz/corpus/${name#fuzz_}
			dirs=("$T/fz_$name")
			mkdir -p "${dirs[0]}"
			[ -d "$corpus" ] && dirs+=("$corpus")
			# New inputs go to the scratch dir; the corpus stays as is.
			if "$f" -max_total_time="$FUZZ_SECS" -rss_limit_mb=2048 \
			    "${dirs[@]}" >"$T/$name.log" 2>&1; then
				echo "ok   $name"; count 1 0
			else
				echo "FAIL $name"; tail -30 "$T/$name.log"; count 0 1
			fi
		done
		# t_rss.sh measures glibc's allocator, so it skips on the ASan
		# build; the daemons and simhs of this build have no sanitizer
		# (only the fuzz targets do), so it runs here.
		if BIN=$FB/bin "$ROOT/tests/integration/run.sh" t_rss.sh >"$T/rss.log" 2>&1 &&
		    grep -q '^ok   t_rss.sh' "$T/rss.log"; then
			echo "ok   t_rss.sh (daemons without a sanitizer)"; count 1 0
		else
			echo "FAIL t_rss.sh (daemons without a sanitizer)"; tail -30 "$T/rss.log"; count 0 1
		fi
	else
		echo "FAIL fuzz build"; cat "$T/fuzzbuild.log" | tail -20; count 0 1
	fi
else
	echo "skip: clang not installed"
fi

echo "== integration tests"
# Scenarios registered with ctest (the simulated homeserver's own smoke test).
ctest --test-dir "$BUILD" -L integration --output-on-failure >"$T/ctest-it.log" 2>&1
c_total=$(grep -Eo 'out of [0-9]+' "$T/ctest-it.log" | grep -Eo '[0-9]+' || echo 0)
c_fail=$(grep -Eo 'tests passed, [0-9]+ tests failed' "$T/ctest-it.log" | grep -Eo '[0-9]+ tests failed' | grep -Eo '[0-9]+' || echo 0)
grep -E 'Test +#' "$T/ctest-it.log"
[ "$c_fail" = 0 ] || tail -40 "$T/ctest-it.log"
count $((c_total - c_fail)) "$c_fail"
# Leak reports from daemons killed on purpose are noise here; ASan still
# aborts on memory errors.
# two at a time (run.sh: the timing-sensitive ones alone, at the end)
ASAN_OPTIONS=detect_leaks=0 IT_JOBS=${IT_JOBS:-2} BIN=$BUILD/bin "$ROOT/tests/integration/run.sh" | tee "$T/it.log"
i_pass=$(grep -Eo 'integration: [0-9]+ passed' "$T/it.log" | grep -Eo '[0-9]+' || echo 0)
i_fail=$(grep -Eo 'integration: [0-9]+ passed, [0-9]+ failed' "$T/it.log" | grep -Eo '[0-9]+ failed' | grep -Eo '[0-9]+' || echo 1)
count "$i_pass" "$i_fail"
i_skip=$(grep -Eo '[0-9]+ skipped' "$T/it.log" | grep -Eo '[0-9]+' || echo 0)

rm -rf "$T"
echo "all: $total_pass passed, $total_fail failed, ${i_skip:-0} skipped"
[ "$total_fail" = 0 ]
