#!/usr/bin/env python3
"""Cost of the checkpoint engine alone (no daemons): a process holding
MIB of live heap data captures itself over a loopback TCP connection into a
restore process that is already waiting, as the destination daemon of a
migration prepares one. Blackout = from the start of the capture to the
moment the restored process runs again; throughput = data / blackout.

This is the engine's share of a migration's cost; the whole protocol adds
the daemons' messages (docs/design/migration.md).

usage: ckpt_cost.py BUILD_DIR [REPS] [MIB...]     (defaults: 5 runs of 1 64 512)
"""
import os
import re
import statistics
import subprocess
import sys
import tempfile

BUILD = os.path.abspath(sys.argv[1])
REPS = int(sys.argv[2]) if len(sys.argv) > 2 else 5
SIZES = [int(a) for a in sys.argv[3:]] or [1, 64, 512]
DEMO = os.path.join(BUILD, "bin", "ckpt_demo")

print(f"{'task data':>10} {'blackout median':>16} {'min':>9} {'max':>9} {'throughput':>12}")
work = tempfile.mkdtemp(prefix="ckpt-bench-")
for mib in SIZES:
    times = []
    for _ in range(REPS):
        r = subprocess.run(["setarch", "-R", DEMO, "bench", str(mib)], cwd=work,
                           capture_output=True, text=True, timeout=300)
        m = re.search(r"blackout ([\d.]+) ms, intact", r.stdout)
        if not m:
            sys.exit(f"run failed: {r.stdout}{r.stderr}")
        times.append(float(m.group(1)))
    med = statistics.median(times)
    rate = mib / 1024 / (med / 1000)
    print(f"{mib:>6} MiB {med:>13.2f} ms {min(times):>6.2f} ms {max(times):>6.2f} ms "
          f"{rate:>8.2f} GiB/s")
