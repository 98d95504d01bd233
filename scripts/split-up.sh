#!/usr/bin/env bash
# Starts a split deployment on loopback: six processes (edge, keys, rooms, sync, federation, media), each its own
# `conduit --role R`, sharing one config and an internal secret, with databases under WORKDIR/db/<role>.
#
#   scripts/split-up.sh WORKDIR [EDGE_PORT [FIRST_INTERNAL_PORT]]   the ports given (default 6167 and 6171-6175)
#   scripts/split-up.sh WORKDIR auto                                 ports chosen here, nothing assumed free
#   scripts/split-up.sh WORKDIR EDGE_PORT auto                       the edge on EDGE_PORT, the services' ports chosen here
#
# EDGE_PORT 0 (or auto): the system gives the edge a free port. FIRST_INTERNAL_PORT auto (the default when EDGE_PORT
# is 0 or auto): the services must know each other's addresses before they start, so each gets its own port drawn
# at random outside the kernel's ephemeral range (ip_local_port_range, where outgoing connections take their local
# ports, so a connection cannot be holding it) among ports with no socket at that moment; a service that still
# finds its port taken exits with code 2, and then every part is stopped and the start retried with new ports.
# A given EDGE_PORT that is taken ends the start with exit code 3 (other failures: 1), so a caller that chose the
# port itself (a test that must name its server after the port) can choose another and run the script again.
# Readiness is each part's own startup summary ("conduit: listening on URL", printed once it listens), not a probe
# of the port, which could be answered by someone else.
#
# Prints the edge's URL on stdout and writes WORKDIR/ports ("ROLE URL" per line), WORKDIR/pids and
# WORKDIR/<role>.log; stop with split-down.sh. Uses CONDUIT_CONFIG as the base config if set (server_name etc.);
# ports and the secret are given to every part as environment overrides, the way docker-compose does. The binary
# is CONDUIT_BIN (a Native AOT executable, see publish-aot.sh) or CONDUIT_DLL (default: the Release build, else the
# Debug build, under artifacts/).
set -euo pipefail
here="$(cd "$(dirname "$0")/.." && pwd)"
usage="usage: split-up.sh WORKDIR [EDGE_PORT|0|auto [FIRST_INTERNAL_PORT|auto]]"
work="${1:?$usage}"
edge_port="${2:-6167}"
[ "$edge_port" = auto ] && edge_port=0
if [ "$edge_port" = 0 ]; then base="${3:-auto}"; else base="${3:-6171}"; fi
for p in "$edge_port" "$base"; do
    [[ "$p" =~ ^[0-9]+$ || "$p" = auto ]] || { echo "split-up.sh: '$p' is not a port; $usage" >&2; exit 2; }
done
mkdir -p "$work"
work="$(cd "$work" && pwd)"
roles=(keys rooms sync federation media)

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
export CONDUIT_PORT="$edge_port"
export CONDUIT_ADDRESS="127.0.0.1"
export CONDUIT_DATABASE_PATH="$work/db"
if [ -z "${CONDUIT_CONFIG:-}" ]; then export CONDUIT_ALLOW_REGISTRATION=true; fi
# The JIT build's gen0 budget otherwise follows the CPU's cache size, and a process streaming a large upload through
# itself would hold tens of MB of garbage between collections; the AOT build has this baked in (services/edge csproj).
export DOTNET_GCgen0size="${DOTNET_GCgen0size:-0x400000}"

