#!/usr/bin/env bash
# Installs, from Debian's archive, every package mpvm needs to build, test and
# benchmark. Idempotent: packages already present are skipped, and apt is not
# touched at all when nothing is missing.
set -euo pipefail

PACKAGES=(
  build-essential cmake ninja-build pkg-config git
  libzmq3-dev libsodium-dev
  libboost-serialization-dev libhwloc-dev
  libprotobuf-dev protobuf-compiler
  libcli11-dev libspdlog-dev libfmt-dev libexpected-dev nlohmann-json3-dev python3
  libgtest-dev libgmock-dev libbenchmark-dev
  clang-16 libclang-rt-16-dev clang-format
  openmpi-bin libopenmpi-dev
  pvm pvm-dev libpvm3 pvm-examples
  iproute2 procps psmisc openssh-server openssh-client
)

missing=()
for p in "${PACKAGES[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done

if [ ${#missing[@]} -eq 0 ]; then
  echo "setup: all ${#PACKAGES[@]} packages present"
  exit 0
fi

SUDO=""
if [ "$(id -u)" -ne 0 ]; then
  if command -v sudo >/dev/null; then SUDO=sudo; else
    echo "setup: missing packages (${missing[*]}) and not root; install them or run as root" >&2
    exit 1
  fi
fi
echo "setup: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -q
$SUDO apt-get install -y -q --no-install-recommends "${missing[@]}"
