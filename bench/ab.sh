#!/usr/bin/env bash
# ab.sh - compare two builds of a benchmark on a noisy machine: alternated pairs, or instruction counts.
#
# The machines this project is measured on are shared: the same binary varies by 1.5-2x within minutes
# (docs/performance.md). A difference between two builds is only worth reporting when it holds against that noise, so
# this runs the two binaries (any benchmark of bench/ that prints a SUMMARY line) in alternated pairs, in ABBA order
# (old-new, new-old, ...: a drift of the machine during the run favours neither), with the same arguments, and reports
# for each figure asked for the median of each side, their ratio and in how many pairs the new one was higher: a
# change that is real wins (or loses) nearly every pair, noise splits them.
# --callgrind instead runs each binary once under valgrind's callgrind with branch simulation and reports the
# instructions and the mispredicted conditional branches it counts (callgrind's Ir and Bcm): the same on every run of
# an unchanged program, whatever else the machine does (but a model: callgrind's branch predictor is not the CPU's,
# and instructions are not time).
#
# Prints a table of the runs on stderr and one line on stdout:
#   SUMMARY bench=ab mode=pairs pairs=N args="..." old_args="..." new_args="..." <f>_old=M <f>_new=M <f>_ratio=R
#           <f>_new_higher=K ...
#   SUMMARY bench=ab mode=callgrind args="..." old_args="..." new_args="..." collect=... ir_old= ir_new= ir_ratio=
#           cond_mispredicts_old= cond_mispredicts_new= cond_mispredicts_ratio=
# Exit status: 0 when every run printed its SUMMARY, 2 on bad usage or a missing binary or tool, 3 when a run failed.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)

pairs=5
fields=lines_per_sec
cpu=
callgrind=0
collect=
quiet=0
old_args=()
new_args=()

usage() {
	cat <<'EOF'
usage: bench/ab.sh [options] OLD NEW [--] [benchmark arguments...]
Runs two builds of a benchmark (OLD and NEW: paths of its binary, e.g. /tmp/base/bin/bench_engine and
build/bin/bench_engine) with the same arguments, alternated, and compares the figures of their SUMMARY lines.
  --pairs N         alternated pairs, 1..50, in ABBA order (default 5)
  --fields A,B      SUMMARY fields to compare (default lines_per_sec); each gets the median of both sides, the
                    ratio new/old and the number of pairs in which the new build's figure was higher
  --cpu N           pin every run to CPU N (taskset)
  --old-arg A       one more argument for the OLD runs only (repeat for several); with --new-arg, two settings
  --new-arg A       of one binary compare (give the same binary as OLD and NEW)
  --callgrind       instead of timed pairs: one run of each under valgrind --tool=callgrind --branch-sim=yes,
                    comparing instructions and mispredicted conditional branches (give the benchmark a fixed
                    amount of work, e.g. bench_engine --lines N); --pairs and --fields do not apply
  --collect F,G     with --callgrind: count only inside these functions (--toggle-collect), e.g.
                    dts_core_ingest_burst,dts_merger_step; default: the whole program
  --quiet           no table on stderr
  --help
Example:
  bench/ab.sh --pairs 6 --cpu 1 /tmp/base/bin/bench_engine build/bin/bench_engine -- --names 10000 --seconds 3
EOF
}

# The value of option $1, which must have one ($2 is the rest of the command line).
need_value() {
	[ "$2" -ge 2 ] || { echo "ab.sh: $1 needs a value (see --help)" >&2; exit 2; }
}

pinned=0
while [ $# -gt 0 ]; do
	case $1 in
	--pairs) need_value "$1" $#; pairs=$2; shift 2 ;;
	--fields) need_value "$1" $#; fields=$2; shift 2 ;;
	--cpu) need_value "$1" $#; cpu=$2; pinned=1; shift 2 ;;
	--old-arg) need_value "$1" $#; old_args+=("$2"); shift 2 ;;
	--new-arg) need_value "$1" $#; new_args+=("$2"); shift 2 ;;
	--callgrind) callgrind=1; shift ;;
	--collect) need_value "$1" $#; collect=$2; shift 2 ;;
	--quiet) quiet=1; shift ;;
	-h | --help) usage; exit 0 ;;
	--) shift; break ;;
	-*) echo "ab.sh: unknown option '$1' (see --help)" >&2; exit 2 ;;
	*) break ;;
	esac
