#!/usr/bin/env bash
# Installs the build into a temporary prefix and checks what a user gets:
# the binaries, libpvm3.so.3 (SONAME, .so link), pvm3.h, pvm3.pc and the CMake
# package; then builds a program both with pkg-config and with find_package
# and runs it, and runs prun from the prefix.
#   check_install.sh BUILD_DIR
set -euo pipefail
build=$1
here=$(cd "$(dirname "$0")" && pwd)
prefix=$(mktemp -d)
trap 'rm -rf "$prefix"' EXIT
cmake --install "$build" --prefix "$prefix" >/dev/null
fail() { echo "FAIL: $*"; exit 1; }
for f in bin/mpvmd bin/prun bin/mpvm include/pvm3.h include/mpvm.h; do
  [ -e "$prefix/$f" ] || fail "$f not installed"
done
lib=$(dirname "$(find "$prefix" -name libpvm3.so.3 | head -1)")
[ -n "$lib" ] || fail "libpvm3.so.3 not installed"
[ -L "$lib/libpvm3.so" ] || fail "libpvm3.so link missing"
objdump -p "$lib/libpvm3.so.3" | grep -q "SONAME *libpvm3.so.3" || fail "wrong SONAME"
pc=$(find "$prefix" -name pvm3.pc | head -1)
[ -n "$pc" ] || fail "pvm3.pc not installed"
export PKG_CONFIG_PATH=$(dirname "$pc")
cc -o "$prefix/hello_pc" "$here/consumer/hello.c" $(pkg-config --cflags --libs pvm3)
"$prefix/hello_pc" | grep -q "PVM 3.4.6, PvmNoParent=-23" || fail "pkg-config build does not run"
cmake -S "$here/consumer" -B "$prefix/consumer-build" -DCMAKE_PREFIX_PATH="$prefix" >/dev/null
cmake --build "$prefix/consumer-build" >/dev/null
"$prefix/consumer-build/hello_mpvm" | grep -q "PVM 3.4.6" || fail "find_package build does not run"
# The installed prun and daemon work together (embedded VM).
MPVM_RUNDIR="$prefix/run" "$prefix/bin/prun" -n 2 "$prefix/hello_pc" | grep -c "PVM 3.4.6" | grep -q 2 \
  || fail "installed prun cannot run a program"
echo "ok   install layout, pkg-config, find_package(mpvm) and installed prun"
echo "1 passed, 0 failed"
