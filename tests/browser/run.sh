#!/bin/sh
# run.sh BUILD_DIR - the dashboard's tests: its logic under node's test runner (web/test), then the browser test
# (dashboard.test.js: the real BUILD_DIR/bin/dattssd driven through Debian's headless Chromium). `make test-browser`.
# Installs playwright-core from package-lock.json when node_modules is missing or the lock changed.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
build=$(cd "${1:?usage: run.sh BUILD_DIR}" && pwd)

node --test "$root"/web/test/*.test.js

want=$(sha256sum < "$here/package-lock.json" | cut -d' ' -f1)
stamp="$here/node_modules/.dattss-lock-sha256"
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
	echo "test-browser: npm ci in tests/browser (playwright-core)" >&2
	(cd "$here" && npm ci --ignore-scripts --no-audit --no-fund --loglevel=error)
	echo "$want" > "$stamp"
fi
DATTSS_BUILD="$build" node --test "$here/dashboard.test.js"
