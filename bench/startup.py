#!/usr/bin/env python3
"""Start-up benchmark: launch N tasks that each exchange one message with a
neighbour and exit, measured in one run for

  mpvm       prun -n N ring 1, including starting and stopping the embedded VM
  pvm        Debian PVM 3.4.6: start pvmd, spawn N ring tasks and reap them, halt
  pvm-warm   the same with pvmd already running (spawn + reap only)
  openmpi    mpirun -n N mpi_ring (Open MPI 4.1.4)

Prints a table of medians (and min/max) over REPS runs and ratios to mpvm.
usage: startup.py BUILD_DIR [N] [REPS]
"""
import os
import statistics
import subprocess
import sys
import tempfile
import time

BUILD = os.path.abspath(sys.argv[1])
N = int(sys.argv[2]) if len(sys.argv) > 2 else 32
REPS = int(sys.argv[3]) if len(sys.argv) > 3 else 11
HERE = os.path.dirname(os.path.abspath(__file__))
SRC = os.path.dirname(HERE)


def timed(cmd, env, setup=None, teardown=None):
    times = []
    for _ in range(REPS):
        if setup:
            setup()
        t0 = time.perf_counter()
        r = subprocess.run(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        times.append(time.perf_counter() - t0)
        if teardown:
            teardown()
        if r.returncode != 0:
            raise SystemExit(f"{cmd[0]} failed: {r.stderr.decode()[-500:]}")
    return times


def main():
    work = tempfile.mkdtemp(prefix="mpvm-bench-")
    rows = {}
    env = dict(os.environ)
    env.pop("LD_LIBRARY_PATH", None)

    # mpvm: embedded VM each time (no VM runs in this private runtime dir).
    menv = dict(env, MPVM_RUNDIR=os.path.join(work, "run"))
    rows["mpvm prun (embedded VM start+stop)"] = timed(
        [os.path.join(BUILD, "bin", "prun"), "-n", str(N), os.path.join(BUILD, "bin", "ring"), "1"], menv)

    # Debian PVM: ring and the launcher built against Debian's library.
    home = os.path.join(work, "home")
    pbin = os.path.join(home, "pvm3", "bin", "LINUX64")
    os.makedirs(pbin)
    subprocess.run(["cc", "-O2", "-o", os.path.join(pbin, "ring"), os.path.join(SRC, "examples", "ring.c"),
                    "-lpvm3"], check=True)
    launcher = os.path.join(work, "launcher")
    subprocess.run(["cc", "-O2", "-w", "-o", launcher,
                    os.path.join(SRC, "tests", "differential", "launcher.c"), "-lpvm3"], check=True)
    ptmp = os.path.join(work, "pvmtmp")
    os.makedirs(ptmp)
    penv = dict(env, HOME=home, PVM_TMP=ptmp, PVM_ALLOW_ROOT="yes", PVM_ROOT="/usr/lib/pvm3")
    start = lambda: subprocess.run(["pvm"], input=b"quit\n", env=penv, stdout=subprocess.DEVNULL, check=True)
    halt = lambda: subprocess.run(["pvm"], input=b"halt\n", env=penv, stdout=subprocess.DEVNULL,
                                  stderr=subprocess.DEVNULL)
    script = os.path.join(work, "pvm_cold.sh")
    with open(script, "w") as f:
        f.write(f"echo quit | pvm >/dev/null\n{launcher} {N} ring 1 >/dev/null\n"
                "echo halt | pvm >/dev/null 2>&1\nexit 0\n")
    rows["Debian PVM (pvmd start+stop)"] = timed(["sh", script], penv)
    start()
    rows["Debian PVM (pvmd already running)"] = timed([launcher, str(N), "ring", "1"], penv)
    halt()

    mpi = os.path.join(work, "mpi_ring")
    subprocess.run(["mpicc", "-O2", "-o", mpi, os.path.join(HERE, "mpi_ring.c")], check=True)
    rows["Open MPI mpirun"] = timed(["mpirun", "--allow-run-as-root", "--oversubscribe", "-n", str(N), mpi],
                                    dict(env, OMPI_MCA_btl_vader_single_copy_mechanism="none"))

    base = statistics.median(rows["mpvm prun (embedded VM start+stop)"])
    print(f"\nStart-up: {N} tasks enrol, pass one message to a neighbour, exit "
          f"(median of {REPS} runs, seconds)\n")
    print(f"| launcher | median | min | max | vs mpvm |")
    print(f"|---|---:|---:|---:|---:|")
    for name, t in rows.items():
        m = statistics.median(t)
        print(f"| {name} | {m:.3f} | {min(t):.3f} | {max(t):.3f} | {m / base:.2f}x |")
    subprocess.run(["rm", "-rf", work])


if __name__ == "__main__":
    main()
