#!/bin/sh
# test_dattssd_dpdk.sh - the real dattssd with --io dpdk, as root: two network namespaces joined by a veth pair,
# dattssd in namespace A receiving through net_af_packet with 2 queues on 2 lcores, ordinary sockets and ping in B.
# Checks: ping gets answers from the DPDK port; exact counter sums and timer counts through GET /api/v1/current (the
# HTTP API listens on A's loopback); /metrics shows both queues receiving; after SIGTERM the stored minutes (read
# with `dattss inspect`) add up to exactly what was sent.
#
# Usage: test_dattssd_dpdk.sh DATTSSD DATTSS SENDER   (SENDER = the test_dpdk_veth binary, used for its "send")
# Not root: prints "skipped" and exits 0. Cleanup (trap): processes by PID, namespaces, hugepages, temp files.
set -u
DATTSSD=${1:?usage: test_dattssd_dpdk.sh DATTSSD DATTSS SENDER}
DATTSS=${2:?}
SENDER=${3:?}
NAME=test_dattssd_dpdk

if [ "$(id -u)" -ne 0 ]; then
	echo "$NAME: skipped (needs root for network namespaces and af_packet)"
	exit 0
fi
for tool in ip ping ethtool timeout curl; do
	command -v "$tool" >/dev/null 2>&1 || { echo "$NAME: FAIL: '$tool' not found (scripts/install-deps.sh test)"; exit 1; }
done

ID=$$
NSA=dtdA$ID
NSB=dtdB$ID
VA=eA$ID
VB=eB$ID
IP4_US=192.0.2.1
IP4_PEER=192.0.2.2
TMP=$(mktemp -d /tmp/$NAME.XXXXXX)
HP=/sys/kernel/mm/hugepages/hugepages-2048kB
HP_ORIG=""
PID=""
PASSED=0
FAILED=0

cleanup() {
	if [ -n "$PID" ] && kill -0 "$PID" 2>/dev/null; then
		kill -TERM "$PID" 2>/dev/null
		i=0
		while kill -0 "$PID" 2>/dev/null && [ $i -lt 100 ]; do sleep 0.1; i=$((i + 1)); done
		kill -KILL "$PID" 2>/dev/null
		wait "$PID" 2>/dev/null
	fi
	ip netns del "$NSA" 2>/dev/null
	ip netns del "$NSB" 2>/dev/null
	[ -n "$HP_ORIG" ] && echo "$HP_ORIG" >"$HP/nr_hugepages" 2>/dev/null
	rm -rf "$TMP" "/var/run/dpdk/dtsd$ID"
}
trap cleanup EXIT
trap 'exit 1' INT TERM

pass() { PASSED=$((PASSED + 1)); echo "$NAME: ok: $1"; }
fail() { FAILED=$((FAILED + 1)); echo "$NAME: FAIL: $1"; }
expect_eq() { if [ "$2" = "$3" ]; then pass "$1 = $3"; else fail "$1 = '$2', want $3"; fi; }
finish() {
	if [ "$FAILED" -ne 0 ] && [ -f "$TMP/log" ]; then echo "$NAME: dattssd log:"; sed 's/^/    /' "$TMP/log"; fi
	echo "$NAME: $PASSED passed, $FAILED failed"
	[ "$FAILED" -eq 0 ] || exit 1
	exit 0
}
# with the first user's API key (written by dattssd at the first start of the store)
api() { ip netns exec "$NSA" curl -s --max-time 5 -H "Authorization: Bearer $(cat "$TMP/db/api.key")" \
	"http://127.0.0.1:18080$1"; }
# field JSON COUNTER FIELD: a number from the compact /api/v1/current JSON of process veth (the counter's
# "current" object holds its statistics; integral values are written without a fraction)
field() { printf '%s' "$1" | grep -o "\"counter\":\"$2\"[^}]*" | grep -o "\"$3\":[0-9.e+-]*" | head -1 | cut -d: -f2; }

MEM="--no-huge -m 512 --no-shconf"
if [ -w "$HP/nr_hugepages" ]; then
	free=$(cat "$HP/free_hugepages")
	if [ "$free" -lt 128 ]; then
		HP_ORIG=$(cat "$HP/nr_hugepages")
		echo $((HP_ORIG + 128 - free)) >"$HP/nr_hugepages" 2>/dev/null
		free=$(cat "$HP/free_hugepages")
	fi
	[ "$free" -ge 128 ] && MEM="--in-memory"
