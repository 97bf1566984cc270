#!/usr/bin/env python3
"""What a move costs a ring of communicating tasks (issue 14, section 3).

A lock-step ring of TASKS plain PVM tasks (`bench/move_ring.c`: three
messages of up to 8 KiB per task per round) runs on HOSTS daemons on
loopback, first alone, then while this driver moves ring tasks with `mpvm
migrate`: every GAP seconds it swaps two random tasks of different hosts
(two moves, one after the other, so that each host keeps its share of the
ring), and every other swap undoes the one before it (the ring keeps its
layout between swaps), MOVES moves in all. A move stalls the moved task and, through the
lock step, the ring.

    ring time per move = (ring time with moves - ring time alone) / moves

Each row is one repetition; the summary takes medians (and the mean of the
ring time per move). Also reported: the longest round any task saw during
the moves (the worst stall a move caused the ring, less a normal round),
the CPU the whole machine spent per move (busy time from /proc/stat, with
moves less without, over the moves), the sources' blackout and
request-to-commit times (their `migration {...}` records), and whether
every task received exactly what it received without moves.

usage: move_cost.py BUILD_DIR [--tasks 16] [--hosts 4] [--speed S]
                    [--rounds R] [--moves 100] [--gap 0.1] [--reps 3]
"""
import argparse
import json
import os
import random
import re
import statistics
import subprocess
import sys
import tempfile
import time

from loopback_vm import start_vm


def parse_ring(out):
    """({task: checksum}, {task: longest round}, ring seconds) of a run's output."""
    sums, longest = {}, {}
    for task, s, l in re.findall(r"task (\d+) sum ([0-9a-f]+) longest ([0-9.]+) s", out):
        sums[int(task)], longest[int(task)] = s, float(l)
    m = re.search(r"\bring ([0-9.]+) s$", out, re.M)
    if not m or not sums:
        sys.exit(f"move_ring said nothing usable:\n{out}")
    return sums, longest, float(m.group(1))


def ring_tasks(console, env, want):
    """{tid: host} of the ring's tasks, once all `want` have started."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        ps = subprocess.run([console, "ps"], env=env, capture_output=True, text=True).stdout
        found = dict((tid, host) for host, tid in
                     re.findall(r"^\s*(\S+)\s+([0-9a-f]+)\s.*move_ring", ps, re.M))
        if len(found) >= want:
            return {"t" + t: h for t, h in found.items()}
    sys.exit(f"the ring's {want} tasks did not all start")


def busy_cpu_s():
    """CPU seconds this machine has spent busy since boot (/proc/stat)."""
    with open("/proc/stat") as f:
        fields = [int(x) for x in f.readline().split()[1:]]
    idle = fields[3] + fields[4]  # idle, iowait
    return (sum(fields[:8]) - idle) / os.sysconf("SC_CLK_TCK")


def migration_records(dirs):
    records = []
    for d in dirs.values():
        log = os.path.join(d, "mpvmd.log")
        if os.path.exists(log):
            with open(log) as f:
                records += [json.loads(l.split("migration ", 1)[1]) for l in f
                            if "migration {" in l]
    return records


class Vm:
    def __init__(self, args):
        self.args = args
        self.bin = os.path.join(os.path.abspath(args.build), "bin")
        self.console = os.path.join(self.bin, "mpvm")
        self.names = ["h%d" % i for i in range(args.hosts)]
        self.work = tempfile.mkdtemp(prefix="movecost-")
        self.env = dict(os.environ, MPVM_KEEP_LOG="1")
        self.env.pop("LD_LIBRARY_PATH", None)
        extra = ["--emulate-speed", "--speed", str(args.speed)] if args.speed else []
        self.daemons, self.dirs = start_vm(self.bin, self.work, self.names, self.env, extra)
        self.env["MPVM_RUNDIR"] = self.dirs[self.names[0]]
        self.ring = [os.path.join(self.bin, "prun"), "--tag-output", "tid", "--stdin", "none",
                     os.path.join(self.bin, "move_ring"), str(args.tasks), str(args.rounds)]

    def ask(self, command):
        """A command's answer from the one console this driver keeps open (a
        console started per move would cost the ring its own start-up CPU);
        `version` after it marks the answer's end."""
        if getattr(self, "con", None) is None:
            self.con = subprocess.Popen([self.console], env=self.env, stdin=subprocess.PIPE,
                                        stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                        text=True, bufsize=1)
        self.con.stdin.write(command + "\nversion\n")
        self.con.stdin.flush()
        answer = []
        for line in self.con.stdout:
            if line.startswith("3.4.6 (mpvm"):
                return "".join(answer)
            answer.append(line)
        sys.exit(f"the console ended: {''.join(answer)}")

    def alone(self):
        cpu = busy_cpu_s()
        r = subprocess.run(self.ring, env=self.env, capture_output=True, text=True, timeout=900)
        if r.returncode != 0:
            sys.exit(f"the ring failed alone: {r.stderr}")
        self.cpu_alone = busy_cpu_s() - cpu
        return parse_ring(r.stdout)

    def with_moves(self, rng):
        before = len(migration_records(self.dirs))
        cpu = busy_cpu_s()
        p = subprocess.Popen(self.ring, env=self.env, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True)
        where = ring_tasks(self.console, self.env, self.args.tasks)
        moves, console_s, undo = 0, [], None
        while p.poll() is None and moves < self.args.moves:
            time.sleep(self.args.gap)  # pacing of the requests, not synchronisation
            # A swap: a task to another host and one of that host's back, so
            # that every host keeps its share of the ring (on emulated hosts
            # a crowded host would slow the ring whatever the moves cost).
            # Every other swap undoes the one before: the ring runs its own
            # layout between them. Left to wander, the layout changed which
            # neighbours share a host (a local link is cheaper than one across
            # hosts), and the ring's speed with it, by more than moves cost.
            if undo:
                swap, undo = undo, None
            else:
                first = rng.choice(sorted(where))
                other = rng.choice([n for n in self.names if n != where[first]])
                second = rng.choice(sorted(t for t in where if where[t] == other))
                swap = ((first, other), (second, where[first]))
                undo = ((first, where[first]), (second, other))
            for tid, to in swap:
                t0 = time.monotonic()
                if "moved to" in self.ask(f"migrate {tid} {to}"):
                    moves += 1
                    where[tid] = to
                    console_s.append(time.monotonic() - t0)
        out, err = p.communicate(timeout=900)
        self.cpu_moved = busy_cpu_s() - cpu
        self.last_stderr = err
        if p.returncode != 0:
            sys.exit(f"the ring failed with moves: {err}")
        records = migration_records(self.dirs)[before:]
        return parse_ring(out), moves, console_s, records

    def halt(self):
        if getattr(self, "con", None) is not None:
            self.con.stdin.close()
            self.con.wait(timeout=30)
        subprocess.run([self.console, "halt"], env=self.env, capture_output=True)
        for d in self.daemons:
            d.wait(timeout=30)


