#!/usr/bin/env python3
"""Ping-pong between two tasks on this host: mpvm (prun), Debian PVM 3.4.6
(both with the same pingpong.c, PvmDataRaw, direct routes) and Open MPI 4.1.4,
measured in one run. Prints median round-trip times (us) per message size,
the median over ROUNDS launches of each, and ratios.
usage: pingpong.py BUILD_DIR [ROUNDS]"""
import os
import statistics
import subprocess
import sys
import tempfile

BUILD = os.path.abspath(sys.argv[1])
ROUNDS = int(sys.argv[2]) if len(sys.argv) > 2 else 5
HERE = os.path.dirname(os.path.abspath(__file__))
SRC = os.path.dirname(HERE)


def parse(out):
    return {int(a): float(b) for a, b in (l.split() for l in out.splitlines() if l.strip()
                                          and l.split()[0].isdigit())}


def main():
    work = tempfile.mkdtemp(prefix="mpvm-pp-")
    env = dict(os.environ)
    env.pop("LD_LIBRARY_PATH", None)
    inc, lib = os.path.join(SRC, "pvmcompat", "include"), os.path.join(BUILD, "lib")
    ours = os.path.join(work, "pp_mpvm")
    subprocess.run(["cc", "-O2", "-I", inc, "-o", ours, os.path.join(HERE, "pingpong.c"), "-L", lib,
                    "-Wl,-rpath," + lib, "-lpvm3"], check=True)
    home = os.path.join(work, "home")
    pbin = os.path.join(home, "pvm3", "bin", "LINUX64")
    os.makedirs(pbin)
    subprocess.run(["cc", "-O2", "-o", os.path.join(pbin, "pingpong"), os.path.join(HERE, "pingpong.c"),
                    "-lpvm3"], check=True)
    launcher = os.path.join(work, "launcher")
    subprocess.run(["cc", "-O2", "-w", "-o", launcher, os.path.join(SRC, "tests", "differential", "launcher.c"),
                    "-lpvm3"], check=True)
    mpi = os.path.join(work, "pp_mpi")
    subprocess.run(["mpicc", "-O2", "-o", mpi, os.path.join(HERE, "mpi_pingpong.c")], check=True)

    ptmp = os.path.join(work, "pvmtmp")
    os.makedirs(ptmp)
    penv = dict(env, HOME=home, PVM_TMP=ptmp, PVM_ALLOW_ROOT="yes", PVM_ROOT="/usr/lib/pvm3")
    subprocess.run(["pvm"], input=b"quit\n", env=penv, stdout=subprocess.DEVNULL, check=True)
    menv = dict(env, MPVM_RUNDIR=os.path.join(work, "run"))
    subprocess.run([os.path.join(BUILD, "bin", "mpvm"), "conf"], env=menv, stdout=subprocess.DEVNULL, check=True)

    runs = {"mpvm": [], "Debian PVM": [], "Open MPI": []}
    for _ in range(ROUNDS):
        r = subprocess.run([os.path.join(BUILD, "bin", "prun"), "-n", "2", "--tag-output", "none", ours],
                           env=menv, capture_output=True, text=True, check=True)
        runs["mpvm"].append(parse(r.stdout))
        r = subprocess.run([launcher, "2", "pingpong"], env=penv, capture_output=True, text=True, check=True)
        runs["Debian PVM"].append(parse("\n".join(l.split("] ", 1)[-1] for l in r.stdout.splitlines())))
        r = subprocess.run(["mpirun", "--allow-run-as-root", "-n", "2", mpi], env=env,
                           capture_output=True, text=True, check=True)
        runs["Open MPI"].append(parse(r.stdout))
    subprocess.run(["pvm"], input=b"halt\n", env=penv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    subprocess.run([os.path.join(BUILD, "bin", "mpvm"), "halt"], env=menv, stdout=subprocess.DEVNULL)

    sizes = sorted(runs["mpvm"][0])
    med = {k: {s: statistics.median(r[s] for r in v) for s in sizes} for k, v in runs.items()}
    print(f"\nPing-pong round trip, 2 tasks on one host (us; median of per-launch medians, "
          f"{ROUNDS} launches)\n")
    print("| bytes | mpvm | Debian PVM | Open MPI | PVM / mpvm | mpvm / Open MPI |")
    print("|---:|---:|---:|---:|---:|---:|")
    for s in sizes:
        m, p, o = med["mpvm"][s], med["Debian PVM"][s], med["Open MPI"][s]
        print(f"| {s} | {m:.1f} | {p:.1f} | {o:.1f} | {p / m:.2f}x | {m / o:.2f}x |")
    subprocess.run(["rm", "-rf", work])


if __name__ == "__main__":
    main()
