#!/usr/bin/env bash
# Benchmarks a build of the server with the load generator (tests/Conduit.LoadGen) and prints one table.
#
#   scripts/bench.sh [--scenarios LIST] [--modes LIST] [--quick] [--before BUILD --after BUILD] [--no-build] [-- LOADGEN ARGS]
#
# For each mode (aio: one all-in-one process; split: the six processes of split-up.sh) and each scenario (saturate,
# one-room, rooms-parallel, big-sync, idle; mixed, e2ee, media, lazy-sync, sync-load, sliding-sync, federation and
# appservice on request) it starts a fresh server with a fresh database on free loopback ports, runs the scenario, stops
# the server. With --before and --after it runs each scenario on both builds back to back, so machine load touches both
# alike, and prints them side by side.
# federation starts its own servers from the build (the load generator does, all-in-one only: it is skipped in split);
# so does appservice (after its appservice listener, whose port the server's registration names), in either mode.
#
# A BUILD is a conduit.dll (run with dotnet) or a Native AOT executable (publish-aot.sh). Without --before/--after:
# CONDUIT_BIN, else CONDUIT_DLL, else this repo's Release build. CONDUIT_PORT fixes the (edge) port instead of a random
# one in 20000-32000; CONDUIT_DATABASE_PATH is where the per-run databases go (default: the work dir); BENCH_WORKDIR
# keeps logs and reports somewhere else than a new /tmp/conduit-bench.* directory. Rate limiting is turned off with
# CONDUIT_RATE_LIMITS__ENABLED=false. The load generator is always this repo's, built here unless --no-build.
set -uo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
artifacts="${CONDUIT_ARTIFACTS:-$root/artifacts}"

usage() { sed -n '2,18p' "$0" | sed 's/^# \{0,1\}//'; exit "${1:-0}"; }

scenarios="saturate,one-room,rooms-parallel,big-sync,idle"
modes="aio,split"
quick=0
build_loadgen=1
before=""
after=""
extra=()
while [ $# -gt 0 ]; do
    case "$1" in
        --scenarios) scenarios="${2:?--scenarios needs a list}"; shift 2 ;;
        --modes) modes="${2:?--modes needs a list}"; shift 2 ;;
        --quick) quick=1; shift ;;
        --before) before="${2:?--before needs a build}"; shift 2 ;;
        --after) after="${2:?--after needs a build}"; shift 2 ;;
        --no-build) build_loadgen=0; shift ;;
        -h|--help) usage 0 ;;
        --) shift; extra=("$@"); break ;;
        *) echo "bench.sh: unknown argument '$1'" >&2; usage 2 ;;
    esac
done
IFS=, read -r -a scenario_list <<< "$scenarios"
IFS=, read -r -a mode_list <<< "$modes"
for s in "${scenario_list[@]}"; do
    case "$s" in saturate|one-room|rooms-parallel|big-sync|idle|mixed|e2ee|media|lazy-sync|sync-load|sliding-sync|federation|appservice) ;; *) echo "bench.sh: unknown scenario '$s'" >&2; exit 2 ;; esac
done
for m in "${mode_list[@]}"; do
    case "$m" in aio|split) ;; *) echo "bench.sh: unknown mode '$m' (aio or split)" >&2; exit 2 ;; esac
done

# Builds: label and path, in run order.
labels=()
declare -A build_of
if [ -n "$before$after" ]; then
    [ -n "$before" ] && [ -n "$after" ] || { echo "bench.sh: --before and --after go together" >&2; exit 2; }
    labels=(before after)
    build_of[before]="$before"
    build_of[after]="$after"
else
    labels=(build)
    build_of[build]="${CONDUIT_BIN:-${CONDUIT_DLL:-$artifacts/bin/Conduit.Edge/release/conduit.dll}}"
fi
for l in "${labels[@]}"; do
    b="${build_of[$l]}"
    case "$b" in
        *.dll) [ -f "$b" ] || { echo "bench.sh: $l build $b not found (dotnet build Conduit.Services.sln -c Release)" >&2; exit 2; } ;;
        *) [ -x "$b" ] || { echo "bench.sh: $l build $b is not an executable" >&2; exit 2; } ;;
    esac
    build_of[$l]="$(cd "$(dirname "$b")" && pwd)/$(basename "$b")"
done

