#!/usr/bin/env bash
# Installs the build into two temporary prefixes and checks what a user gets
# from each: the binaries, libpvm3.so.3 (SONAME, .so link), pvm3.h, pvm3.pc
# and the CMake package. A program built with each prefix's pkg-config and
# with find_package(mpvm) must compile against that prefix's pvm3.h and load
# that prefix's libpvm3 (not Debian's /usr/include/pvm3.h and libpvm3, which
# may be installed too); then the installed prun runs it.
#   check_install.sh BUILD_DIR
set -euo pipefail
build=$1
here=$(cd "$(dirname "$0")" && pwd)
top=$(mktemp -d)
trap 'rm -rf "$top"' EXIT
fail() { echo "FAIL: $*"; exit 1; }

# The libpvm3 that `prog` loads, resolved.
loaded_lib() { ldd "$1" | awk '/libpvm3\.so/ {print $3}' | xargs -r realpath; }

check_prefix() {
  local prefix=$1
  cmake --install "$build" --prefix "$prefix" >/dev/null
  for f in bin/mpvmd bin/prun bin/mpvm include/pvm3.h include/mpvm.h; do
    [ -e "$prefix/$f" ] || fail "$f not installed in $prefix"
  done
  local lib pc
  lib=$(dirname "$(find "$prefix" -name libpvm3.so.3 | head -1)")
  [ -n "$lib" ] || fail "libpvm3.so.3 not installed"
  [ -L "$lib/libpvm3.so" ] || fail "libpvm3.so link missing"
  objdump -p "$lib/libpvm3.so.3" | grep -q "SONAME *libpvm3.so.3" || fail "wrong SONAME"
  pc=$(find "$prefix" -name pvm3.pc | head -1)
  [ -n "$pc" ] || fail "pvm3.pc not installed"
  local want_lib want_hdr
  want_lib=$(realpath "$lib/libpvm3.so.3")
  want_hdr=$(realpath "$prefix/include/pvm3.h")

  # pkg-config: the README's way to build a PVM program.
  PKG_CONFIG_PATH=$(dirname "$pc") pkg-config --cflags --libs pvm3 > "$prefix/flags"
  # shellcheck disable=SC2046
  cc -o "$prefix/hello_pc" "$here/consumer/hello.c" $(cat "$prefix/flags") -MD -MF "$prefix/hello.d"
  grep -q "$want_hdr" <(tr ' ' '\n' < "$prefix/hello.d" | xargs -r realpath 2>/dev/null) \
    || fail "pkg-config build in $prefix did not use $want_hdr ($(cat "$prefix/flags"))"
  [ "$(loaded_lib "$prefix/hello_pc")" = "$want_lib" ] \
    || fail "pkg-config build in $prefix loads $(loaded_lib "$prefix/hello_pc"), not $want_lib"
  "$prefix/hello_pc" | grep -q "PVM 3.4.6, PvmNoParent=-23" || fail "pkg-config build does not run"

  # find_package(mpvm).
  cmake -S "$here/consumer" -B "$prefix/consumer-build" -DCMAKE_PREFIX_PATH="$prefix" >/dev/null
  cmake --build "$prefix/consumer-build" >/dev/null
  [ "$(loaded_lib "$prefix/consumer-build/hello_mpvm")" = "$want_lib" ] \
    || fail "find_package build in $prefix loads the wrong libpvm3"
  "$prefix/consumer-build/hello_mpvm" | grep -q "PVM 3.4.6" || fail "find_package build does not run"

  # The installed prun and daemon work together (embedded VM).
  MPVM_RUNDIR="$prefix/run" "$prefix/bin/prun" -n 2 "$prefix/hello_pc" | grep -c "PVM 3.4.6" \
    | grep -q 2 || fail "installed prun in $prefix cannot run a program"
}

check_prefix "$top/first"
check_prefix "$top/second/deeper"
echo "ok   install layout, pkg-config, find_package(mpvm) and installed prun, for two prefixes"
echo "1 passed, 0 failed"
