#!/usr/bin/env bash
# Builds the Native AOT `conduit` (about 26 MB; settles near 28 MB of RSS on RocksDB, 38 MB after use, instead of ~85 and ~95 MB under the JIT; README).
#   scripts/publish-aot.sh [OUTDIR]      (default: artifacts/aot)
# Needs clang and zlib's headers for the native link; installs them from Debian when missing.
set -euo pipefail
cd "$(dirname "$0")/.."
out="${1:-artifacts/aot}"
missing=()
command -v clang > /dev/null || missing+=(clang)
[ -e /usr/include/zlib.h ] || missing+=(zlib1g-dev)
if [ ${#missing[@]} -gt 0 ]; then
    echo "publish-aot.sh: installing ${missing[*]}" >&2
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" > /dev/null
fi
dotnet publish services/edge -c Release -r linux-x64 -p:PublishAot=true -nologo -v q -clp:ErrorsOnly -o "$out"
echo "publish-aot.sh: $out/conduit" >&2