if [ "$build_loadgen" = 1 ]; then
    echo "bench.sh: building the load generator" >&2
    dotnet build "$root/tests/Conduit.LoadGen" -c Release -nologo -v q -clp:ErrorsOnly > /dev/null || { echo "bench.sh: load generator build failed" >&2; exit 1; }
fi
loadgen="$artifacts/bin/Conduit.LoadGen/release/Conduit.LoadGen.dll"
[ -f "$loadgen" ] || { echo "bench.sh: $loadgen not found" >&2; exit 1; }

work="${BENCH_WORKDIR:-$(mktemp -d /tmp/conduit-bench.XXXXXX)}"
mkdir -p "$work"
work="$(cd "$work" && pwd)"
dbroot="${CONDUIT_DATABASE_PATH:-$work}"
mkdir -p "$dbroot"

# The current run's extra server environment (scenario_env).
run_env=()
# What is running now, so that an interrupted run stops it.
server_pid=""
split_dir=""
cleanup() {
    if [ -n "$server_pid" ]; then
        kill "$server_pid" 2> /dev/null
        for _ in $(seq 1 100); do kill -0 "$server_pid" 2> /dev/null || break; sleep 0.1; done
        kill -9 "$server_pid" 2> /dev/null
        wait "$server_pid" 2> /dev/null
    fi
    [ -n "$split_dir" ] && "${split_scripts:-$root/scripts}/split-down.sh" "$split_dir"
    server_pid=""
    split_dir=""
}
trap 'cleanup; exit 130' INT TERM
trap cleanup EXIT

random_port() { echo $((20000 + RANDOM % 12000)); }
port_free() { ! (exec 3<> "/dev/tcp/127.0.0.1/$1") 2> /dev/null; }

# The server's own environment: a fresh database, no rate limiting, and none of this script's CONDUIT_* inputs
# (every CONDUIT_* variable is a config override, and unknown keys are logged).
server_env=(env -u CONDUIT_DLL -u CONDUIT_BIN -u CONDUIT_ARTIFACTS -u CONDUIT_PORT -u CONDUIT_DATABASE_PATH
    CONDUIT_RATE_LIMITS__ENABLED=false CONDUIT_ADDRESS=127.0.0.1)

# start_aio BUILD RUNDIR DBDIR: sets server_pid, url, pids_arg.
start_aio() {
    local build="$1" dir="$2" db="$3" port cmd
    case "$build" in *.dll) cmd=(dotnet "$build") ;; *) cmd=("$build") ;; esac
    for _ in 1 2 3 4 5; do
        port="${CONDUIT_PORT:-$(random_port)}"
        port_free "$port" || { [ -n "${CONDUIT_PORT:-}" ] && { echo "bench.sh: CONDUIT_PORT $port is taken" >&2; return 1; }; continue; }
        rm -rf "$db"
        mkdir -p "$db"
        (cd "$dir" && exec "${server_env[@]}" "${run_env[@]}" CONDUIT_PORT="$port" CONDUIT_DATABASE_PATH="$db" "${cmd[@]}") > "$dir/server.log" 2>&1 &
        server_pid=$!
        for _ in $(seq 1 300); do
            if curl -fsS "http://127.0.0.1:$port/_matrix/client/versions" > /dev/null 2>&1; then
                sleep 0.3
                # Still ours: a server that lost the port to another process would have exited by now.
                if kill -0 "$server_pid" 2> /dev/null; then
                    url="http://127.0.0.1:$port"
                    pids_arg="$server_pid:conduit"
                    return 0
                fi
                break
            fi
            kill -0 "$server_pid" 2> /dev/null || break
            sleep 0.2
        done
        wait "$server_pid" 2> /dev/null
        server_pid=""
        grep -qi "address already in use" "$dir/server.log" && [ -z "${CONDUIT_PORT:-}" ] && continue
        echo "bench.sh: the server did not start; the end of $dir/server.log:" >&2
        tail -5 "$dir/server.log" >&2
        return 1
    done
    echo "bench.sh: no free port found" >&2
    return 1
}

# The scripts/ folder of the checkout a build comes from (its split-up.sh knows how that build reports readiness),
# else this repository's.
scripts_of() {
    local d
    d="$(cd "$(dirname "$1")" 2> /dev/null && pwd)"
    while [ -n "$d" ] && [ "$d" != / ]; do
        [ -f "$d/Conduit.Services.sln" ] && [ -x "$d/scripts/split-up.sh" -o -f "$d/scripts/split-up.sh" ] && { echo "$d/scripts"; return; }
        d="$(dirname "$d")"
    done
    echo "$root/scripts"
}

