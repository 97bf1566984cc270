#!/usr/bin/env bash
# Fails if any tracked C/C++ source differs from .clang-format (Google style).
set -euo pipefail
cd "$(dirname "$0")/.."
command -v clang-format >/dev/null || { echo "SKIP: clang-format not installed"; exit 77; }
bad=()
while IFS= read -r f; do
  clang-format --dry-run --Werror "$f" >/dev/null 2>&1 || bad+=("$f")
done < <(git ls-files '*.cc' '*.h' '*.c' 2>/dev/null || find . -name '*.cc' -o -name '*.h' -o -name '*.c')
if [ ${#bad[@]} -gt 0 ]; then
  echo "not clang-formatted (run: clang-format -i FILE): ${bad[*]}"
  exit 1
fi
# std::expected is spelled mpvm::expected outside error.h, so the clang
# (libFuzzer) build, which uses tl::expected, keeps compiling.
if git grep -n -E 'std::(un)?expected' -- '*.cc' '*.h' ':!runtime/mpvm/error.h' 2>/dev/null; then
  echo "use mpvm::expected / mpvm::unexpected (see runtime/mpvm/error.h)"
  exit 1
fi
echo "ok   every C/C++ source is clang-formatted and uses mpvm::expected"
