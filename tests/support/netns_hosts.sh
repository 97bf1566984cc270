#!/usr/bin/env bash
# netns_hosts.sh — run a command with K test hosts, each a Linux network
# namespace with its own IP address on a private bridge.
#
#   tests/support/netns_hosts.sh K [--sshd] -- COMMAND [ARGS...]
#
# Everything lives in a sandbox of the test's own: the script re-executes
# itself under `unshare --net --mount`, so the bridge, the namespaces, their
# addresses and the sshd's exist only inside it and vanish with it, even when
# the test fails or is killed. (It also deletes them on exit.) The machine's
# own network is never touched.
#
# The command sees:
#   MPVM_TEST_HOSTS    "h1=10.77.0.11 h2=10.77.0.12 ..." (empty when there are none)
#   MPVM_TEST_GATEWAY  the sandbox's own address on the bridge (10.77.0.1)
#   MPVM_TEST_NETNS    "yes", or why there are no namespaces (e.g. "not root")
# and with --sshd, an sshd in every namespace (port 22) that accepts a key
# made for this run, plus:
#   MPVM_RSH           the ssh command that logs in with that key
# Each sshd gives its sessions MPVM_RUNDIR=/tmp/mpvm-test-<run>-hN, so the
# daemons of different test hosts keep separate runtime directories, as they
# would on separate machines.
#
# Where namespaces cannot be made (not root, no unshare/ip), the command runs
# anyway, with MPVM_TEST_HOSTS empty and MPVM_TEST_NETNS saying why: tests
# then use several daemons on loopback and say so.
set -euo pipefail

usage() {
  echo "usage: $0 K [--sshd] -- COMMAND [ARGS...]" >&2
  exit 2
}
[ $# -ge 3 ] || usage
K=$1
shift
[[ "$K" =~ ^[0-9]+$ ]] && [ "$K" -ge 1 ] && [ "$K" -le 200 ] || {
  echo "$0: K must be 1..200, got '$K'" >&2
  exit 2
}
SSHD=no
if [ "$1" = "--sshd" ]; then
  SSHD=yes
  shift
fi
[ "$1" = "--" ] || usage
shift

CMD=("$@")
no_namespaces() {
  export MPVM_TEST_HOSTS="" MPVM_TEST_GATEWAY="" MPVM_TEST_NETNS="$1"
  echo "netns_hosts: no test namespaces ($1); tests fall back to loopback daemons" >&2
  exec "${CMD[@]}"
}

if [ -z "${NETNS_HOSTS_INSIDE:-}" ]; then
  [ "$(id -u)" -eq 0 ] || no_namespaces "not root"
  if ! command -v unshare >/dev/null || ! command -v ip >/dev/null; then
    no_namespaces "unshare or ip (util-linux, iproute2) missing"
  fi
  if ! unshare --net --mount true 2>/dev/null; then
    no_namespaces "unshare --net --mount is not permitted here"
  fi
  args=("$K")
  [ "$SSHD" = yes ] && args+=(--sshd)
  NETNS_HOSTS_INSIDE=1 exec unshare --net --mount --propagation private \
    "$0" "${args[@]}" -- "${CMD[@]}"
fi

# ---- inside the sandbox -----------------------------------------------------
RUN="nh$$"
WORK=$(mktemp -d "/tmp/netns-hosts-$RUN.XXXXXX")
SSHD_PIDS=()
cleanup() {
  local rc=$?
  for p in "${SSHD_PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  for i in $(seq 1 "$K"); do ip netns del "h$i" 2>/dev/null || true; done
  ip link del tbr0 2>/dev/null || true
  rm -rf "$WORK" /tmp/mpvm-test-"$RUN"-h*
  exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# Named namespaces are bind mounts in /run/netns: a private tmpfs keeps them
# (and ip netns exec's /sys remounts) inside this sandbox.
mkdir -p /run/netns
mount -t tmpfs -o mode=755 netns-hosts /run/netns
ip link set lo up
ip link add tbr0 type bridge
ip addr add 10.77.0.1/24 dev tbr0
ip link set tbr0 up

hosts=()
for i in $(seq 1 "$K"); do
  addr="10.77.0.$((10 + i))"
  ip netns add "h$i"
  ip link add "tv$i" type veth peer name eth0 netns "h$i"
  ip link set "tv$i" master tbr0 up
  ip -n "h$i" link set lo up
  ip -n "h$i" addr add "$addr/24" dev eth0
  ip -n "h$i" link set eth0 up
  echo "$addr h$i" >>"$WORK/hosts"
  hosts+=("h$i=$addr")
done
export MPVM_TEST_HOSTS="${hosts[*]}" MPVM_TEST_GATEWAY=10.77.0.1 MPVM_TEST_NETNS=yes

if [ "$SSHD" = yes ]; then
  SSHD_BIN=$(command -v sshd || echo /usr/sbin/sshd)
  if [ ! -x "$SSHD_BIN" ]; then
    echo "netns_hosts: --sshd needs openssh-server (run scripts/setup.sh)" >&2
    exit 1
  fi
  mkdir -p /run/sshd
  chmod 700 "$WORK"
  ssh-keygen -q -t ed25519 -N "" -f "$WORK/host_key"
  ssh-keygen -q -t ed25519 -N "" -f "$WORK/client_key"
  cp "$WORK/client_key.pub" "$WORK/authorized_keys"
  for i in $(seq 1 "$K"); do
    addr="10.77.0.$((10 + i))"
    cat >"$WORK/sshd_h$i.conf" <<EOF
ListenAddress $addr
HostKey $WORK/host_key
AuthorizedKeysFile $WORK/authorized_keys
PermitRootLogin prohibit-password
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
StrictModes no
PidFile none
SetEnv MPVM_RUNDIR=/tmp/mpvm-test-$RUN-h$i
EOF
    ip netns exec "h$i" "$SSHD_BIN" -D -e -f "$WORK/sshd_h$i.conf" 2>>"$WORK/sshd_h$i.log" &
    SSHD_PIDS+=($!)
  done
  export MPVM_RSH="ssh -i $WORK/client_key -o BatchMode=yes -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null -o LogLevel=ERROR -o ConnectTimeout=5"
  # Ready when each answers a login (bounded: 10 s per host).
  for i in $(seq 1 "$K"); do
    addr="10.77.0.$((10 + i))"
    ok=no
    for _ in $(seq 1 100); do
      if $MPVM_RSH "$addr" true 2>/dev/null; then
        ok=yes
        break
      fi
      sleep 0.1  # polling for readiness: sshd has no other way to say it listens
    done
    if [ $ok != yes ]; then
      echo "netns_hosts: sshd on h$i did not accept a login; its log:" >&2
      cat "$WORK/sshd_h$i.log" >&2
      exit 1
    fi
  done
fi

"${CMD[@]}"
