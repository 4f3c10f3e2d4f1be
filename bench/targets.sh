#!/usr/bin/env bash
# targets.sh - run the benchmark of every performance target of the engine issue and say which are met.
#
# One command for what docs/performance.md, "Summary against the targets", assembles from many sessions: each target's
# benchmark with the command recorded there, run --runs times one after another (never two at once: they would share
# the cores), its figure taken from the benchmark's SUMMARY line and compared with the target. Meant for a machine
# other than the one the figures were taken on (bare metal, more cores): one run of this says where it stands.
#
# The targets (name: what is measured, by which command, and the limit):
#   engine_10k     bench_engine --names 10000 (mix c=70,ms=20,g=10, packed)         lines_per_sec, median >= 40M
#   engine_1m      bench_engine --names 1000000 --warmup 6 --seconds 6 --pool-mb 256 --table-capacity-max 2097152
#                  lines_per_sec, median >= 15M. The tables may grow to 2^21 buckets, enough for one tick of the 1M
#                  names on one core at this rate, as a deployment with one worker that busy would set
#                  table_capacity_max; at dattssd's default (2^19, 262,144 distinct series per tick) the core hands
#                  its table over several times a tick and the merger folds about one entry per line
#                  (docs/performance.md, "Session 13")
#   e2e_cpu_1k     run-e2e.sh --names 1000 --rate 1000000 --mix c=100 --threads 4
#                  cpu_s_per_million_lines, median <= 0.015; and every counter counted (aggregated_loss_pct 0)
#   e2e_noloss_1m  run-e2e.sh --names 1000000 --rate 3000000 --seconds 8 --threads 4 with series_reserve = 1000000
#                  (mixed types): aggregated_loss_pct (lines lost in the kernel or values the engine dropped) 0 in
#                  every run
#   mem_counter    bench_engine --names 1000000 --mix c=100 --warmup 6 --seconds 6 --table-capacity-max 0
#                  bytes_per_series, median <= 128
#   mem_timer      the same with --mix ms=100: bytes_per_series, median <= 1024
#
# Prints progress and a table (target, limit, each run, the figure compared, met) on stderr, and one line on stdout:
#   SUMMARY bench=targets runs=N <name>=<figure> <name>_met=yes|no ... met=M of=T seconds=S
# Exit status: 0 when every benchmark ran (met or not; --fail-unmet: 1 when a target is not met), 2 on bad usage or a
# missing build, 3 when a benchmark failed or printed no SUMMARY.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/.." && pwd)

build_dir=${BUILD_DIR:-$repo/build}
runs=3
only=
fail_unmet=0
quiet=0
all_targets=(engine_10k engine_1m e2e_cpu_1k e2e_noloss_1m mem_counter mem_timer)

usage() {
	cat <<EOF
usage: bench/targets.sh [options]
Runs the benchmark of each performance target of the engine issue (docs/performance.md, "Summary against the
targets"), one after another, and prints whether each is met: a table on stderr, one SUMMARY line on stdout.
  --runs N          runs of each benchmark, 1..20; the median (or, for no loss, every run) is compared (default 3)
  --only A,B        only these targets: ${all_targets[*]}
  --build-dir DIR   where bin/bench_engine, bin/dattssd and bin/dattss-load are [BUILD_DIR, default $repo/build]
  --fail-unmet      exit 1 when a target is not met (default: exit 0 once every benchmark ran)
  --quiet           no progress or table on stderr
  --help
Takes about 4 minutes with --runs 3. Nothing else should run on the machine meanwhile.
EOF
}

while [ $# -gt 0 ]; do
	case $1 in
	--runs) runs=${2:-}; shift 2 || { usage >&2; exit 2; } ;;
	--only) only=${2:-}; shift 2 || { usage >&2; exit 2; } ;;
	--build-dir) build_dir=${2:-}; shift 2 || { usage >&2; exit 2; } ;;
	--fail-unmet) fail_unmet=1; shift ;;
	--quiet) quiet=1; shift ;;
	-h | --help) usage; exit 0 ;;
	*) echo "targets.sh: unknown argument '$1' (see --help)" >&2; exit 2 ;;
	esac
done

if ! [[ $runs =~ ^[0-9]+$ ]] || [ "$runs" -lt 1 ] || [ "$runs" -gt 20 ]; then
	echo "targets.sh: bad value '$runs' for --runs: a whole number from 1 to 20" >&2
	exit 2
fi
selected=("${all_targets[@]}")
if [ -n "$only" ]; then
	IFS=, read -r -a selected <<<"$only"
	for t in "${selected[@]}"; do
		case " ${all_targets[*]} " in
		*" $t "*) ;;
		*) echo "targets.sh: unknown target '$t' in --only (known: ${all_targets[*]})" >&2; exit 2 ;;
		esac
	done
fi
for b in bench_engine dattssd dattss-load; do
	[ -x "$build_dir/bin/$b" ] || {
		echo "targets.sh: $build_dir/bin/$b not found: build first (make build)" >&2
		exit 2
	}
done

log() { [ "$quiet" = 1 ] || echo "targets: $*" >&2; }

# field and median
. "$here/summary.sh"

