#!/bin/sh
# test_cpu_check.sh - dattssd and dattss, built for x86-64-v3, refuse to start on a CPU without AVX2 with one line that
# says so and how to build for it (engine/include/dts/cpu.h), and start on one that has it. The CPUs are emulated by
# qemu-user (Debian package qemu-user): -cpu Nehalem (SSE4.2, no AVX) and -cpu Haswell (AVX2, BMI2, FMA).
#
# Usage: test_cpu_check.sh MARCH DATTSSD DATTSS   (MARCH: the build's DTS_MARCH; the test applies to x86-64-v3)
# Exits 0 with "skipped" when MARCH is another target. Creates no files and no processes beyond its runs.
set -u
MARCH=${1:?usage: test_cpu_check.sh MARCH DATTSSD DATTSS}
DATTSSD=${2:?}
DATTSS=${3:?}
NAME=test_cpu_check
ulimit -c 0 # a program that dies under qemu-user would leave a core file in the working directory
fail=0

if [ "$MARCH" != "x86-64-v3" ]; then
	echo "$NAME: skipped (built for $MARCH, the test is for x86-64-v3)"
	exit 0
fi
if ! command -v qemu-x86_64 >/dev/null 2>&1; then
	echo "$NAME: FAIL: qemu-x86_64 not found (scripts/install-deps.sh test)"
	exit 1
fi

# check PROG CPU WANT_STATUS WANT_TEXT ARG: run PROG ARG on CPU, compare its exit status and look for WANT_TEXT.
check() {
	out=$(qemu-x86_64 -cpu "$2" "$1" "$5" 2>&1)
	status=$?
	out=$(printf '%s\n' "$out" | grep -v "^qemu-x86_64: warning")
	if [ "$status" != "$3" ]; then
		echo "$NAME: FAIL: $(basename "$1") $5 on $2 exited $status, want $3; it said: $out"
		fail=1
	elif ! printf '%s\n' "$out" | grep -qF -- "$4"; then
		echo "$NAME: FAIL: $(basename "$1") $5 on $2 did not say '$4'; it said: $out"
		fail=1
	else
		echo "$NAME: $(basename "$1") $5 on $2: exit $status, as wanted"
	fi
}

want="this build targets x86-64-v3, and this CPU lacks AVX2; build for it with cmake -DDTS_MARCH=x86-64-v2"
check "$DATTSSD" Nehalem 1 "dattssd: $want" --help
check "$DATTSS" Nehalem 1 "dattss: this build targets x86-64-v3, and this CPU lacks AVX2" --version
check "$DATTSSD" Haswell 0 "Usage: dattssd" --help
check "$DATTSS" Haswell 0 "dattss 0." --version
[ "$fail" -eq 0 ] && echo "$NAME: passed"
exit "$fail"
