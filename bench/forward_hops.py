#!/usr/bin/env python3
"""Forwarding hops after many moves of one task: a receiver (hop_task) is
moved MOVES times round three hosts (daemons on loopback) while its sender
streams sequence-numbered messages to it. The receiver checks the stream
(nothing lost, doubled or reordered) and counts, per message, how often
daemons forwarded it because the receiver had moved on (frame header hop
count). The bound to hold: no message more than 2 hops. The sender reports
its link updates (told on its direct link that the receiver moved) by the
stale sends it made before reading each: the bound is 2 per link.

usage: forward_hops.py BUILD_DIR [REPS] [MOVES]   (defaults: 5 runs of 100 moves)
"""
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time

from loopback_vm import start_vm

BUILD = os.path.abspath(sys.argv[1])
REPS = int(sys.argv[2]) if len(sys.argv) > 2 else 5
MOVES = int(sys.argv[3]) if len(sys.argv) > 3 else 100
BIN = os.path.join(BUILD, "bin")
HOSTS = ["alpha", "beta", "gamma"]


def one_run(env, work, rep):
    stop = os.path.join(work, f"stop{rep}")
    task = subprocess.Popen([os.path.join(BIN, "prun"), "--tag-output", "tid", "--stdin", "none",
                             os.path.join(BIN, "hop_task"), stop],
                            env=env, stdout=subprocess.PIPE, text=True)
    m = re.match(r"\[(t[0-9a-f]+)\] start", task.stdout.readline())
    if not m:
        sys.exit("the task did not start")
    began = time.monotonic()
    for i in range(MOVES):
        r = subprocess.run([os.path.join(BIN, "mpvm"), "migrate", m.group(1),
                            HOSTS[(i + 1) % len(HOSTS)]], env=env, capture_output=True,
                           text=True, timeout=120)
        if r.returncode != 0:
            sys.exit(f"migrate failed: {r.stderr}")
    seconds = time.monotonic() - began
    open(stop, "w").close()
    out, _ = task.communicate(timeout=120)
    got = re.search(r"received (\d+) in order", out)
    hops = re.search(r"hops 0:(\d+) 1:(\d+) 2:(\d+) 3\+:(\d+) max (\d+)", out)
    stale = re.search(r"stale sends 0:(\d+) 1:(\d+) 2:(\d+) 3\+:(\d+) max (\d+)", out)
    if task.returncode != 0 or not got or not hops or not stale:
        sys.exit(f"the run failed: {out}")
    return (int(got.group(1)), *map(int, hops.groups()), seconds, *map(int, stale.groups()))


def main():
    work = tempfile.mkdtemp(prefix="hop-bench-")
    env = dict(os.environ)
    env.pop("LD_LIBRARY_PATH", None)
    daemons, dirs = start_vm(BIN, work, HOSTS, env)
    env["MPVM_RUNDIR"] = dirs[HOSTS[0]]
    runs = []
    try:
        runs = [one_run(env, work, rep) for rep in range(REPS)]
    finally:
        subprocess.run([os.path.join(BIN, "mpvm"), "halt"], env=env, capture_output=True)
        for p in daemons:
            p.wait(timeout=30)
    print(f"{MOVES} moves of one receiver round {len(HOSTS)} hosts on loopback, {REPS} runs")
    print("| run | messages | 0 hops | 1 hop | 2 hops | more | max hops | moves/s "
          "| link updates | after 0 stale sends | 1 | 2 | more | max stale |")
    print("|---:" * 14 + "|")
    for i, (n, h0, h1, h2, h3, most, s, s0, s1, s2, s3, smost) in enumerate(runs, 1):
        print(f"| {i} | {n} | {h0} | {h1} | {h2} | {h3} | {most} | {MOVES / s:.0f} "
              f"| {s0 + s1 + s2 + s3} | {s0} | {s1} | {s2} | {s3} | {smost} |")
    med = lambda k: statistics.median(r[k] for r in runs)
    print(f"median: {med(0):.0f} messages, {med(2):.0f} forwarded once, {med(3):.0f} twice; "
          f"largest hop count in any run: {max(r[5] for r in runs)}")
    print(f"median link updates after 0, 1, 2 stale sends: {med(7):.0f}, {med(8):.0f}, "
          f"{med(9):.0f}; most stale sends on one link in any run: {max(r[11] for r in runs)}")


if __name__ == "__main__":
    main()