def repetition(vm, rng):
    sums0, longest0, alone = vm.alone()
    (sums1, longest1, moved), moves, console_s, records = vm.with_moves(rng)
    normal = statistics.median(longest0.values())
    blackout = [r["blackout_ms"] for r in records]
    total = [r["total_ms"] for r in records]
    return {"alone": alone, "moved": moved, "moves": moves,
            "per_move_ms": 1000 * (moved - alone) / max(moves, 1),
            "cpu_per_move_ms": 1000 * (vm.cpu_moved - vm.cpu_alone) / max(moves, 1),
            "worst_stall_ms": 1000 * (max(longest1.values()) - normal),
            "blackout_med": statistics.median(blackout) if blackout else 0,
            "blackout_max": max(blackout, default=0),
            "commit_med": statistics.median(total) if total else 0,
            "commit_max": max(total, default=0),
            "console_med": 1000 * statistics.median(console_s) if console_s else 0,
            "same": sums0 == sums1}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("build")
    ap.add_argument("--tasks", type=int, default=16)
    ap.add_argument("--hosts", type=int, default=4)
    ap.add_argument("--speed", type=int, default=0,
                    help="emulate hosts of this speed (cgroup quota); 0: unthrottled")
    ap.add_argument("--rounds", type=int, default=6000)
    ap.add_argument("--moves", type=int, default=100)
    ap.add_argument("--gap", type=float, default=0.1, help="seconds between move requests")
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args()
    rng = random.Random(args.seed)
    vm = Vm(args)
    rows = []
    try:
        for _ in range(args.reps):
            rows.append(repetition(vm, rng))
    finally:
        vm.halt()
    print(f"move cost: {args.tasks} tasks on {args.hosts} hosts"
          f"{' of speed %d' % args.speed if args.speed else ''}, {args.rounds} rounds, "
          f"a move every {args.gap} s")
    print("| ring alone | with moves | moves | ring time per move | worst stall "
          "| machine CPU per move | blackout median / max | request to commit median / max "
          "| migrate command | same sums |")
    print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|")
    for r in rows:
        print(f"| {r['alone']:.2f} s | {r['moved']:.2f} s | {r['moves']} "
              f"| {r['per_move_ms']:.1f} ms | {r['worst_stall_ms']:.0f} ms "
              f"| {r['cpu_per_move_ms']:.1f} ms "
              f"| {r['blackout_med']:.1f} / {r['blackout_max']:.1f} ms "
              f"| {r['commit_med']:.1f} / {r['commit_max']:.1f} ms | {r['console_med']:.0f} ms "
              f"| {'yes' if r['same'] else 'NO'} |")
    med = statistics.median(r["per_move_ms"] for r in rows)
    mean = statistics.mean(r["per_move_ms"] for r in rows)
    worst = max(r["worst_stall_ms"] for r in rows)
    cpu = statistics.median(r["cpu_per_move_ms"] for r in rows)
    print(f"ring time per move: median {med:.1f} ms, mean {mean:.1f} ms; worst stall {worst:.0f} ms; "
          f"machine CPU per move {cpu:.1f} ms (median)")
    if not all(r["same"] for r in rows):
        sys.exit("FAILED: a task received something else than without moves")


if __name__ == "__main__":
    main()