# One run of target $1: its command's SUMMARY line on stdout; exit 3 when it fails.
run_one() {
	local out cmd
	case $1 in
	engine_10k) cmd=("$build_dir/bin/bench_engine" --names 10000 --warmup 1 --seconds 3 --quiet) ;;
	engine_1m)
		cmd=("$build_dir/bin/bench_engine" --names 1000000 --warmup 6 --seconds 6 --pool-mb 256
			--table-capacity-max 2097152 --quiet) ;;
	e2e_cpu_1k)
		cmd=("$here/run-e2e.sh" --build-dir "$build_dir" --names 1000 --rate 1000000 --seconds 10 --mix c=100
			--threads 4 --quiet) ;;
	e2e_noloss_1m)
		cmd=("$here/run-e2e.sh" --build-dir "$build_dir" --names 1000000 --rate 3000000 --seconds 8 --threads 4
			--daemon-arg=--series-reserve=1000000 --quiet) ;;
	mem_counter)
		cmd=("$build_dir/bin/bench_engine" --names 1000000 --mix c=100 --warmup 6 --seconds 6
			--table-capacity-max 0 --quiet) ;;
	mem_timer)
		cmd=("$build_dir/bin/bench_engine" --names 1000000 --mix ms=100 --warmup 6 --seconds 6
			--table-capacity-max 0 --quiet) ;;
	esac
	if ! out=$("${cmd[@]}" 2>&1); then
		echo "targets.sh: $1 failed: ${cmd[*]}" >&2
		echo "$out" | tail -20 >&2
		exit 3
	fi
	out=$(grep '^SUMMARY ' <<<"$out" | tail -1) || true
	if [ -z "$out" ]; then
		echo "targets.sh: $1 printed no SUMMARY line: ${cmd[*]}" >&2
		exit 3
	fi
	echo "$out"
}

# What each target compares: the SUMMARY field, how (min: at least; max: at most; zero: 0 in every run), the limit.
key_of() {
	case $1 in
	engine_10k | engine_1m) echo lines_per_sec ;;
	e2e_cpu_1k) echo cpu_s_per_million_lines ;;
	e2e_noloss_1m) echo aggregated_loss_pct ;;
	mem_counter | mem_timer) echo bytes_per_series ;;
	esac
}
rule_of() {
	case $1 in
	engine_10k) echo "min 40000000" ;;
	engine_1m) echo "min 15000000" ;;
	e2e_cpu_1k) echo "max 0.015" ;;
	e2e_noloss_1m) echo "zero 0" ;;
	mem_counter) echo "max 128" ;;
	mem_timer) echo "max 1024" ;;
	esac
}

limit_text() {
	case $1 in
	min) echo ">= $2" ;;
	max) echo "<= $2" ;;
	zero) echo "0 each run" ;;
	esac
}

t0=$SECONDS
summary="SUMMARY bench=targets runs=$runs"
table=()
met=0
for t in "${selected[@]}"; do
	key=$(key_of "$t")
	read -r how limit <<<"$(rule_of "$t")"
	vals=()
	extra_ok=1
	for i in $(seq 1 "$runs"); do
		line=$(run_one "$t") || exit 3
		v=$(field "$line" "$key")
		[ -n "$v" ] || { echo "targets.sh: $t: no $key= in: $line" >&2; exit 3; }
		vals+=("$v")
		# counters exact at 1,000 names: every value the sender sent was aggregated
		if [ "$t" = e2e_cpu_1k ] && awk -v f="$(field "$line" aggregated_loss_pct)" 'BEGIN { exit !(f + 0 != 0) }'; then
			extra_ok=0
		fi
		log "$t run $i/$runs: $key=$v"
	done
	case $how in
	zero)
		fig=$(printf '%s\n' "${vals[@]}" | sort -g | tail -1) # the worst run
		ok=$(awk -v f="$fig" 'BEGIN { print (f + 0 == 0) ? "yes" : "no" }') ;;
	min)
		fig=$(median "${vals[@]}")
		ok=$(awk -v f="$fig" -v l="$limit" 'BEGIN { print (f + 0 >= l + 0) ? "yes" : "no" }') ;;
	max)
		fig=$(median "${vals[@]}")
		ok=$(awk -v f="$fig" -v l="$limit" 'BEGIN { print (f + 0 <= l + 0) ? "yes" : "no" }') ;;
	esac
	[ "$extra_ok" = 1 ] || ok=no
	[ "$ok" = yes ] && met=$((met + 1))
	summary+=" $t=$fig ${t}_met=$ok"
	table+=("$(printf '%-14s %-24s %-11s %-40s %s' "$t" "$key" "$(limit_text "$how" "$limit")" "${vals[*]}" "$fig $ok")")
done

if [ "$quiet" != 1 ]; then
	{
		printf '%-14s %-24s %-11s %-40s %s\n' target figure limit runs "compared met"
		printf '%s\n' "${table[@]}"
		echo "(compared: the median; for e2e_noloss_1m the worst run; e2e_cpu_1k also needs aggregated_loss_pct 0)"
	} >&2
fi
echo "$summary met=$met of=${#selected[@]} seconds=$((SECONDS - t0))"
if [ "$fail_unmet" = 1 ] && [ "$met" -lt "${#selected[@]}" ]; then
	exit 1
fi
exit 0
