#!/usr/bin/env python3
"""Whole-migration cost: a task holding MIB of live heap data moves between
two hosts (daemons on loopback) with `mpvm migrate`, through the full
protocol (offer, accept, freeze, stream, restore, commit). The source
daemon's `migration {...}` log line gives the numbers:

  blackout   from the freeze to the moment the restored copy ran;
  total      from the request to the commit (what `mpvm migrate` waits);
  throughput task data / blackout;
  admin      administrative messages counted for the move;
  cold       the blackout when neither host has the file hashes cached yet
             (each rep moves a task once with the caches emptied first, and
             once with them as the previous move left them).

Each run checks afterwards that the task's data arrived intact.

usage: migrate_cost.py BUILD_DIR [REPS] [MIB...]   (defaults: 5 runs of 1 64 512)
"""
import json
import os
import re
import signal
import statistics
import subprocess
import sys
import tempfile

from loopback_vm import start_vm

BUILD = os.path.abspath(sys.argv[1])
REPS = int(sys.argv[2]) if len(sys.argv) > 2 else 5
SIZES = [int(a) for a in sys.argv[3:]] or [1, 64, 512]
BIN = os.path.join(BUILD, "bin")


def main():
    work = tempfile.mkdtemp(prefix="mig-bench-")
    env = dict(os.environ, MPVM_KEEP_LOG="1")
    env.pop("LD_LIBRARY_PATH", None)
    daemons, dirs = start_vm(BIN, work, ["alpha", "beta"], env)
    env["MPVM_RUNDIR"] = dirs["alpha"]
    seen = 0
    rows = []
    try:
        for mib in SIZES:
            runs, cold = [], []
            for rep in range(2 * REPS):
                if rep % 2 == 0:  # empty both hosts' file hash caches first
                    for d in dirs.values():
                        try:
                            os.unlink(os.path.join(d, "hash-cache"))
                        except FileNotFoundError:
                            pass
                task = subprocess.Popen([os.path.join(BIN, "prun"), "--tag-output", "tid", "--stdin", "none",
                                          "--host", "alpha",
                                         os.path.join(BIN, "mig_task"), "hold", str(mib)],
                                        env=env, stdout=subprocess.PIPE, text=True)
                line = task.stdout.readline()
                m = re.match(r"\[(t[0-9a-f]+)\] ready", line)
                if not m:
                    sys.exit(f"the task did not start: {line!r}")
                tid = m.group(1)
                r = subprocess.run([os.path.join(BIN, "mpvm"), "migrate", tid, "beta"], env=env,
                                   capture_output=True, text=True, timeout=300)
                if r.returncode != 0:
                    sys.exit(f"migrate failed: {r.stderr}")
                ps = subprocess.run([os.path.join(BIN, "mpvm"), "ps"],
                                    env=dict(env, MPVM_RUNDIR=dirs["beta"]),
                                    capture_output=True, text=True).stdout
                pid = int(re.search(r"^\s*beta\s+%s\s+\S+\s+(\d+)" % tid[1:], ps, re.M).group(1))
                os.kill(pid, signal.SIGUSR1)  # it checks its data, and ends
                out, _ = task.communicate(timeout=300)
                if "intact" not in out:
                    sys.exit(f"the moved task's data did not survive: {out}")
                with open(os.path.join(dirs["alpha"], "mpvmd.log")) as f:
                    moves = [json.loads(l.split("migration ", 1)[1]) for l in f
                             if "migration {" in l]
                (cold if rep % 2 == 0 else runs).append(moves[seen])
                seen = len(moves)
            blackout = statistics.median(m["blackout_ms"] for m in runs)
            total = statistics.median(m["total_ms"] for m in runs)
            data = statistics.median(m["bytes"] for m in runs)
            rows.append((mib, data, blackout, min(m["blackout_ms"] for m in runs),
                         max(m["blackout_ms"] for m in runs), total,
                         mib / 1024 / (blackout / 1000), max(m["admin_messages"] for m in runs),
                         statistics.median(m["blackout_ms"] for m in cold)))
    finally:
        subprocess.run([os.path.join(BIN, "mpvm"), "halt"], env=env, capture_output=True)
        for p in daemons:
            p.wait(timeout=30)
    print(f"whole migration, alpha -> beta on loopback, median of {REPS} runs")
    print("| task data | image bytes | blackout (median) | min | max | request to commit "
          "| throughput | admin messages | blackout, hashes not cached |")
    print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for mib, data, b, lo, hi, total, rate, admin, b_cold in rows:
        print(f"| {mib} MiB | {data / 2**20:.1f} MiB | {b:.2f} ms | {lo:.2f} ms | {hi:.2f} ms "
              f"| {total:.2f} ms | {rate:.2f} GiB/s | {admin} | {b_cold:.2f} ms |")


if __name__ == "__main__":
    main()
