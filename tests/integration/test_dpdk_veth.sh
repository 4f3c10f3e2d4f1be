#!/bin/sh
# test_dpdk_veth.sh - DPDK receive end to end, as root: two network namespaces joined by a veth pair, the engine fed by
# dts_dpdk_start (net_af_packet, 2 queues, 2 lcores) in one, ordinary sockets and ping in the other; then DPDK's own
# IPv4 reassembly on a replayed capture of fragments (net_pcap).
#
# Usage: test_dpdk_veth.sh HELPER        (HELPER = the test_dpdk_veth binary; see test_dpdk_veth.c)
# Not root: prints "test_dpdk_veth: skipped ..." and exits 0. Any failed check: exit 1.
#
# Phase 1, af_packet on a veth (namespace A runs the helper, B sends):
#   - ping 192.0.2.1 and ping -6 2001:db8::1 get replies (ARP, ICMP echo, NS -> NA, ICMPv6 echo answered by DPDK)
#   - 16 sockets (16 source ports) x 100 datagrams over IPv4, 4 x 50 over IPv6: exact closed-minute sums
#   - both receive queues got datagrams (af_packet's fanout hash spreads the source ports)
#   - a 3250-byte datagram (fragmented on the wire; af_packet's fanout defragments IPv4 in the kernel, so DPDK gets it
#     whole: hence framesz=8192 and mbuf_size) is counted in full; a 3500-byte IPv6 datagram's fragments are counted
#     in ipv6_fragments and not aggregated (IPv6 fragments are not reassembled)
#   - no bad checksum (the sender's veth has tx checksum offload turned off: with it on, the kernel hands af_packet
#     UDP checksums that are only partial), no truncated or malformed frame, nothing missed
# Phase 2, net_pcap replaying fragments written by "HELPER frag-pcap" (no network involved): DPDK's reassembly in
#   order, reversed, behind a VLAN tag; an incomplete datagram expires; a bad UDP checksum over the whole datagram.
#
# Cleanup (trap on EXIT, INT, TERM): every process started here is killed by its PID, both namespaces (and so the
# veth pair) are deleted, hugepages are put back to what they were, the temporary directory and EAL's runtime
# directory (--file-prefix=dtsveth$$) are removed.
# Hugepages: 2 MB pages are reserved when fewer than 128 are free; if that fails EAL runs with --no-huge
# (DTS_DPDK_TEST_MEM overrides the EAL memory arguments).
set -u

HELPER=${1:?usage: test_dpdk_veth.sh HELPER}
NAME=test_dpdk_veth

if [ "$(id -u)" -ne 0 ]; then
	echo "$NAME: skipped (needs root for network namespaces and af_packet)"
	exit 0
fi
for tool in ip ping ethtool timeout; do
	if ! command -v "$tool" >/dev/null 2>&1; then
		echo "$NAME: FAIL: '$tool' not found (scripts/install-deps.sh test installs iproute2, iputils-ping, ethtool)"
		exit 1
	fi
done

ID=$$
NSA=dtsA$ID
NSB=dtsB$ID
VA=dA$ID
VB=dB$ID
IP4_US=192.0.2.1
IP4_PEER=192.0.2.2
IP6_US=2001:db8::1
IP6_PEER=2001:db8::2
TMP=$(mktemp -d /tmp/$NAME.XXXXXX)
HP=/sys/kernel/mm/hugepages/hugepages-2048kB
HP_ORIG=""
SERVE_PID=""
PASSED=0
FAILED=0

cleanup() {
	if [ -n "$SERVE_PID" ] && kill -0 "$SERVE_PID" 2>/dev/null; then
		kill -TERM "$SERVE_PID" 2>/dev/null
		i=0
		while kill -0 "$SERVE_PID" 2>/dev/null && [ $i -lt 50 ]; do
			sleep 0.1
			i=$((i + 1))
		done
		pkill -KILL -P "$SERVE_PID" 2>/dev/null
		kill -KILL "$SERVE_PID" 2>/dev/null
		wait "$SERVE_PID" 2>/dev/null
	fi
	ip netns del "$NSA" 2>/dev/null
	ip netns del "$NSB" 2>/dev/null
	if [ -n "$HP_ORIG" ]; then
		echo "$HP_ORIG" >"$HP/nr_hugepages" 2>/dev/null
	fi
	rm -rf "$TMP" "/var/run/dpdk/dtsveth$ID"
}
trap cleanup EXIT
trap 'exit 1' INT TERM

pass() {
	PASSED=$((PASSED + 1))
	echo "$NAME: ok: $1"
}

fail() {
	FAILED=$((FAILED + 1))
	echo "$NAME: FAIL: $1"
}

# value LOG KIND NAME [FIELD]: STAT/QSTAT/SERIES lookups in the helper's output ("" when absent)
getstat() { awk -v n="$2" '$1 == "STAT" && $2 == n { print $3 }' "$1"; }
qstat() { awk -v q="$2" -v n="$3" '$1 == "QSTAT" && $2 == q && $3 == n { print $4 }' "$1"; }
series_sum() { awk -v n="$2" -v t="$3" '$1 == "SERIES" && $2 == n && $3 == t { print $4 }' "$1"; }
series_count() { awk -v n="$2" -v t="$3" '$1 == "SERIES" && $2 == n && $3 == t { print $5 }' "$1"; }