done
if [ $# -lt 2 ]; then
	echo "ab.sh: give the OLD and the NEW binary (see --help)" >&2
	exit 2
fi
old=$1
new=$2
shift 2
[ "${1:-}" = -- ] && shift
args=("$@")

if ! [[ $pairs =~ ^[1-9][0-9]?$ ]] || [ "$pairs" -gt 50 ]; then
	echo "ab.sh: bad value '$pairs' for --pairs: a whole number from 1 to 50" >&2
	exit 2
fi
if [ "$pinned" = 1 ]; then
	if ! [[ $cpu =~ ^(0|[1-9][0-9]{0,3})$ ]] || [ "$cpu" -ge "$(nproc --all)" ]; then
		echo "ab.sh: bad value '$cpu' for --cpu: a CPU number below $(nproc --all)" >&2
		exit 2
	fi
	command -v taskset >/dev/null || { echo "ab.sh: --cpu needs taskset (util-linux)" >&2; exit 2; }
fi
pin=() # the command prefix of every run
[ "$pinned" = 1 ] && pin=(taskset -c "$cpu")
if ! [[ $fields =~ ^[a-z0-9_]+(,[a-z0-9_]+)*$ ]]; then
	echo "ab.sh: bad value '$fields' for --fields: SUMMARY field names separated by commas" >&2
	exit 2
fi
if [ "$(tr , '\n' <<<"$fields" | sort | uniq -d)" != "" ]; then
	echo "ab.sh: bad value '$fields' for --fields: a field is named twice" >&2
	exit 2
fi
if [ -n "$collect" ] && [ "$callgrind" = 0 ]; then
	echo "ab.sh: --collect applies to --callgrind only" >&2
	exit 2
fi
for b in "$old" "$new"; do
	[ -f "$b" ] && [ -x "$b" ] || { echo "ab.sh: '$b' is not an executable file" >&2; exit 2; }
done
# a name without a '/' is a file here, not a command to look up in PATH
[[ $old == */* ]] || old=./$old
[[ $new == */* ]] || new=./$new
if [ "$callgrind" = 1 ]; then
	command -v valgrind >/dev/null || {
		echo "ab.sh: --callgrind needs valgrind (apt install valgrind)" >&2
		exit 2
	}
fi

log() { [ "$quiet" = 1 ] || echo "$*" >&2; }

# field and median
. "$here/summary.sh"

ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (a + 0 == 0) print "nan"; else printf "%.4f\n", b / a }'; }

# Run binary $1 with the benchmark arguments and then its side's own (the rest of the arguments; pinned with --cpu);
# its SUMMARY line on stdout, exit 3 on failure.
run_one() {
	local out bin=$1
	shift
	if ! out=$("${pin[@]}" "$bin" "${args[@]}" "$@" 2>&1); then
		echo "ab.sh: failed: $bin ${args[*]} $*" >&2
		tail -20 <<<"$out" >&2
		exit 3
	fi
	out=$(grep '^SUMMARY ' <<<"$out" | tail -1) || true
	[ -n "$out" ] || { echo "ab.sh: no SUMMARY line from: $bin ${args[*]} $*" >&2; exit 3; }
	echo "$out"
}