# start_split BUILD RUNDIR DBDIR: split-up.sh with its work dir (databases and logs) in DBDIR; sets split_dir, url, pids_arg.
start_split() {
    local build="$1" dir="$2" db="$3" edge base p ok bin_env scripts
    scripts="$(scripts_of "$build")"
    split_scripts="$scripts"
    case "$build" in *.dll) bin_env=(CONDUIT_DLL="$build") ;; *) bin_env=(CONDUIT_BIN="$build") ;; esac
    for _ in 1 2 3 4 5; do
        edge="${CONDUIT_PORT:-$(random_port)}"
        base=$(random_port)
        ok=1
        for p in "$edge" $(seq "$base" $((base + 4))); do port_free "$p" || ok=0; done
        [ "$edge" -ge "$base" ] && [ "$edge" -le $((base + 4)) ] && ok=0
        [ "$ok" = 1 ] || continue
        rm -rf "$db"
        split_dir="$db"
        if env -u CONDUIT_DLL -u CONDUIT_BIN -u CONDUIT_PORT -u CONDUIT_DATABASE_PATH "${bin_env[@]}" CONDUIT_RATE_LIMITS__ENABLED=false \
            "${run_env[@]}" "$scripts/split-up.sh" "$db" "$edge" "$base" > "$dir/split-up.log" 2>&1; then
            url="http://127.0.0.1:$edge"
            pids_arg="$(awk '{ printf "%s%s:%s", sep, $1, $2; sep = "," }' "$db/pids")"
            return 0
        fi
        split_dir=""
        grep -qi "address already in use" "$dir/split-up.log" "$db"/*.log 2> /dev/null && continue
        echo "bench.sh: split-up.sh failed; see $dir/split-up.log:" >&2
        tail -5 "$dir/split-up.log" >&2
        cp "$db"/*.log "$dir/" 2> /dev/null
        return 1
    done
    echo "bench.sh: no free ports found" >&2
    return 1
}

scenario_args() {
    case "$1" in
        saturate) if [ "$quick" = 1 ]; then echo "--seconds 10 --drain-seconds 3"; else echo "--seconds 20 --drain-seconds 3"; fi ;;
        mixed) if [ "$quick" = 1 ]; then echo "--seconds 10"; else echo "--seconds 30"; fi ;;
        one-room|rooms-parallel) if [ "$quick" = 1 ]; then echo "--events 500 --warmup 200 --repeat 1"; else echo "--events 500"; fi ;;
        big-sync) if [ "$quick" = 1 ]; then echo "--rooms 500"; else echo "--rooms 5000"; fi ;;
        idle) echo "" ;;
        e2ee) if [ "$quick" = 1 ]; then echo "--one-time-keys 1000 --events 1000 --warmup 200 --repeat 1"; else echo ""; fi ;;
        media) if [ "$quick" = 1 ]; then echo "--files 300 --downloads 1000 --images 40 --warm-passes 5 --big-mb 50 --warmup 50 --repeat 1"; else echo ""; fi ;;
        lazy-sync) if [ "$quick" = 1 ]; then echo "--rooms 50 --users 50 --repeat 3"; else echo ""; fi ;;
        sync-load) if [ "$quick" = 1 ]; then echo "--seconds 10"; else echo ""; fi ;;
        sliding-sync) if [ "$quick" = 1 ]; then echo "--rooms 200 --events 100 --repeat 3"; else echo ""; fi ;;
        appservice) if [ "$quick" = 1 ]; then echo "--events 1000 --warmup 100"; else echo "--events 2000"; fi ;;
        federation) if [ "$quick" = 1 ]; then echo "--events 500 --warmup 100 --peers 5 --peer-events 300 --users 200 --room-events 2000"; else echo ""; fi ;;
    esac
}

# Config the scenario needs on top of the defaults, as CONDUIT_* overrides for every server process: media uploads
# 200 MB (--big-mb) in one request, over the default max_request_size of 20 MB.
scenario_env() {
    case "$1" in
        media) echo "CONDUIT_MAX_REQUEST_SIZE=250000000" ;;
    esac
}

notes=()
# Not worth a note: the rate_limits switch is unknown to builds without rate limiting, and split-up.sh passes its
# CONDUIT_DLL/CONDUIT_BIN on to the servers, which read every CONDUIT_* variable as a config key.
expected_warning="unknown config key 'global\\.(rate_limits|dll|bin)' is ignored"
# run MODE SCENARIO LABEL: one fresh server, one load generator run; results in $work/MODE.SCENARIO.LABEL/.
run() {
    local mode="$1" scenario="$2" label="$3" name="$1.$2.$3"
    local dir="$work/$name" db="$dbroot/db-$name" rc t0
    mkdir -p "$dir"
    # shellcheck disable=SC2207 # scenario_env is a list of words
    run_env=($(scenario_env "$scenario"))
    t0=$SECONDS
    echo "bench.sh: $mode $scenario on $label (${build_of[$label]})" >&2
    if [ "$scenario" = appservice ]; then
        # The load generator starts the appservice's listener, then its own server naming it (all-in-one, or split
        # with the build's split-up.sh), config, logs and registration in the run's directory.
        local from to
        from=$(date +%H:%M:%S)
        # shellcheck disable=SC2046 # scenario_args is a list of words
        dotnet "$loadgen" --scenario appservice --mode "$mode" --conduit "${build_of[$label]}" \
            --split-up "$(scripts_of "${build_of[$label]}")/split-up.sh" --work-dir "$dir" --results "$dir/results.tsv" \
            $(scenario_args "$scenario") "${extra[@]}" > "$dir/report.txt" 2> "$dir/loadgen.log"
        rc=$?
        to=$(date +%H:%M:%S)
        # The window on the server's logs: from the end of the setup (split parts log a reconnect or two while they
        # find each other) to the load generator stopping the server (they log their peers going away).
        local at
        at=$(sed -n 's/^\[\([0-9:]*\)\.[0-9]*\] set up .*/\1/p' "$dir/loadgen.log" | head -1); [ -n "$at" ] && from="$at"
        at=$(sed -n 's/^\[\([0-9:]*\)\.[0-9]*\] stopping the server.*/\1/p' "$dir/loadgen.log" | tail -1); [ -n "$at" ] && to="$at"
        check_run "$name" "$dir" "$rc" "$from" "$to"
        echo "bench.sh:   done in $((SECONDS - t0)) s" >&2
        return
    fi
    if [ "$scenario" = federation ]; then
        # The load generator starts its own servers (all-in-one, HTTPS, a CA of its own) from the build, their
        # configs, databases and logs in the run's directory; the logs stay for the checks below.
        if [ "$mode" != aio ]; then notes+=("$name: federation runs all-in-one servers only; skipped"); return; fi
        local from to
        from=$(date +%H:%M:%S)
        # shellcheck disable=SC2046 # scenario_args is a list of words
        dotnet "$loadgen" --scenario federation --conduit "${build_of[$label]}" --work-dir "$dir" --results "$dir/results.tsv" \
            $(scenario_args "$scenario") "${extra[@]}" > "$dir/report.txt" 2> "$dir/loadgen.log"
        rc=$?
        to=$(date +%H:%M:%S)
        check_run "$name" "$dir" "$rc" "$from" "$to"
        echo "bench.sh:   done in $((SECONDS - t0)) s" >&2
        return
    fi
    if [ "$mode" = aio ]; then start_aio "${build_of[$label]}" "$dir" "$db/db" || { notes+=("$name: server did not start"); return; }
    else start_split "${build_of[$label]}" "$dir" "$db" || { notes+=("$name: split deployment did not start"); return; }
    fi
    local from to
    # A second's rest: split parts log a reconnect or two while they find each other, and the log window below starts
    # at the next second.
    sleep 1
    from=$(date +%H:%M:%S)
    # shellcheck disable=SC2046 # scenario_args is a list of words
    dotnet "$loadgen" --scenario "$scenario" --url "$url" --pids "$pids_arg" --results "$dir/results.tsv" \
        $(scenario_args "$scenario") "${extra[@]}" > "$dir/report.txt" 2> "$dir/loadgen.log"
    rc=$?
    to=$(date +%H:%M:%S)
    cleanup
    [ "$mode" = split ] && cp "$db"/*.log "$dir/" 2> /dev/null
    rm -rf "$db"
    check_run "$name" "$dir" "$rc" "$from" "$to"
    echo "bench.sh:   done in $((SECONDS - t0)) s" >&2
}

# check_run NAME DIR RC FROM TO: notes on a finished run (exit code, failed requests, what the server logged).
check_run() {
    local name="$1" dir="$2" rc="$3" from="$4" to="$5"
    [ "$rc" = 0 ] || notes+=("$name: load generator exit code $rc (see $dir/report.txt and loadgen.log)")
    local errors
    errors=$(awk -F'\t' '$1 == "errors" { print $2 }' "$dir/results.tsv" 2> /dev/null)
    [ -n "$errors" ] && [ "$errors" != 0 ] && notes+=("$name: $errors failed requests: $(sed -n '/^errors:/,$p' "$dir/report.txt" | tail -n +2 | head -3 | tr -s ' ' | tr '\n' ';')")
    # Server-side problems while the load generator ran (split parts log reconnects while their peers start and stop):
    # failures, and warnings other than the expected ones.
    local during fails warns
    during=$(cat "$dir"/*.log 2> /dev/null | awk -v from="$from" -v to="$to" '$1 ~ /^[0-9][0-9]:[0-9][0-9]:[0-9][0-9]$/ && $1 >= from && $1 <= to')
    fails=$(grep -cE ' (fail|crit): ' <<< "$during")
    warns=$(grep -E ' warn: ' <<< "$during" | grep -vcE "$expected_warning")
    [ "$fails" != 0 ] && notes+=("$name: server logged $fails fail/crit lines, e.g. $(grep -m1 -E ' (fail|crit): ' <<< "$during" | cut -c1-200)")
    [ "$warns" != 0 ] && notes+=("$name: server logged $warns warnings, e.g. $(grep -E ' warn: ' <<< "$during" | grep -vE "$expected_warning" | head -1 | cut -c1-200)")
}

start_time=$SECONDS
for mode in "${mode_list[@]}"; do
    for scenario in "${scenario_list[@]}"; do
        for label in "${labels[@]}"; do run "$mode" "$scenario" "$label"; done
    done
done
elapsed=$((SECONDS - start_time))

# ---------------- the table: one row per figure, one column per mode and build ----------------
column_name() { # MODE LABEL
    if [ ${#labels[@]} -gt 1 ]; then echo "$1 $2"; elif [ "$1" = aio ]; then echo "all-in-one"; else echo "split"; fi
}
value() { awk -F'\t' -v k="$2" '$1 == k { print $2; exit }' "$work/$1/results.tsv" 2> /dev/null; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (a ~ /^[0-9.]+$/ && b ~ /^[0-9.]+$/ && a + 0 > 0) printf "%.2f", b / a; else print "" }'; }

echo
echo "== Conduit bench ($(date '+%Y-%m-%d %H:%M'), $(nproc) cores, load average $(cut -d' ' -f1-3 /proc/loadavg), ${elapsed} s) =="
for l in "${labels[@]}"; do echo "$l: ${build_of[$l]}"; done
header=$(printf '%-15s %-34s' scenario figure)
for mode in "${mode_list[@]}"; do
    for l in "${labels[@]}"; do header+=$(printf ' %12s' "$(column_name "$mode" "$l")"); done
    [ ${#labels[@]} -gt 1 ] && header+=$(printf ' %7s' "ratio")
done
echo "$header"
for scenario in "${scenario_list[@]}"; do
    # Figures in the order the load generator wrote them, from the first run of this scenario that has results.
    figures=""
    for mode in "${mode_list[@]}"; do
        for l in "${labels[@]}"; do
            [ -z "$figures" ] && [ -f "$work/$mode.$scenario.$l/results.tsv" ] && figures=$(cut -f1 "$work/$mode.$scenario.$l/results.tsv")
        done
    done
    [ -n "$figures" ] || { printf '%-15s %s\n' "$scenario" "no results"; continue; }
    while IFS= read -r fig; do
        row=$(printf '%-15s %-34s' "$scenario" "$fig")
        for mode in "${mode_list[@]}"; do
            for l in "${labels[@]}"; do
                v=$(value "$mode.$scenario.$l" "$fig")
                row+=$(printf ' %12s' "${v:--}")
            done
            if [ ${#labels[@]} -gt 1 ]; then
                row+=$(printf ' %7s' "$(ratio "$(value "$mode.$scenario.before" "$fig")" "$(value "$mode.$scenario.after" "$fig")")")
            fi
        done
        echo "$row"
    done <<< "$figures"
done
[ ${#labels[@]} -gt 1 ] && echo "(ratio: after / before)"
if [ ${#notes[@]} -gt 0 ]; then
    echo
    echo "notes:"
    for n in "${notes[@]}"; do echo "  $n"; done
fi
echo
echo "reports and logs: $work (per run: report.txt, results.tsv, loadgen.log, server logs)"
