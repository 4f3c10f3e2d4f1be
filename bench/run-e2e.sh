#!/usr/bin/env bash
# run-e2e.sh - end-to-end benchmark: dattssd + dattss-load over loopback UDP.
#
# Starts build/bin/dattssd on 127.0.0.1 (2 workers, tick 200 ms, a temporary data dir), sends statsd traffic with
# build/bin/dattss-load, waits until the server's counts stop changing, then compares what the server counted
# (GET /metrics: dattss_received_lines_total and dattss_samples_total summed over workers) with what was sent, and
# measures the server's CPU time (utime + stime from /proc/PID/stat) over the run. /api/v1/current is not used for the
# count: it is a 60-second moving window, not a total.
#
# Prints one line:
#   SUMMARY bench=e2e names=... rate=... lines_sent=... lines_counted=... loss_pct=... server_cpu_s=...
#           cpu_s_per_million_lines=... dropped=... rejected=... (then samples, aggregated_loss_pct, kernel_rcvbuf_errors,
#           server_rss_mb, server_rss_idle_mb, series_live, send_rate, mix, lines_per_datagram, sender_threads,
#           workers_hit, server_user_s, server_sys_s, server_ctx_switches, lines_per_ctx_switch, rx_cpu_s,
#           merger_cpu_s, storage_cpu_s, server_page_faults, paused_s, socket_dropped_datagrams)
# rx_cpu_s, merger_cpu_s and storage_cpu_s split server_cpu_s by thread (/proc/PID/task/*/stat, by thread name): the
# UDP receive workers (their recvmmsg system time included), the merger, and the storage thread with RocksDB's
# background threads; the rest is the stream, HTTP, alert and main threads. They tell which side bounds a run.
# server_page_faults counts the daemon's minor page faults over the same time (/proc/PID/stat): first touches of
# memory, mostly while series and tables grow; each costs ~12 us of CPU on the paravirtualised test VM, a 2 MiB
# huge page one fault for 512 pages (docs/performance.md, "Session 8").
# paused_s is the time the UDP workers left their sockets unread while their core was saturated (udp_backpressure: the
# merger behind), socket_dropped_datagrams what the kernel dropped at their sockets meanwhile (SO_MEMINFO), both
# from /metrics over the run.
# server_ctx_switches counts the context switches of all of dattssd's threads (/proc/PID/task/*/status, voluntary and
# involuntary) over the load and the settle time: mostly receive-worker wake-ups, the cost recv_coalesce_us cuts.
# lines_counted is what the workers received and decoded; samples is what was aggregated, which is less when the
# engine dropped valid values (dropped=, e.g. table_full when the merger falls behind): loss_pct compares lines_counted
# with lines_sent, aggregated_loss_pct compares samples (one per generated line) with lines_sent, and "no loss" means
# both are 0. cpu_s_per_million_lines divides by the lines the server counted. kernel_rcvbuf_errors is the host-wide UDP
# RcvbufErrors delta over the run (datagrams the kernel dropped because a socket buffer was full): on an otherwise
# quiet host, that is where lost lines went. The daemon is stopped (SIGTERM, then waited for) and the temporary
# directory removed on every exit path.
#
# Settings: flags, or the environment variables in brackets; flags win.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/.." && pwd)

build_dir=${BUILD_DIR:-$repo/build}
names=${E2E_NAMES:-1000}
rate=${E2E_RATE:-1000000}
duration=${E2E_SECONDS:-10}
lpd=${E2E_LINES_PER_DATAGRAM:-0}
mix=${E2E_MIX:-c=70,ms=20,g=10}
threads=${E2E_THREADS:-1}
workers=${E2E_WORKERS:-2}
tick_ms=${E2E_TICK_MS:-200}
load_passes=${E2E_LOAD_PASSES:-1}
http_port=${E2E_HTTP_PORT:-}
statsd_port=${E2E_STATSD_PORT:-}
settle_timeout=${E2E_SETTLE_TIMEOUT:-60}
daemon_extra=(${E2E_DAEMON_ARGS:-}) # extra dattssd flags, split on blanks
quiet=0

