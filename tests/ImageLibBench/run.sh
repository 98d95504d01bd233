#!/usr/bin/env bash
# Builds and runs the whole benchmark: thumbnails/memory/headers, media blobs, Native AOT probes.
# Results are printed and also written to /tmp/imagelibbench/results.md. Takes about 5 minutes on 2 cores.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
out="${TMPDIR:-/tmp}/imagelibbench"
mkdir -p "$out"
dotnet build "$here/ImageLibBench.csproj" -c Release -nologo -v q -clp:ErrorsOnly
dll="${CONDUIT_ARTIFACTS:-$root/artifacts}/bin/ImageLibBench/release/ImageLibBench.dll"
{
    dotnet "$dll" --iters "${ITERS:-21}"
    echo
    dotnet "$dll" --blobs --rounds "${ROUNDS:-3}"
    echo
    echo "## Native AOT (one publish per library)"
    echo
    bash "$here/aot/run-aot.sh"
} | tee "$out/results.md"
