#!/usr/bin/env bash
# Starts a split deployment on loopback: six processes (edge, keys, rooms, sync, federation, media), each its own
# `conduit --role R`, sharing one config and an internal secret, with databases under WORKDIR/db/<role>.
#
#   scripts/split-up.sh WORKDIR [EDGE_PORT] [FIRST_INTERNAL_PORT]
#
# Uses CONDUIT_CONFIG as the base config if set (server_name etc.); ports and the secret are given to every part
# as environment overrides, the way docker-compose does. The binary is CONDUIT_BIN (a Native AOT executable, see
# publish-aot.sh) or CONDUIT_DLL (default: the Release build, else the Debug build, under artifacts/).
# Writes WORKDIR/pids and WORKDIR/<role>.log; stop with split-down.sh.
set -euo pipefail
here="$(cd "$(dirname "$0")/.." && pwd)"
work="${1:?usage: split-up.sh WORKDIR [EDGE_PORT] [FIRST_INTERNAL_PORT]}"
edge_port="${2:-6167}"
base="${3:-6171}"
mkdir -p "$work"
work="$(cd "$work" && pwd)"

dll="${CONDUIT_DLL:-}"
if [ -n "${CONDUIT_BIN:-}" ]; then
    [ -x "$CONDUIT_BIN" ] || { echo "split-up.sh: CONDUIT_BIN=$CONDUIT_BIN is not an executable" >&2; exit 2; }
elif [ -z "$dll" ]; then
    for c in "$here/artifacts/bin/Conduit.Edge/release/conduit.dll" "$here/artifacts/bin/Conduit.Edge/debug/conduit.dll"; do
        [ -f "$c" ] && { dll="$c"; break; }
    done
fi
[ -n "${CONDUIT_BIN:-}" ] || { [ -n "$dll" ] && [ -f "$dll" ]; } || { echo "split-up.sh: conduit.dll not found; build first (dotnet build) or set CONDUIT_DLL" >&2; exit 2; }

export CONDUIT_SERVICES__INTERNAL_SECRET="${CONDUIT_SERVICES__INTERNAL_SECRET:-$(head -c 24 /dev/urandom | base64 | tr -dc 'A-Za-z0-9')}"
export CONDUIT_SERVICES__KEYS="http://127.0.0.1:$((base))"
export CONDUIT_SERVICES__ROOMS="http://127.0.0.1:$((base + 1))"
export CONDUIT_SERVICES__SYNC="http://127.0.0.1:$((base + 2))"
export CONDUIT_SERVICES__FEDERATION="http://127.0.0.1:$((base + 3))"
export CONDUIT_SERVICES__MEDIA="http://127.0.0.1:$((base + 4))"
export CONDUIT_PORT="$edge_port"
export CONDUIT_ADDRESS="127.0.0.1"
export CONDUIT_DATABASE_PATH="$work/db"
if [ -z "${CONDUIT_CONFIG:-}" ]; then export CONDUIT_ALLOW_REGISTRATION=true; fi

: > "$work/pids"
start() {
    if [ -n "${CONDUIT_BIN:-}" ]; then "$CONDUIT_BIN" --role "$1" > "$work/$1.log" 2>&1 &
    else dotnet "$dll" --role "$1" > "$work/$1.log" 2>&1 &
    fi
    echo "$! $1" >> "$work/pids"
}
check_alive() {
    while read -r pid role; do
        kill -0 "$pid" 2> /dev/null || { echo "split-up.sh: $role exited early:" >&2; tail -20 "$work/$role.log" >&2; "$here/scripts/split-down.sh" "$work"; exit 1; }
    done < "$work/pids"
}
# Services first, the edge once they listen. Each part also tolerates peers that start later or restart
# (gRPC retries, stream reconnects); waiting here only keeps the first requests from meeting a 502.
for role in keys rooms sync federation media; do start "$role"; done
for port in $(seq "$base" $((base + 4))); do
    for _ in $(seq 1 150); do
        # Any HTTP/2 answer (the internal gate's 403 without the secret) means the listener is up.
        curl -s -o /dev/null --http2-prior-knowledge "http://127.0.0.1:$port/" && break
        check_alive
        sleep 0.2
    done
done
start edge

for _ in $(seq 1 150); do
    if curl -fsS "http://127.0.0.1:$edge_port/_matrix/client/versions" > /dev/null 2>&1; then
        echo "split-up.sh: edge on http://127.0.0.1:$edge_port, services on ports $base-$((base + 4)), pids in $work/pids" >&2
        exit 0
    fi
    check_alive
    sleep 0.2
done
echo "split-up.sh: edge did not answer within 30 s" >&2
"$here/scripts/split-down.sh" "$work"
exit 1
