#!/usr/bin/env bash
# README command 1: install what is missing, build, and run a prun demo on the
# embedded virtual machine (no VM needs to be running).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
cmake --preset dev >/dev/null
cmake --build --preset dev
echo
echo "== prun -n 8 ring: 8 tasks pass a token around a ring, on an embedded VM =="
build/dev/bin/prun -n 8 build/dev/bin/ring 3