expect_eq() { # what got want
	if [ "$2" = "$3" ]; then pass "$1 = $3"; else fail "$1 = '$2', want $3"; fi
}

expect_ge() { # what got min
	if [ -n "$2" ] && [ "$2" -ge "$3" ]; then pass "$1 = $2 (>= $3)"; else fail "$1 = '$2', want >= $3"; fi
}

finish() {
	echo "$NAME: $PASSED passed, $FAILED failed"
	[ "$FAILED" -eq 0 ] || exit 1
	exit 0
}

# --- EAL memory: hugepages when we can have them, else --no-huge ---
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
MEM=${DTS_DPDK_TEST_MEM:-$MEM} # e.g. DTS_DPDK_TEST_MEM="--no-huge -m 512 --no-shconf" to try the fallback
# --- two lcores on the first two CPUs we may run on (both on one CPU if there is only one) ---
CPUS=$(awk '/^Cpus_allowed_list/ { print $2 }' /proc/self/status | tr ',' '\n' |
	awk -F- '{ if (NF == 2) for (c = $1; c <= $2; c++) print c; else print $1 }' | head -2 | tr '\n' ' ')
set -- $CPUS
C0=$1
C1=${2:-$1}
LCORES="--lcores=0@$C0,1@$C1"
# Our own runtime directory (EAL makes /var/run/dpdk/PREFIX even with --in-memory): removed at cleanup.
PREFIX=dtsveth$ID
MEM="$MEM --file-prefix=$PREFIX --no-telemetry"
echo "$NAME: EAL memory: $MEM; lcores: $LCORES"

# --- phase 1: namespaces and the veth pair ---
ip netns add "$NSA" && ip netns add "$NSB" &&
	ip link add "$VA" type veth peer name "$VB" &&
	ip link set "$VA" netns "$NSA" && ip link set "$VB" netns "$NSB" &&
	ip -n "$NSA" link set lo up && ip -n "$NSB" link set lo up &&
	ip netns exec "$NSA" sh -c "echo 1 > /proc/sys/net/ipv6/conf/$VA/disable_ipv6" &&
	ip -n "$NSA" link set "$VA" up &&
	ip -n "$NSB" addr add "$IP4_PEER/24" dev "$VB" &&
	ip -n "$NSB" -6 addr add "$IP6_PEER/64" dev "$VB" nodad &&
	ip netns exec "$NSB" ethtool -K "$VB" tx off >/dev/null &&
	ip -n "$NSB" link set "$VB" up ||
	{
		fail "cannot set up namespaces $NSA/$NSB and veth $VA/$VB"
		finish
	}

LOG1=$TMP/serve-veth.log
ip netns exec "$NSA" timeout 120 "$HELPER" serve \
	--eal "--no-pci $MEM --vdev=net_af_packet0,iface=$VA,qpairs=2,blocksz=8192,framesz=8192,framecnt=512 $LCORES" \
	--queues 2 --ipv4 "$IP4_US" --ipv6 "$IP6_US" --set mbuf_size=8320 >"$LOG1" 2>&1 &
SERVE_PID=$!
i=0
while ! grep -q '^READY' "$LOG1" && kill -0 "$SERVE_PID" 2>/dev/null && [ $i -lt 300 ]; do
	sleep 0.1
	i=$((i + 1))
done
if ! grep -q '^READY' "$LOG1"; then
	fail "the DPDK receiver did not start; its output:"
	sed 's/^/    /' "$LOG1"
	finish
fi
pass "DPDK receiver started: $(grep '^READY' "$LOG1")"

if ip netns exec "$NSB" ping -c 3 -i 0.2 -W 2 "$IP4_US" >"$TMP/ping4" 2>&1; then
	pass "ping $IP4_US: $(grep -o '[0-9]* received' "$TMP/ping4")"
else
	fail "ping $IP4_US: $(tail -2 "$TMP/ping4" | head -1)"
fi
if ip netns exec "$NSB" ping -6 -c 3 -i 0.2 -W 2 "$IP6_US" >"$TMP/ping6" 2>&1; then
	pass "ping -6 $IP6_US: $(grep -o '[0-9]* received' "$TMP/ping6")"
else
	fail "ping -6 $IP6_US: $(tail -2 "$TMP/ping6" | head -1)"
fi

SEND_OK=1
ip netns exec "$NSB" timeout 60 "$HELPER" send --dst "$IP4_US" --sockets 16 --datagrams 100 --prefix veth || SEND_OK=0
ip netns exec "$NSB" timeout 60 "$HELPER" send --dst "$IP6_US" --sockets 4 --datagrams 50 --prefix v6 || SEND_OK=0
ip netns exec "$NSB" timeout 60 "$HELPER" send-big --dst "$IP4_US" --lines 250 --name big.frag || SEND_OK=0
ip netns exec "$NSB" timeout 60 "$HELPER" send-big --dst "$IP6_US" --lines 250 --name big6.frag || SEND_OK=0
[ $SEND_OK -eq 1 ] && pass "senders ran" || fail "a sender failed"
sleep 0.5

