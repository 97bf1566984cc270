#!/usr/bin/env python3
"""Ping-pong between two tasks on different hosts (the master and one
emulated host, in its own network namespace when run as root) over the three
routes mpvm has across hosts: relayed by the daemons (CURVE links), a direct
task-to-task TCP link, and the same link encrypted (MPVM_LINK_ENCRYPT=1).
Prints median round-trip times (us) per message size over ROUNDS launches,
and the cost of encryption as a ratio.
usage: crosshost_links.py BUILD_DIR [ROUNDS]"""
import os
import statistics
import subprocess
import sys
import tempfile

BUILD = os.path.abspath(sys.argv[1])
ROUNDS = int(sys.argv[2]) if len(sys.argv) > 2 else 5
HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from pingpong import parse  # noqa: E402  (the same output format)
SRC = os.path.dirname(HERE)
MODES = {"relayed": {"MPVM_DIRECT_LINKS": "0"}, "direct": {},
         "direct, encrypted": {"MPVM_LINK_ENCRYPT": "1"}}


def main():
    work = tempfile.mkdtemp(prefix="mpvm-xl-")
    env = dict(os.environ)
    env.pop("LD_LIBRARY_PATH", None)
    inc, lib = os.path.join(SRC, "pvmcompat", "include"), os.path.join(BUILD, "lib")
    prog = os.path.join(work, "pp_mpvm")
    subprocess.run(["cc", "-O2", "-I", inc, "-o", prog, os.path.join(HERE, "pingpong.c"), "-L", lib,
                    "-Wl,-rpath," + lib, "-lpvm3"], check=True)
    console, prun = os.path.join(BUILD, "bin", "mpvm"), os.path.join(BUILD, "bin", "prun")
    results = {}
    for mode, extra in MODES.items():
        menv = dict(env, MPVM_RUNDIR=os.path.join(work, "run"), MPVM_DEAD_AFTER="30", **extra)
        subprocess.run([console, "add", "far", "--local"], env=menv, stdout=subprocess.DEVNULL,
                       check=True)
        runs = []
        for _ in range(ROUNDS):
            r = subprocess.run([prun, "-n", "2", "--tag-output", "none", prog], env=menv,
                               capture_output=True, text=True, check=True)
            runs.append(parse(r.stdout))
        subprocess.run([console, "halt"], env=menv, stdout=subprocess.DEVNULL)
        results[mode] = {s: statistics.median(r[s] for r in runs) for s in runs[0]}
    sizes = sorted(results["direct"])
    print(f"round trip across hosts, median of {ROUNDS} launches (us)")
    print(f"{'size':>9} " + " ".join(f"{m:>18}" for m in MODES) + f" {'encrypt/plain':>14}"
          f" {'relay/direct':>13}")
    for s in sizes:
        row = [results[m][s] for m in MODES]
        print(f"{s:>9} " + " ".join(f"{v:>18.1f}" for v in row) +
              f" {row[2] / row[1]:>14.2f} {row[0] / row[1]:>13.2f}")


if __name__ == "__main__":
    main()