# Instructions and mispredicted conditional branches of one callgrind run of binary $2 (its side's arguments after
# it), its profile written to $1: "IR BCM" on stdout; exit 3 when the run failed, printed no SUMMARY line or counted
# no instruction.
callgrind_one() {
	local out totals prof=$1 bin=$2 fns=() tog=()
	shift 2
	if [ -n "$collect" ]; then
		IFS=, read -r -a fns <<<"$collect"
		for f in "${fns[@]}"; do tog+=("--toggle-collect=$f"); done
	fi
	if ! out=$("${pin[@]}" valgrind --tool=callgrind --branch-sim=yes --callgrind-out-file="$prof" \
		"${tog[@]}" "$bin" "${args[@]}" "$@" 2>&1); then
		echo "ab.sh: failed under callgrind: $bin ${args[*]} $*" >&2
		tail -20 <<<"$out" >&2
		exit 3
	fi
	if ! grep -q '^SUMMARY ' <<<"$out"; then
		echo "ab.sh: no SUMMARY line from: $bin ${args[*]} $*" >&2
		exit 3
	fi
	# the counts collected, in the order of the "events:" line (missing trailing counts are 0)
	totals=$(awk '/^events:/ { for (i = 2; i <= NF; i++) col[$i] = i }
		/^(summary|totals):/ { ir = $(col["Ir"]) + 0; bcm = ("Bcm" in col) ? $(col["Bcm"]) + 0 : 0 }
		END { printf "%.0f %.0f\n", ir, bcm }' "$prof")
	if [ "${totals%% *}" = 0 ]; then
		echo "ab.sh: callgrind counted no instruction in $bin:" \
			"is every function of --collect '$collect' called?" >&2
		exit 3
	fi
	echo "$totals"
}

if [ "$callgrind" = 1 ]; then
	# the two profiles, in a directory removed on every way out (an interrupt included)
	tmp=$(mktemp -d "${TMPDIR:-/tmp}/dattss-ab.XXXXXX")
	trap 'rm -rf "$tmp"' EXIT
	trap 'exit 130' INT TERM
	r=$(callgrind_one "$tmp/old.out" "$old" "${old_args[@]}") || exit 3
	read -r ir_old bcm_old <<<"$r"
	log "old $old: instructions $ir_old, mispredicted conditional branches $bcm_old"
	r=$(callgrind_one "$tmp/new.out" "$new" "${new_args[@]}") || exit 3
	read -r ir_new bcm_new <<<"$r"
	log "new $new: instructions $ir_new, mispredicted conditional branches $bcm_new"
	echo "SUMMARY bench=ab mode=callgrind args=\"${args[*]}\" old_args=\"${old_args[*]}\"" \
		"new_args=\"${new_args[*]}\" collect=${collect:-all} ir_old=$ir_old ir_new=$ir_new" \
		"ir_ratio=$(ratio "$ir_old" "$ir_new") cond_mispredicts_old=$bcm_old cond_mispredicts_new=$bcm_new" \
		"cond_mispredicts_ratio=$(ratio "$bcm_old" "$bcm_new")"
	exit 0
fi

IFS=, read -r -a flist <<<"$fields"
declare -A vals_old vals_new higher
for f in "${flist[@]}"; do
	vals_old[$f]=
	vals_new[$f]=
	higher[$f]=0
done
for i in $(seq 1 "$pairs"); do
	if [ $((i % 2)) = 1 ]; then order=(old new); else order=(new old); fi
	declare -A line=()
	for side in "${order[@]}"; do
		if [ "$side" = old ]; then
			line[$side]=$(run_one "$old" "${old_args[@]}") || exit 3
		else
			line[$side]=$(run_one "$new" "${new_args[@]}") || exit 3
		fi
	done
	row="pair $i/$pairs (${order[0]} first):"
	for f in "${flist[@]}"; do
		a=$(field "${line[old]}" "$f")
		b=$(field "${line[new]}" "$f")
		if [ -z "$a" ] || [ -z "$b" ]; then
			echo "ab.sh: no $f= in the SUMMARY line of each side:" >&2
			printf '  old: %s\n  new: %s\n' "${line[old]}" "${line[new]}" >&2
			exit 3
		fi
		vals_old[$f]+=" $a"
		vals_new[$f]+=" $b"
		awk -v a="$a" -v b="$b" 'BEGIN { exit !(b + 0 > a + 0) }' && higher[$f]=$((higher[$f] + 1))
		row+=" $f old $a new $b;"
	done
	log "$row"
done
summary="SUMMARY bench=ab mode=pairs pairs=$pairs args=\"${args[*]}\" old_args=\"${old_args[*]}\""
summary+=" new_args=\"${new_args[*]}\""
for f in "${flist[@]}"; do
	# shellcheck disable=SC2086 # the values are space-separated numbers
	mo=$(median ${vals_old[$f]})
	# shellcheck disable=SC2086
	mn=$(median ${vals_new[$f]})
	summary+=" ${f}_old=$mo ${f}_new=$mn ${f}_ratio=$(ratio "$mo" "$mn") ${f}_new_higher=${higher[$f]}"
done
echo "$summary"
