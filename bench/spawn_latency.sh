#!/usr/bin/env bash
# Remote spawn latency: a VM with an emulated host, 100 pvm_spawn calls to the
# local host and to the other host, median and 90th percentile in ms.
#   bench/spawn_latency.sh BUILD_DIR [N]
set -euo pipefail
build=$(cd "$1" && pwd)
n=${2:-100}
here=$(cd "$(dirname "$0")" && pwd)
work=$(mktemp -d)
export MPVM_RUNDIR=$work/run
trap '"$build/bin/mpvm" halt >/dev/null 2>&1 || true; rm -rf "$work"' EXIT
cc -O2 -I"$here/../pvmcompat/include" -o "$work/spawn_latency" "$here/spawn_latency.c" \
  -L"$build/lib" -Wl,-rpath,"$build/lib" -lpvm3
"$build/bin/mpvm" conf >/dev/null
"$build/bin/mpvm" add remote1 --local >/dev/null
self=$("$build/bin/mpvm" conf | awk 'NR==3{print $1}')
echo "| target host | calls | median ms | p90 ms |"
echo "|---|---:|---:|---:|"
for h in "$self" remote1; do
  "$work/spawn_latency" "$h" "$n" "$build/bin/mpvm_test_child" |
    awk '{printf "| %s | %s | %s | %s |\n", ($1=="remote1" ? "other host (remote1)" : "same host (" $1 ")"), $2, $3, $4}'
done
