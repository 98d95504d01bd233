#!/usr/bin/env bash
# Publishes the AOT probe once per image library (Native AOT, linux-x64), runs each on the benchmark's 2000x1500 JPEG
# and prints a markdown table. Output and intermediate files go under /tmp/imagelibbench-aot, never into the repo.
# Needs the inputs: run the benchmark once first (or: dotnet <ImageLibBench.dll> --gen).
set -uo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
work="${IMAGELIBBENCH_AOT:-/tmp/imagelibbench-aot}"
input="${1:-/tmp/imagelibbench/photo-2000x1500.jpg}"
[ -f "$input" ] || { echo "run-aot.sh: $input missing (run the benchmark with --gen first)" >&2; exit 1; }
mkdir -p "$work"
echo "| library | publish | AOT/trim warnings | thumbnail 320x240 ok | executable | native libs beside it | RSS before load | RSS after load (idle) |"
echo "|---|---|---:|---|---:|---|---:|---:|"
for lib in ${LIBS:-skia imagesharp netvips magick stb}; do
    out="$work/$lib"
    log="$work/$lib.log"
    rm -rf "$out"
    # A separate artifacts folder per library: the probe's package references differ per library.
    if CONDUIT_ARTIFACTS="$work/artifacts-$lib" dotnet publish "$here/AotProbe.csproj" -c Release -r linux-x64 \
        -p:PublishAot=true -p:Lib="$lib" -o "$out" -nologo > "$log" 2>&1; then pub=ok; else pub=FAILED; fi
    warns=$(grep -oE 'warning IL[0-9]+[^[]*' "$log" | sort -u)
    nwarn=$(printf '%s' "$warns" | grep -c . || true)
    codes=$(printf '%s\n' "$warns" | grep -oE 'IL[0-9]+' | sort | uniq -c | awk '{printf "%s%s x%s", (NR>1?", ":""), $2, $1}')
    exe="$out/AotProbe"
    size="-"; natives="-"; ok="-"; before="-"; idle="-"
    if [ -x "$exe" ]; then
        size=$(stat -c %s "$exe" | awk '{printf "%.1f MB", $1/1048576}')
        natives=$(find "$out" -maxdepth 1 \( -name '*.so' -o -name '*.so.*' \) -printf '%f %s\n' | awk '{printf "%s%s %.1f MB", (NR>1?", ":""), $1, $2/1048576}')
        [ -n "$natives" ] || natives="none"
        if res=$("$exe" "$input" "$work/$lib-thumb.jpg" 2> "$work/$lib.run.err"); then
            read -r _ b i ow oh ob <<< "$res"
            ok="yes (${ow}x${oh}, $ob bytes)"
            before="$(( b / 1024 )) MB"; idle="$(( i / 1024 )) MB"
        else
            ok="NO: $(head -c 160 "$work/$lib.run.err" | tr '\n' ' ')"
        fi
    fi
    echo "| $lib | $pub | $nwarn${codes:+ ($codes)} | $ok | $size | $natives | $before | $idle |"
    [ -n "$warns" ] && printf '%s\n' "$warns" > "$work/$lib.warnings"
done
echo
echo "Logs and warnings: $work/<lib>.log, $work/<lib>.warnings"
