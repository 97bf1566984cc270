#!/usr/bin/env python3
"""Chaos ring: TASKS tasks on HOSTS hosts (daemons on loopback) pass
sequence-numbered, checksummed messages of random sizes around a ring
(`tests/migrate/mig_task.c ring`), while this driver moves random tasks to
random hosts with `mpvm migrate` as fast as it can, until MOVES moves have
been made or the ring ends. A task blocked in pvm_recv moves at that
boundary; one computing its checksum is stopped by the signal.

Nothing may be lost, doubled or reordered: every task's checksum of what it
received must equal that of a run without moves (the reference run, first).
The reduced form runs in CI (tests/integration/test_migrate.py, the ring
test); this is the full one.

Beside the ring run SPINNERS compute-bound tasks (`mig_task spin`, no PVM
call while they compute), which the driver picks as well: those moves stop
a task by its signal wherever it is, and their checksums must equal a run
without moves too.

usage: chaos_ring.py BUILD_DIR [TASKS] [HOSTS] [MOVES] [ROUNDS] [SPINNERS]
       (defaults: 16 tasks, 4 hosts, 500 moves, 20000 rounds, 4 spinners)
"""
import json
import os
import random
import re
import subprocess
import sys
import tempfile
import time

from loopback_vm import start_vm

BUILD = os.path.abspath(sys.argv[1])
TASKS = int(sys.argv[2]) if len(sys.argv) > 2 else 16
HOSTS = int(sys.argv[3]) if len(sys.argv) > 3 else 4
MOVES = int(sys.argv[4]) if len(sys.argv) > 4 else 500
ROUNDS = int(sys.argv[5]) if len(sys.argv) > 5 else 20000
SPINNERS = int(sys.argv[6]) if len(sys.argv) > 6 else 4
SPIN = "4000000000"  # rounds: longer than the moves take, under load
BIN = os.path.join(BUILD, "bin")


def strip(text):
    return sorted(re.sub(r"^\[t[0-9a-f]+\] ", "", l) for l in text.splitlines())


def main():
    work = tempfile.mkdtemp(prefix="chaos-")
    env = dict(os.environ, MPVM_KEEP_LOG="1")
    env.pop("LD_LIBRARY_PATH", None)
    names = ["h%d" % i for i in range(HOSTS)]
    daemons, dirs = start_vm(BIN, work, names, env)
    env["MPVM_RUNDIR"] = dirs[names[0]]
    movable = ["--tag-output", "tid", "--stdin", "none"]  # tids in the output; rank 0 movable
    ring = [os.path.join(BIN, "prun"), *movable, os.path.join(BIN, "mig_task"), "ring", str(TASKS),
            str(ROUNDS)]
    spin = [os.path.join(BIN, "prun"), "-n", str(SPINNERS), *movable, os.path.join(BIN, "mig_task"), "spin",
            SPIN]
    console = os.path.join(BIN, "mpvm")
    rng = random.Random(int(os.environ.get("SEED", "1")))
    try:
        t0 = time.monotonic()
        ref = subprocess.run(ring, env=env, capture_output=True, text=True, timeout=600)
        ref_s = time.monotonic() - t0
        if ref.returncode != 0:
            sys.exit(f"the reference run failed: {ref.stderr}")
        ref_spin = subprocess.run(spin[:2] + ["1"] + spin[3:], env=env, capture_output=True,
                                  text=True, timeout=600)
        if ref_spin.returncode != 0:
            sys.exit(f"the reference spin failed: {ref_spin.stderr}")
        t0 = time.monotonic()
        sp = subprocess.Popen(spin, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True)
        p = subprocess.Popen(ring, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             text=True)
        tids = []
        while len(tids) < TASKS + SPINNERS and p.poll() is None:  # `mpvm ps`: every host's
            ps = subprocess.run([console, "ps"], env=env, capture_output=True, text=True).stdout
            tids = sorted(set("t" + m for m in re.findall(r"^\s*\S+\s+([0-9a-f]+)\s.*mig_task$",
                                                          ps, re.M)))
        moves = refused = 0
        while p.poll() is None and moves < MOVES:
            r = subprocess.run([console, "migrate", rng.choice(tids), rng.choice(names)],
                               env=env, capture_output=True, text=True, timeout=120)
            if "moved to" in r.stdout:
                moves += 1
            elif r.returncode != 0 and "already" not in r.stdout + r.stderr:
                refused += 1
        moved_s = time.monotonic() - t0
        out, err = p.communicate(timeout=600)
        same = strip(out) == strip(ref.stdout)
        spun, _ = sp.communicate(timeout=900)
        want = strip(ref_spin.stdout)
        same_spin = sp.returncode == 0 and strip(spun) == sorted(want * SPINNERS)
    finally:
        subprocess.run([console, "halt"], env=env, capture_output=True)
        for d in daemons:
            d.wait(timeout=30)
    # How each moved task was stopped: by its signal while computing, or at
    # a PVM call's boundary (the sources' `migration {...}` records).
    stopped = {"by signal": 0, "at a boundary": 0}
    for n in names:
        log = os.path.join(dirs[n], "mpvmd.log")
        if os.path.exists(log):
            with open(log) as f:
                for line in f:
                    if "migration {" in line:
                        stopped[json.loads(line.split("migration ", 1)[1])["stopped"]] += 1
    print(f"chaos ring: {TASKS} tasks, {HOSTS} hosts, {ROUNDS} rounds; {SPINNERS} compute-bound "
          "tasks beside it")
    print("| run | time | moves | stopped by signal | at a boundary | moves refused "
          "| ring checksums equal | spinners' checksums equal |")
    print("|---|---:|---:|---:|---:|---:|---|---|")
    print(f"| without moves | {ref_s:.1f} s | 0 | - | - | 0 | - | - |")
    print(f"| with moves | {moved_s:.1f} s | {moves} | {stopped['by signal']} "
          f"| {stopped['at a boundary']} | {refused} | {'yes' if same else 'NO'} "
          f"| {'yes' if same_spin else 'NO'} |")
    if p.returncode != 0 or not same or not same_spin:
        sys.exit(f"FAILED: exit {p.returncode}; {err}")


if __name__ == "__main__":
    main()