usage() {
	cat <<EOF
usage: bench/run-e2e.sh [options]
  --names K                 distinct names [E2E_NAMES, default 1000]
  --rate LINES_PER_SEC      sender rate, 0 = unpaced [E2E_RATE, default 1000000]
  --seconds S               sending time [E2E_SECONDS, default 10]
  --lines-per-datagram N    0 = packed to 1400 bytes [E2E_LINES_PER_DATAGRAM, default 0]
  --mix c=70,ms=20,g=10     [E2E_MIX]
  --threads T               sender threads (one socket each) [E2E_THREADS, default 1]
  --workers N               dattssd UDP workers [E2E_WORKERS, default 2]
  --tick-ms MS              dattssd --tick-ms [E2E_TICK_MS, default 200]
  --http-port P             [E2E_HTTP_PORT, default: a free random port]
  --statsd-port P           [E2E_STATSD_PORT, default: a free random port]
  --settle-timeout S        give up waiting for the counts to settle after S seconds [E2E_SETTLE_TIMEOUT, 60]
  --load-passes N           dattss-load --passes: each name N times in the sender's pool, each time with a new
                            value (timers with N distinct values per name) [E2E_LOAD_PASSES, default 1]
  --daemon-arg ARG          one more dattssd flag, e.g. --daemon-arg=--recv-coalesce-us=0 (repeatable)
                            [E2E_DAEMON_ARGS: flags separated by blanks]
  --build-dir DIR           where bin/dattssd and bin/dattss-load are [BUILD_DIR, default $repo/build]
  --quiet                   no progress on stderr
EOF
}

while [ $# -gt 0 ]; do
	case $1 in
	--names) names=$2; shift 2 ;;
	--rate) rate=$2; shift 2 ;;
	--seconds) duration=$2; shift 2 ;;
	--lines-per-datagram) lpd=$2; shift 2 ;;
	--mix) mix=$2; shift 2 ;;
	--threads) threads=$2; shift 2 ;;
	--workers) workers=$2; shift 2 ;;
	--tick-ms) tick_ms=$2; shift 2 ;;
	--http-port) http_port=$2; shift 2 ;;
	--statsd-port) statsd_port=$2; shift 2 ;;
	--settle-timeout) settle_timeout=$2; shift 2 ;;
	--load-passes) load_passes=$2; shift 2 ;;
	--daemon-arg) daemon_extra+=("$2"); shift 2 ;;
	--daemon-arg=*) daemon_extra+=("${1#--daemon-arg=}"); shift ;;
	--build-dir) build_dir=$2; shift 2 ;;
	--quiet) quiet=1; shift ;;
	-h | --help) usage; exit 0 ;;
	*) echo "run-e2e.sh: unknown argument '$1' (see --help)" >&2; exit 2 ;;
	esac
done

daemon=$build_dir/bin/dattssd
load=$build_dir/bin/dattss-load
for b in "$daemon" "$load"; do
	[ -x "$b" ] || { echo "run-e2e.sh: $b not found: build first (cmake -S . -B build && cmake --build build)" >&2; exit 2; }
done

log() { [ "$quiet" = 1 ] || echo "run-e2e: $*" >&2; }

# ---- cleanup on every exit path -----------------------------------------------------------------------------------
tmp=$(mktemp -d "${TMPDIR:-/tmp}/dattss-e2e.XXXXXX")
pid=
cleanup() {
	local rc=$?
	if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
		local t0=$SECONDS
		kill -TERM "$pid" 2>/dev/null || true
		for _ in $(seq 1 600); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
		# a slow shutdown is worth knowing about (the merger folds and closes every open minute on the way out)
		[ $((SECONDS - t0)) -lt 2 ] || echo "run-e2e: dattssd took about $((SECONDS - t0)) s to exit after SIGTERM" >&2
		if kill -0 "$pid" 2>/dev/null; then
			echo "run-e2e: dattssd (pid $pid) still running 60 s after SIGTERM: SIGKILL" >&2
			kill -KILL "$pid" 2>/dev/null || true
		fi
		wait "$pid" 2>/dev/null || true
	fi
	rm -rf "$tmp"
	exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# ---- helpers ------------------------------------------------------------------------------------------------------
http_get() { # path -> body on stdout; non-zero on failure
	if command -v curl >/dev/null 2>&1; then
		curl -sf --max-time 5 "http://127.0.0.1:$http_port$1"
		return
	fi
	local resp
	exec 3<>"/dev/tcp/127.0.0.1/$http_port" || return 1
	printf 'GET %s HTTP/1.0\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n' "$1" >&3
	resp=$(timeout 5 cat <&3) || { exec 3<&-; return 1; }
	exec 3<&-
	case ${resp%%$'\r'*} in *" 200 "*) ;; *) return 1 ;; esac
	printf '%s\n' "$resp" | sed '1,/^\r$/d'
}

# metric_sum NAME < metrics text: sum of every sample of NAME (all label sets)
metric_sum() {
	awk -v m="$1" '$1 == m || index($1, m "{") == 1 { s += $NF } END { printf "%.0f\n", s }'
}

