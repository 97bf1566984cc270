#!/usr/bin/env bash
# README command 2: install what is missing, build, and pass the test suite:
# the dev build's tests, the release build (the README's) and its install,
# the same tests under AddressSanitizer +
# UndefinedBehaviorSanitizer, and the fuzz targets for a bounded time.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
jobs=$(nproc)

echo "== dev build and tests =="
cmake --preset dev >/dev/null
cmake --build --preset dev -j "$jobs"
ctest --preset dev

echo "== release build (the README's build) and its install =="
cmake --preset release >/dev/null
cmake --build --preset release -j "$jobs"
bash tests/install/check_install.sh build/release

echo "== AddressSanitizer + UndefinedBehaviorSanitizer build and tests =="
cmake --preset asan >/dev/null
cmake --build --preset asan -j "$jobs"
ctest --preset asan

echo "== fuzzing the decoders (bounded) =="
cmake --preset fuzz >/dev/null
cmake --build --preset fuzz -j "$jobs" --target fuzzers
bash scripts/fuzz.sh build/fuzz "${MPVM_FUZZ_SECONDS:-30}"
echo "all test stages passed"
