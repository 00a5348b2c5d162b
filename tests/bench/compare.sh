#!/usr/bin/env bash
# tests/bench/compare.sh: two of run.sh's JSON files side by side, so that
# "before and after" is one command:
#
#     tests/bench/compare.sh before.json after.json
#
# One row per figure of either file (its "figures" object): figure,
# before, after, change (after / before - 1, in per cent; "-" where one
# side lacks it or before is 0), and the goal where an issue sets one.
# The machine lines (commit, load averages) come first: figures from a
# loaded machine are noisy. Whether lower is better depends on the figure
# (events/s: higher); the table says which way it moved, not whether
# that is good.
set -u
[ $# = 2 ] || { sed -n 2,13p "$0" >&2; exit 2; }
for f in "$1" "$2"; do
	jq -e '.figures | type == "object"' "$f" >/dev/null 2>&1 ||
	    { echo "compare.sh: $f is not a run.sh result" >&2; exit 1; }
done
jq -nr --slurpfile a "$1" --slurpfile b "$2" --arg fa "$1" --arg fb "$2" '
  def r(d): . * pow(10; d) | round / pow(10; d);
  def n: if . == null then "-" elif fabs >= 100 then (round | tostring)
         elif fabs >= 1 then (r(2) | tostring) else (r(3) | tostring) end;
  def m: "commit \(.commit // "?"), load \(.loadavg_start // "?") -> \(.loadavg_end // "?"), max 1-min \(.loadavg_1min_max // "?"), \(.run_secs // "?") s";
  $a[0] as $x | $b[0] as $y |
  "before: \($fa): \($x.machine | m)",
  "after:  \($fb): \($y.machine | m)",
  "",
  (["figure", "before", "after", "change", "goal"] | @tsv),
  (($x.figures | keys_unsorted) + ($y.figures | keys_unsorted) | reduce .[] as $k ([]; if index([$k]) then . else . + [$k] end) | .[]) as $k |
    $x.figures[$k] as $u | $y.figures[$k] as $v |
    [$k, ($u | n), ($v | n),
     (if $u == null or $v == null or $u == 0 then "-"
      else ($v / $u - 1) * 100 | r(1) | (if . == 0 then 0 else . end) | (if . > 0 then "+" else "" end) + tostring + "%" end),
     ($y.goals[$k] // $x.goals[$k] // "")] | @tsv' |
  awk -F'\t' 'NF < 2 { print; next } { printf "%-40s %12s %12s %9s  %s\n", $1, $2, $3, $4, $5 }'