cpu_ticks() { # "utime stime" of $pid in clock ticks (fields 14, 15; counted after the ')' that ends the comm field)
	local stat
	stat=$(<"/proc/$pid/stat")
	stat=${stat##*) }
	awk '{ print $12, $13 }' <<<"$stat"
}

page_faults() { # minor faults of $pid so far (field 10)
	local stat
	stat=$(<"/proc/$pid/stat")
	stat=${stat##*) }
	awk '{ print $8 }' <<<"$stat"
}

thread_cpu() { # "rx merger storage" CPU ticks (utime + stime) of $pid's threads by name: dts-rx*, dts-merger,
	# dts-storage + rocksdb:* (the rest is the stream, HTTP, alert and main threads)
	local t comm stat rx=0 mg=0 st=0 c
	for t in /proc/"$pid"/task/*; do
		comm=$(<"$t/comm") 2>/dev/null || continue
		stat=$(<"$t/stat") 2>/dev/null || continue
		stat=${stat##*) }
		c=$(awk '{ print $12 + $13 }' <<<"$stat")
		case $comm in
		dts-rx*) rx=$((rx + c)) ;;
		dts-merger) mg=$((mg + c)) ;;
		dts-storage | rocksdb:*) st=$((st + c)) ;;
		esac
	done
	echo "$rx $mg $st"
}

ctx_switches() { # context switches of all of $pid's threads so far (voluntary + involuntary): its wake-ups
	cat /proc/"$pid"/task/*/status 2>/dev/null |
		awk '/^(non)?voluntary_ctxt_switches:/ { s += $2 } END { print s + 0 }'
}

rss_mb() { awk '/^VmRSS:/ { printf "%.1f\n", $2 / 1024 }' "/proc/$pid/status"; }

rcvbuf_errors() { awk '/^Udp:/ { if (!h) { for (i = 1; i <= NF; i++) if ($i == "RcvbufErrors") c = i; h = 1 } else print $c }' /proc/net/snmp; }

port_free() { # port -> 0 when nothing listens on it (TCP or UDP); assumes free when ss is missing
	command -v ss >/dev/null 2>&1 || return 0
	! ss -Hlntu "sport = :$1" 2>/dev/null | grep -q .
}

pick_port() {
	local p
	for _ in $(seq 1 50); do
		p=$((20000 + RANDOM % 30000))
		if port_free "$p" && [ "$p" != "${http_port:-}" ]; then echo "$p"; return 0; fi
	done
	echo "run-e2e.sh: no free port found" >&2
	return 1
}

# ---- start the daemon ---------------------------------------------------------------------------------------------
[ -n "$http_port" ] || http_port=$(pick_port)
[ -n "$statsd_port" ] || statsd_port=$(pick_port)
mkdir -p "$tmp/data"
"$daemon" --bind 127.0.0.1 --http-port "$http_port" --statsd-port "$statsd_port" --workers "$workers" \
	--data-dir "$tmp/data" --tick-ms "$tick_ms" ${daemon_extra[@]+"${daemon_extra[@]}"} >"$tmp/dattssd.log" 2>&1 &
pid=$!
log "dattssd pid $pid, statsd udp 127.0.0.1:$statsd_port, http 127.0.0.1:$http_port, log $tmp/dattssd.log"
for _ in $(seq 1 100); do
	http_get /healthz >/dev/null 2>&1 && break
	if ! kill -0 "$pid" 2>/dev/null; then
		echo "run-e2e.sh: dattssd exited during startup:" >&2
		tail -20 "$tmp/dattssd.log" >&2
		pid=
		exit 1
	fi
	sleep 0.1
done
http_get /healthz >/dev/null || { echo "run-e2e.sh: dattssd not answering /healthz after 10 s" >&2; exit 1; }

m0=$(http_get /metrics)
lines0=$(metric_sum dattss_received_lines_total <<<"$m0")
samples0=$(metric_sum dattss_samples_total <<<"$m0")
cpu0=$(cpu_ticks)
pf0=$(page_faults)
thr0=$(thread_cpu)
ctx0=$(ctx_switches)
rss_idle=$(rss_mb)
rcv0=$(rcvbuf_errors)

# ---- load ---------------------------------------------------------------------------------------------------------
load_args=(--port "$statsd_port" --threads "$threads" --rate "$rate" --seconds "$duration" --names "$names"
	--mix "$mix" --lines-per-datagram "$lpd" --passes "$load_passes")
[ "$quiet" = 1 ] && load_args+=(--quiet)
log "load: $load --host 127.0.0.1 ${load_args[*]}"
load_out=$("$load" --host 127.0.0.1 "${load_args[@]}")
summary=$(grep '^SUMMARY bench=load ' <<<"$load_out") || { echo "run-e2e.sh: no SUMMARY from dattss-load" >&2; exit 1; }
field() { sed -n "s/.* $1=\([^ ]*\).*/\1/p" <<<"$summary"; }
lines_sent=$(field lines_sent)
send_rate=$(field lines_per_sec)

# ---- settle: until dattss_samples_total stops changing ------------------------------------------------------------
prev=-1
stable=0
deadline=$((SECONDS + settle_timeout))
while :; do
	sleep 0.5
	cur=$(http_get /metrics | metric_sum dattss_samples_total) || cur=-2
	if [ "$cur" = "$prev" ]; then
		stable=$((stable + 1))
		[ $stable -ge 2 ] && break
	else
		stable=0
	fi
	prev=$cur
	if [ $SECONDS -ge $deadline ]; then
		echo "run-e2e.sh: counts still changing after ${settle_timeout} s; reporting what is there" >&2
		break
	fi
done

cpu1=$(cpu_ticks)
pf1=$(page_faults)
thr1=$(thread_cpu)
ctx1=$(ctx_switches)
rss=$(rss_mb)
rcv1=$(rcvbuf_errors)
m1=$(http_get /metrics)
lines_counted=$(($(metric_sum dattss_received_lines_total <<<"$m1") - lines0))
samples=$(($(metric_sum dattss_samples_total <<<"$m1") - samples0))
dropped=$(metric_sum dattss_dropped_total <<<"$m1")
rejected=$(metric_sum dattss_rejected_lines_total <<<"$m1")
series=$(metric_sum dattss_series_live <<<"$m1")
workers_hit=$(awk '/^dattss_received_lines_total\{/ && $NF > 0 { n++ } END { print n + 0 }' <<<"$m1")
# udp_backpressure: time the workers left their sockets unread, and what their sockets dropped (both over the run)
paused0=$(awk '$1 == "dattss_receive_paused_seconds_total" { print $2 }' <<<"$m0")
paused1=$(awk '$1 == "dattss_receive_paused_seconds_total" { print $2 }' <<<"$m1")
sdrops0=$(metric_sum dattss_socket_dropped_datagrams_total <<<"$m0")
sdrops=$(($(metric_sum dattss_socket_dropped_datagrams_total <<<"$m1") - sdrops0))
clk=$(getconf CLK_TCK)

awk -v names="$names" -v rate="$rate" -v sent="$lines_sent" -v counted="$lines_counted" -v c0="$cpu0" -v c1="$cpu1" \
	-v clk="$clk" -v dropped="$dropped" -v rejected="$rejected" -v samples="$samples" -v rcv=$((rcv1 - rcv0)) \
	-v rss="$rss" -v rss_idle="$rss_idle" -v series="$series" -v srate="$send_rate" -v mix="$mix" -v lpd="$lpd" \
	-v threads="$threads" -v hit="$workers_hit" -v ctx=$((ctx1 - ctx0)) -v t0="$thr0" -v t1="$thr1" \
	-v pf=$((pf1 - pf0)) -v p0="${paused0:-0}" -v p1="${paused1:-0}" -v sdrops="$sdrops" 'BEGIN {
	split(c0, a, " "); split(c1, b, " "); split(t0, ta, " "); split(t1, tb, " ")
	user = (b[1] - a[1]) / clk; sys = (b[2] - a[2]) / clk; cpu = user + sys
	loss = sent > 0 ? (sent - counted) * 100 / sent : 0
	aloss = sent > 0 ? (sent - samples) * 100 / sent : 0
	per = counted > 0 ? cpu / (counted / 1e6) : 0
	printf "SUMMARY bench=e2e names=%s rate=%s lines_sent=%s lines_counted=%s loss_pct=%.4f server_cpu_s=%.2f", \
		names, rate, sent, counted, loss, cpu
	printf " cpu_s_per_million_lines=%.4f dropped=%s rejected=%s samples=%s aggregated_loss_pct=%.4f", \
		per, dropped, rejected, samples, aloss
	printf " kernel_rcvbuf_errors=%s", rcv
	printf " server_rss_mb=%s server_rss_idle_mb=%s series_live=%s send_rate=%s mix=%s lines_per_datagram=%s", \
		rss, rss_idle, series, srate, mix, lpd
	printf " sender_threads=%s workers_hit=%s server_user_s=%.2f server_sys_s=%.2f", threads, hit, user, sys
	printf " server_ctx_switches=%s lines_per_ctx_switch=%.0f", ctx, (ctx > 0 ? counted / ctx : 0)
	printf " rx_cpu_s=%.2f merger_cpu_s=%.2f storage_cpu_s=%.2f", (tb[1] - ta[1]) / clk, (tb[2] - ta[2]) / clk, \
		(tb[3] - ta[3]) / clk
	printf " server_page_faults=%s paused_s=%.3f socket_dropped_datagrams=%s\n", pf, p1 - p0, sdrops
}'
if [ "$dropped" != 0 ]; then
	echo "run-e2e: dropped by reason: $(awk '/^dattss_dropped_total\{/ && $NF > 0 { printf "%s%s=%s", sep, $1, $NF; sep = " " }' <<<"$m1")" >&2
fi
if [ "$lines_counted" -gt "$lines_sent" ]; then
	echo "run-e2e.sh: the server counted more lines than were sent: another client is sending to port $statsd_port?" >&2
	exit 1
fi