kill -TERM "$SERVE_PID"
wait "$SERVE_PID"
RC=$?
SERVE_PID=""
expect_eq "receiver exit status" "$RC" 0
grep -q '^DONE' "$LOG1" && pass "receiver stopped cleanly (DONE)" || fail "receiver did not print DONE"

expect_eq "veth.hits sum (16 sockets x 100)" "$(series_sum "$LOG1" veth.hits c)" 1600
bad=""
s=0
while [ $s -lt 16 ]; do
	got=$(series_sum "$LOG1" "veth.s$s" c)
	[ "$got" = "$((100 * (s + 1)))" ] || bad="$bad veth.s$s=$got"
	s=$((s + 1))
done
[ -z "$bad" ] && pass "veth.s0..s15 sums = 100 * (i + 1)" || fail "per-socket sums:$bad"
expect_eq "veth.lat count" "$(series_count "$LOG1" veth.lat ms)" 1600
expect_eq "v6.hits sum (IPv6, 4 sockets x 50)" "$(series_sum "$LOG1" v6.hits c)" 200
expect_eq "big.frag sum (3250-byte IPv4 datagram, fragmented on the wire)" "$(series_sum "$LOG1" big.frag c)" 250
expect_eq "big6.frag (IPv6 fragments are not reassembled)" "$(series_sum "$LOG1" big6.frag c)" ""
expect_ge "ipv6_fragments" "$(getstat "$LOG1" ipv6_fragments)" 3
expect_ge "queue 0 udp_datagrams" "$(qstat "$LOG1" 0 udp_datagrams)" 1
expect_ge "queue 1 udp_datagrams" "$(qstat "$LOG1" 1 udp_datagrams)" 1
expect_eq "udp_datagrams" "$(getstat "$LOG1" udp_datagrams)" 1801
expect_ge "arp_replies" "$(getstat "$LOG1" arp_replies)" 1
expect_ge "icmp_replies" "$(getstat "$LOG1" icmp_replies)" 3
expect_ge "nd_replies" "$(getstat "$LOG1" nd_replies)" 1
expect_ge "icmp6_replies" "$(getstat "$LOG1" icmp6_replies)" 3
for c in bad_checksum truncated bad_header tx_dropped port_imissed port_rx_nombuf; do
	expect_eq "$c" "$(getstat "$LOG1" $c)" 0
done
expect_eq "link_up" "$(getstat "$LOG1" link_up)" 1
ip netns del "$NSA"
ip netns del "$NSB"

# --- phase 2: DPDK's IPv4 reassembly on replayed fragments ---
PCAP=$TMP/frags.pcap
LOG2=$TMP/serve-pcap.log
if "$HELPER" frag-pcap "$PCAP"; then
	timeout 60 "$HELPER" serve --eal "--no-pci $MEM --vdev=net_pcap0,rx_pcap=$PCAP --lcores=0@$C0" --queues 1 \
		--ipv4 "$IP4_US" --set mac=02:00:00:00:00:01 --set frag_ttl_ms=200 --run-ms 1500 >"$LOG2" 2>&1 &
	SERVE_PID=$!
	wait "$SERVE_PID"
	RC=$?
	SERVE_PID=""
	expect_eq "pcap receiver exit status" "$RC" 0
	[ "$RC" -eq 0 ] || sed 's/^/    /' "$LOG2"
	expect_eq "fragA.x (3 fragments in order)" "$(series_sum "$LOG2" fragA.x c)" 300
	expect_eq "fragB.x (3 fragments, last first)" "$(series_sum "$LOG2" fragB.x c)" 300
	expect_eq "fragD.x (behind a VLAN tag)" "$(series_sum "$LOG2" fragD.x c)" 150
	expect_eq "fragC.x (middle fragment missing)" "$(series_sum "$LOG2" fragC.x c)" ""
	expect_eq "fragE.x (bad UDP checksum)" "$(series_sum "$LOG2" fragE.x c)" ""
	expect_eq "ipv4_fragments" "$(getstat "$LOG2" ipv4_fragments)" 13
	expect_eq "reassembled" "$(getstat "$LOG2" reassembled)" 4
	expect_eq "frag_dropped (the incomplete datagram expired)" "$(getstat "$LOG2" frag_dropped)" 2
	expect_eq "bad_checksum (over the reassembled datagram)" "$(getstat "$LOG2" bad_checksum)" 1
else
	fail "could not write the fragment capture"
fi

if [ "$FAILED" -ne 0 ]; then
	for f in "$LOG1" "$LOG2"; do
		[ -f "$f" ] && { echo "--- $f"; grep -v '^QSTAT' "$f" | sed 's/^/    /'; }
	done
fi
finish
