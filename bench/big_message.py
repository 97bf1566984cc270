#!/usr/bin/env python3
"""One large message between two tasks on this host: mpvm (prun) and Debian
PVM 3.4.6, the same bench/big_message.c built against each, in one run.
Prints, per system, the median over ROUNDS launches of the time until the
receiver has checked every byte and answered, and each side's peak resident
memory. usage: big_message.py BUILD_DIR [MIB] [ROUNDS]"""
import os
import statistics
import subprocess
import sys
import tempfile

BUILD = os.path.abspath(sys.argv[1])
MIB = int(sys.argv[2]) if len(sys.argv) > 2 else 1100
ROUNDS = int(sys.argv[3]) if len(sys.argv) > 3 else 3
HERE = os.path.dirname(os.path.abspath(__file__))
SRC = os.path.dirname(HERE)


def parse(out):
    """{'sender': {...}, 'receiver': {...}} from the two ranks' lines."""
    got = {}
    for line in out.splitlines():
        words = line.split("] ", 1)[-1].split()
        if words and words[0] in ("sender", "receiver"):
            got[words[0]] = dict(zip(words[1::2], words[2::2]))
    return got


def build(work):
    env = dict(os.environ)
    env.pop("LD_LIBRARY_PATH", None)
    inc, lib = os.path.join(SRC, "pvmcompat", "include"), os.path.join(BUILD, "lib")
    ours = os.path.join(work, "big_mpvm")
    subprocess.run(["cc", "-O2", "-I", inc, "-o", ours, os.path.join(HERE, "big_message.c"), "-L", lib,
                    "-Wl,-rpath," + lib, "-lpvm3"], check=True)
    home = os.path.join(work, "home")
    pbin = os.path.join(home, "pvm3", "bin", "LINUX64")
    os.makedirs(pbin)
    subprocess.run(["cc", "-O2", "-o", os.path.join(pbin, "big_message"),
                    os.path.join(HERE, "big_message.c"), "-lpvm3"], check=True)
    launcher = os.path.join(work, "launcher")
    subprocess.run(["cc", "-O2", "-w", "-o", launcher,
                    os.path.join(SRC, "tests", "differential", "launcher.c"), "-lpvm3"], check=True)
    return env, ours, home, launcher


def main():
    work = tempfile.mkdtemp(prefix="mpvm-big-")
    env, ours, home, launcher = build(work)
    ptmp = os.path.join(work, "pvmtmp")
    os.makedirs(ptmp)
    penv = dict(env, HOME=home, PVM_TMP=ptmp, PVM_ALLOW_ROOT="yes", PVM_ROOT="/usr/lib/pvm3")
    subprocess.run(["pvm"], input=b"quit\n", env=penv, stdout=subprocess.DEVNULL, check=True)
    menv = dict(env, MPVM_RUNDIR=os.path.join(work, "run"))
    cmds = {"mpvm": ([os.path.join(BUILD, "bin", "prun"), "-n", "2", "--tag-output", "rank", ours,
                      str(MIB)], menv),
            "Debian PVM": ([launcher, "2", "big_message", str(MIB)], penv)}
    runs = {k: [] for k in cmds}
    for _ in range(ROUNDS):
        for name, (cmd, e) in cmds.items():
            try:
                r = subprocess.run(cmd, env=e, capture_output=True, text=True, timeout=600)
                got = parse(r.stdout)
                ok = r.returncode == 0 and got.get("sender", {}).get("intact") == "yes"
                runs[name].append(got if ok else {"failed": f"exit {r.returncode}: {r.stderr[-200:]}"})
            except subprocess.TimeoutExpired:
                runs[name].append({"failed": "no answer within 600 s"})
    subprocess.run(["pvm"], input=b"halt\n", env=penv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    print(f"\nOne {MIB} MiB message (PvmDataInPlace, 256 MiB pieces, PvmRouteDirect), 2 tasks on one host; "
          f"median of {ROUNDS} launches\n")
    print("| system | delivered and checked (s) | sender peak RSS (MiB) | receiver peak RSS (MiB) | runs ok |")
    print("|---|---:|---:|---:|---:|")
    for name, rs in runs.items():
        good = [r for r in rs if "failed" not in r]
        if not good:
            print(f"| {name} | failed: {rs[0]['failed'].strip()} | | | 0/{len(rs)} |")
            continue
        med = lambda side, key: statistics.median(float(r[side][key]) for r in good)
        print(f"| {name} | {med('sender', 'delivered_s'):.2f} | {med('sender', 'peak_rss_mib'):.0f} | "
              f"{med('receiver', 'peak_rss_mib'):.0f} | {len(good)}/{len(rs)} |")
    subprocess.run(["rm", "-rf", work])


if __name__ == "__main__":
    main()