fi
CPUS=$(awk '/^Cpus_allowed_list/ { print $2 }' /proc/self/status | tr ',' '\n' |
	awk -F- '{ if (NF == 2) for (c = $1; c <= $2; c++) print c; else print $1 }' | head -2 | tr '\n' ' ')
set -- $CPUS
C0=$1
C1=${2:-$1}

ip netns add "$NSA" && ip netns add "$NSB" &&
	ip link add "$VA" type veth peer name "$VB" &&
	ip link set "$VA" netns "$NSA" && ip link set "$VB" netns "$NSB" &&
	ip -n "$NSA" link set lo up && ip -n "$NSB" link set lo up &&
	ip netns exec "$NSA" sh -c "echo 1 > /proc/sys/net/ipv6/conf/$VA/disable_ipv6" &&
	ip -n "$NSA" link set "$VA" up &&
	ip -n "$NSB" addr add "$IP4_PEER/24" dev "$VB" &&
	ip netns exec "$NSB" ethtool -K "$VB" tx off >/dev/null &&
	ip -n "$NSB" link set "$VB" up || { fail "cannot set up namespaces and veth"; finish; }

ip netns exec "$NSA" timeout 120 "$DATTSSD" --io dpdk --data-dir "$TMP/db" --http-port 18080 --statsd-port 8125 \
	--tick-ms 100 --grace-s 1 \
	--dpdk-eal "--no-pci $MEM --file-prefix=dtsd$ID --no-telemetry --vdev=net_af_packet0,iface=$VA,qpairs=2 --lcores=0@$C0,1@$C1" \
	--dpdk-queues 2 --dpdk-ipv4 "$IP4_US" >"$TMP/log" 2>&1 &
PID=$!
i=0
while ! grep -q 'dattssd ready' "$TMP/log" && kill -0 "$PID" 2>/dev/null && [ $i -lt 300 ]; do sleep 0.1; i=$((i + 1)); done
grep -q 'dattssd ready' "$TMP/log" && pass "dattssd --io dpdk started" || { fail "dattssd did not start"; finish; }

ip netns exec "$NSB" ping -c 3 -i 0.2 -W 2 "$IP4_US" >"$TMP/ping" 2>&1 &&
	pass "ping $IP4_US answered by the DPDK port" || fail "ping $IP4_US: $(tail -2 "$TMP/ping" | head -1)"

ip netns exec "$NSB" timeout 60 "$SENDER" send --dst "$IP4_US" --sockets 8 --datagrams 50 --prefix veth &&
	pass "sent 8 sockets x 50 datagrams" || fail "sender failed"

# The current state is republished every 5 s over the last 12 closed slots: poll until the sums appear.
i=0
while [ $i -lt 30 ]; do
	J=$(api /api/v1/current)
	[ "$(field "$J" hits sum)" = "400" ] && break
	sleep 0.5
	i=$((i + 1))
done
expect_eq "veth.hits sum through /api/v1/current (8 x 50)" "$(field "$J" hits sum)" 400
expect_eq "veth.lat count" "$(field "$J" lat count)" 400
expect_eq "veth.s7 sum (50 x 8)" "$(field "$J" s7 sum)" 400
M=$(api /metrics)
for q in 0 1; do
	n=$(printf '%s\n' "$M" | awk -v q="$q" '$1 == "dattss_dpdk_queue_packets_total{queue=\"" q "\",what=\"rx\"}" { print $2 }')
	[ -n "$n" ] && [ "$n" -gt 0 ] && pass "queue $q received $n frames" || fail "queue $q received '$n' frames"
done

kill -TERM "$PID"
wait "$PID"
RC=$?
PID=""
expect_eq "dattssd exit status after SIGTERM" "$RC" 0
# Every closed minute of veth.hits, summed: exactly what was sent, whatever minute boundary the run crossed.
STORED=$("$DATTSS" inspect --data-dir "$TMP/db" --series default/veth/hits/c --format csv 2>&1 |
	awk -F, 'NR > 1 { s += $3 } END { print s + 0 }')
expect_eq "veth.hits stored over all minutes" "$STORED" 400
finish
