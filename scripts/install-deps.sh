#!/bin/sh
# Install what building, running and testing DaTtSs needs, only when it is missing.
# Usage: scripts/install-deps.sh [run|test]   (test adds the sanitizer/fuzzer toolchain)
# Debian packages only; needs root (or sudo) the first time, nothing afterwards.
set -eu
want="cmake make gcc pkg-config liburcu-dev libssl-dev libmicrohttpd-dev libjansson-dev libcriterion-dev librocksdb-dev rocksdb-tools libdpdk-dev libcurl4-openssl-dev"
if [ "${1:-run}" = "test" ]; then
  want="$want clang libclang-rt-dev curl iproute2 iputils-ping ethtool chromium qemu-user"
fi
# The dashboard (web/) is built with npm and esbuild. A node that ships its own npm (e.g. nodesource's nodejs, which
# conflicts with Debian's npm package) is used as it is.
command -v npm >/dev/null 2>&1 || want="$want nodejs npm"
missing=""
for p in $want; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
done
[ -z "$missing" ] && exit 0
echo "install-deps: installing:$missing" >&2
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
# shellcheck disable=SC2086
$SUDO apt-get install -y -qq --no-install-recommends $missing >/dev/null
echo "install-deps: done" >&2
