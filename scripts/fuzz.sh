#!/usr/bin/env bash
# Runs every libFuzzer target for a bounded time, starting from the seed corpus
# in fuzz/corpus/. Fails if any target finds a crash, leak or UB.
#   scripts/fuzz.sh BUILD_DIR [SECONDS_PER_TARGET]
set -euo pipefail
build=${1:?usage: fuzz.sh BUILD_DIR [SECONDS]}
secs=${2:-30}
root=$(cd "$(dirname "$0")/.." && pwd)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
fail=0
fuzzers=(daemon_stream_fuzz control_fuzz message_fuzz handover_fuzz image_fuzz)
for f in "${fuzzers[@]}"; do
  bin="$build/bin/$f"
  [ -x "$bin" ] || { echo "fuzz: $bin is missing (build the fuzz preset)"; exit 1; }
  mkdir -p "$work/$f"
  seeds="$root/fuzz/corpus/$f"
  echo "fuzz: $f for ${secs}s"
  if ! "$bin" -max_total_time="$secs" -max_len=65536 -print_final_stats=1 \
       -artifact_prefix="$work/" "$work/$f" ${seeds:+$([ -d "$seeds" ] && echo "$seeds")} \
       > "$work/$f.log" 2>&1; then
    echo "fuzz: $f FAILED"; tail -40 "$work/$f.log"; fail=$((fail + 1))
  else
    grep -E "stat::number_of_executed_units|Done" "$work/$f.log" | tail -2
  fi
done
n=${#fuzzers[@]}
echo "fuzz: $((n - fail)) passed, $fail failed"
exit $fail
