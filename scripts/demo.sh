#!/usr/bin/env bash
# README command 1: install what is missing, build, and show what mpvm is
# for: the same plain PVM program on an emulated cluster of mixed speed (an
# embedded virtual machine; nothing needs to be running), with the balancer
# off (PVM's round-robin placement), then on. Prints both times and the
# moves, and draws the balanced run's timeline.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
cmake --preset dev >/dev/null
cmake --build --preset dev
B=build/dev/bin
HOSTS='a:600,b:600,c:200,d:200'
OUT=${MPVM_DEMO_DIR:-build/demo}
mkdir -p "$OUT"
echo
echo "== 8 tasks of examples/crunch.c (plain PVM) on 4 emulated hosts: $HOSTS =="
echo "   (speed 1000 is one CPU of this machine; a and b are 3 times as fast as c and d)"
for balance in off on; do
  echo
  echo "-- balancer $balance --"
  start=$(date +%s.%N)
  $B/prun --balance "$balance" --hosts "$HOSTS" --stdin none --trace "$OUT/balance-$balance.json" \
    -n 8 $B/crunch
  end=$(date +%s.%N)
  python3 -c "print('balancer $balance: the job took %.1f s' % ($end - $start))"
  $B/mpvm-timeline "$OUT/balance-$balance.json"
done
echo
echo "Open $OUT/balance-on.svg to see the tasks move (red arrows: the balancer's moves)."