# Random free ports for the services, one each, outside the ephemeral range and above 10000 (below it are the
# well-known ports of other daemons); the whole range if the kernel leaves too little outside it.
pick_ports() {
    local lo hi n1 n2 r p
    read -r lo hi < /proc/sys/net/ipv4/ip_local_port_range
    n1=$((lo > 10000 ? lo - 10000 : 0)); n2=$((65535 - hi))
    declare -A taken=()
    # Every TCP socket's local port, in any state (listening, connected, TIME_WAIT), IPv4 and IPv6.
    while read -r _ local _; do taken[$((16#${local##*:}))]=1; done < <(tail -qn +2 /proc/net/tcp /proc/net/tcp6 2> /dev/null)
    ports=()
    while [ ${#ports[@]} -lt ${#roles[@]} ]; do
        r=$(( (RANDOM << 15 | RANDOM) ))
        if [ $((n1 + n2)) -lt 1000 ]; then p=$((1024 + r % 64512))
        else r=$((r % (n1 + n2))); if [ "$r" -lt "$n1" ]; then p=$((10000 + r)); else p=$((hi + 1 + r - n1)); fi
        fi
        [ -n "${taken[$p]:-}" ] && continue
        taken[$p]=1; ports+=("$p")
    done
}

start() { # role
    if [ -n "${CONDUIT_BIN:-}" ]; then "$CONDUIT_BIN" --role "$1" > "$work/$1.log" 2>&1 &
    else dotnet "$dll" --role "$1" > "$work/$1.log" 2>&1 &
    fi
    echo "$! $1" >> "$work/pids"
}

# Waits for ROLE's startup summary and sets $url to the address it listens on. Returns 2 when the part exited
# because its port was taken, 1 when it exited otherwise or said nothing within 60 s (a busy machine).
await_listening() { # role
    local role=$1 pid line rc deadline=$((SECONDS + 60))
    pid=$(awk -v r="$role" '$2 == r { print $1 }' "$work/pids")
    url=
    while [ $SECONDS -lt $deadline ]; do
        line=$(grep -m1 '^conduit: listening on ' "$work/$role.log" 2> /dev/null || true)
        if [ -n "$line" ]; then url=${line#conduit: listening on }; url=${url%% *}; return 0; fi
        if ! kill -0 "$pid" 2> /dev/null; then
            rc=0; wait "$pid" || rc=$?
            [ "$rc" = 2 ] && grep -q 'address already in use' "$work/$role.log" && return 2
            echo "split-up.sh: $role exited (code $rc):" >&2; tail -20 "$work/$role.log" >&2
            return 1
        fi
        sleep 0.1
    done
    echo "split-up.sh: $role did not start listening within 60 s:" >&2; tail -20 "$work/$role.log" >&2
    return 1
}

fail() { "$here/scripts/split-down.sh" "$work"; exit "${1:-1}"; }

# Services first, the edge once they listen. Each part also tolerates peers that start later or restart
# (gRPC retries, stream reconnects); waiting here only keeps the first requests from meeting a 502.
for attempt in 1 2 3 4 5; do
    if [ "$base" = auto ]; then pick_ports; else ports=(); for i in 0 1 2 3 4; do ports+=($((base + i))); done; fi
    : > "$work/pids"
    : > "$work/ports"
    # Every part is told every address before any starts.
    for i in "${!roles[@]}"; do export "CONDUIT_SERVICES__${roles[$i]^^}=http://127.0.0.1:${ports[$i]}"; done
    for role in "${roles[@]}"; do start "$role"; done
    retry=
    for role in "${roles[@]}"; do
        rc=0; await_listening "$role" || rc=$?
        if [ "$rc" = 2 ] && [ "$base" = auto ] && [ "$attempt" -lt 5 ]; then retry=1; break; fi
        if [ "$rc" != 0 ]; then [ "$rc" = 2 ] && echo "split-up.sh: $role: $(tail -1 "$work/$role.log")" >&2; fail; fi
        echo "$role $url" >> "$work/ports"
    done
    [ -z "$retry" ] && break
    echo "split-up.sh: $role: $(tail -1 "$work/$role.log"); starting again on new ports" >&2
    "$here/scripts/split-down.sh" "$work"
done

start edge
rc=0; await_listening edge || rc=$?
if [ "$rc" = 2 ]; then echo "split-up.sh: edge: $(tail -1 "$work/edge.log")" >&2; fail 3; fi
[ "$rc" = 0 ] || fail
edge_url="$url"
echo "edge $edge_url" >> "$work/ports"

# With [global.tls] the edge answers HTTPS with a certificate for the server's name, not for 127.0.0.1, so this
# probe of our own just-started edge (is it proxying yet?) does not check it: -k. It decides no trust; clients do.
probe=(curl -fsS)
[[ "$edge_url" == https://* ]] && probe+=(-k)
deadline=$((SECONDS + 60))
until "${probe[@]}" "$edge_url/_matrix/client/versions" > /dev/null 2>&1; do
    while read -r pid role; do
        kill -0 "$pid" 2> /dev/null || { echo "split-up.sh: $role exited early:" >&2; tail -20 "$work/$role.log" >&2; fail; }
    done < "$work/pids"
    [ $SECONDS -lt $deadline ] || { echo "split-up.sh: the edge did not answer within 60 s" >&2; fail; }
    sleep 0.2
done
echo "split-up.sh: edge on $edge_url, services on ports ${ports[*]}, addresses in $work/ports, pids in $work/pids" >&2
echo "$edge_url"
