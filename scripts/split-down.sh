#!/usr/bin/env bash
# Stops what split-up.sh started in WORKDIR.
set -uo pipefail
work="${1:?usage: split-down.sh WORKDIR}"
[ -f "$work/pids" ] || exit 0
while read -r pid _; do kill "$pid" 2> /dev/null; done < "$work/pids"
for _ in $(seq 1 50); do
    alive=0
    while read -r pid _; do kill -0 "$pid" 2> /dev/null && alive=1; done < "$work/pids"
    [ "$alive" = 0 ] && break
    sleep 0.1
done
while read -r pid _; do kill -9 "$pid" 2> /dev/null; done < "$work/pids"
rm -f "$work/pids"
