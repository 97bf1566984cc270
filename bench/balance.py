#!/usr/bin/env python3
"""The balancer's experiments, scaled to this machine (issue 14 section 5;
../shared/seed-digest.md sections 2.5-2.6): plain PVM tasks (bench/work_task,
which computes with mpvm_work) on emulated hosts of given speeds, with the
balancer off (PVM's round-robin: "rr") and on ("bal"), against the oracle
(balancer/oracle.h: round-robin, the staircase optimum, the fluid bound).

  python3 bench/balance.py BUILD [--reps 3] [--only E1,E2V,...] [--out DIR]

Experiments:
  E1   16 hosts at 1000, N identical tasks of W = 3 s (MOSIX Table 1, 300 s
       scaled by 1/100), virtual-work mode
  E1R  4 hosts at 400, N = 5 and 6, W = 1 s, real CPU (cgroup quota)
  E2V  16 hosts at 1000 and 4 at 333 (fast ones first), virtual
  E2R  a:600,b:600,c:200,d:200, N = 8, W = 2 s, real CPU
  E3   16 hosts at 1000, random works uniform in [0, 2W), 5 seeds, virtual
  E10  stability under the digest's steady loads (3 tasks on 2 hosts, 17 on
       16, 2 on a fast and a slow host, 16 on 4), tasks of 20 s, balancer
       on: moves per task, A->B->A, moves once settled (with --only E10)
  RING a ring of 16 communicating tasks on 4 equal hosts (400 each: 1.6 CPUs), balancer off and
       on: never slower with it (with --only RING)
  E4   background load, real CPU: 4 hosts at 400, another user's busy loop
       on h0 and h1 (in their cgroups; running and suspended in turn for
       U(0, 0.2) s), N tasks of W = 2 s: round-robin with and without the
       background, and balanced (with --only E4)
  E4V  background tasks, virtual work: 16 hosts at 1000, a background task
       on each of h0-h7 (work_task -b 8; computing and sleeping in turn for
       U(0, 0.3) s), N tasks of W = 3 s; round-robin with and without it,
       balanced with the background pinned (variant a) and movable (b)
       (with --only E4V)
  E12  2 chatty pairs split across 2 hosts at 800 joined by 100 Mbit/s
       links, balancer off and on: less communication time with it (with
       --only E12; real time, the balancer's default clock)

The balancer's clock is scaled with the tasks: it decides every 0.1 s and a
task may move 0.1 s after its spawn or last move (MOSIX: 1 s against 300 s
tasks; 1/100 of it would be below the daemons' 100 ms tick).

Prints one table per experiment (medians of --reps runs) and writes
results.json and completion-time plots (SVG) into --out.
"""
import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from background import Background  # noqa: E402
from svgplot import line_plot  # noqa: E402

E1_N = [1, 2, 4, 8, 16, 17, 20, 24, 25, 27, 31, 32, 33, 36, 38, 40, 43, 47, 48]
SCALED = {"MPVM_BALANCE_PERIOD": "0.1", "MPVM_BALANCE_RESIDENCY": "0.1"}


def hosts_spec(speeds):
    return ",".join("h%d:%d" % (i, s) for i, s in enumerate(speeds))


class Runner:
    def __init__(self, build):
        self.bin = os.path.join(build, "bin")
        self.tmp = tempfile.mkdtemp(prefix="mpvm-balance-")

    def job(self, speeds, n, work_ms, cpu, balance, seed=None, background=None, bg_tasks=None):
        """One prun job: its completion time (first start to last end), the
        moves and each task's work (ms). `background`: another user's work
        on some hosts (bench/background.py), for the job's time. `bg_tasks`:
        (NB, "pinned" or "movable"): NB more tasks of the job, ranks 0 to
        NB-1 and so placed first, are background load (work_task -b)."""
        trace = os.path.join(self.tmp, "trace.json")
        nb, kind = bg_tasks or (0, "")
        cmd = [os.path.join(self.bin, "prun"), "--cpu", cpu, "--hosts", hosts_spec(speeds),
               "--balance", balance, "--stdin", "none", "--trace", trace, "-n", str(n + nb),
               os.path.join(self.bin, "work_task")]
        if nb:
            cmd += ["-b", str(nb), kind]
        cmd.append(str(work_ms))
        if seed is not None:
            cmd.append(str(seed))
        env = dict(os.environ, MPVM_RUNDIR=os.path.join(self.tmp, "run"), **SCALED)
        if background:
            background.start()
        try:
            r = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=900)
        finally:
            if background:
                background.stop()
        if background and background.placed != len(background.hosts):
            raise RuntimeError("background: no cgroup for the emulated hosts (duty cycling?)")
        rows = re.findall(r"^rank (\d+) work ([0-9.]+) took [0-9.]+ s start ([0-9.]+) "
                          r"end ([0-9.]+)$", r.stdout, re.M)
        if r.returncode != 0 or len(rows) != n:
            raise RuntimeError("job failed (%d of %d tasks): %s" % (len(rows), n, r.stderr[-2000:]))
        moves = migrations(trace)
        starts = [float(s) for _, _, s, _ in rows]
        ends = [float(e) for _, _, _, e in rows]
        # By rank: round-robin placed rank r on host r mod H, as the oracle does.
        return {"time": max(ends) - min(starts), "moves": moves, "start": min(starts),
                "first_end": min(ends),
                "works": [float(w) for _, w, _, _ in sorted(rows, key=lambda r: int(r[0]))]}

    def oracle(self, speeds, works_ms, background=None):
        """`background`: per host, the mean number of another user's
        processes ready to run (balancer/oracle.h)."""
        speeds_arg = ",".join(str(s) for s in speeds)
        works = ",".join("%g" % (w / 1000) for w in works_ms)
        cmd = [os.path.join(self.bin, "oracle"), "--speeds", speeds_arg, "--work-list", works,
               "--json"]
        if background:
            cmd += ["--background", ",".join("%g" % b for b in background)]
        r = subprocess.run(cmd, capture_output=True, text=True, check=True)
        return json.loads(r.stdout)


def back_and_forth(moves):
    """Tasks that went back to a host they had left (A -> B -> A)."""
    left, bad = {}, set()
    for m in moves:
        if m["to"] in left.get(m["tid"], set()):
            bad.add(m["tid"])
        left.setdefault(m["tid"], set()).add(m["from"])
    return len(bad)


def point(runner, speeds, n, work_ms, cpu, reps, seed=None):
    """Both arms, `reps` runs each, and the oracle for the same works."""
    out = {"n": n}
    for arm, balance in (("rr", "off"), ("bal", "on")):
        runs = [runner.job(speeds, n, work_ms, cpu, balance, seed) for _ in range(reps)]
        out[arm] = statistics.median(r["time"] for r in runs)
        out[arm + "_moves"] = statistics.median(len(r["moves"]) for r in runs)
        out[arm + "_back_and_forth"] = max(back_and_forth(r["moves"]) for r in runs)
        works = runs[0]["works"]
    out.update(runner.oracle(speeds, works))
    ideal = out["round_robin"] - out["staircase"]
    out["bal_over_stair"] = out["bal"] / out["staircase"] - 1
    out["rr_over_oracle_rr"] = out["rr"] / out["round_robin"] - 1
    out["gain_captured"] = (out["rr"] - out["bal"]) / ideal if ideal > 1e-9 else None
    return out


def table(name, rows):
    print("\n%s" % name)
    print("| N | oracle RR | staircase | RR | balanced | balanced vs staircase | gain captured "
          "| moves/task | A->B->A |")
    print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        gain = "-" if r["gain_captured"] is None else "%.0f%%" % (100 * r["gain_captured"])
        print("| %d | %.2f | %.2f | %.2f | %.2f | %+.1f%% | %s | %.2f | %d |" % (
            r["n"], r["round_robin"], r["staircase"], r["rr"], r["bal"],
            100 * r["bal_over_stair"], gain, r["bal_moves"] / r["n"], r["bal_back_and_forth"]))
    sys.stdout.flush()


def summary(rows):
    over = [r["bal_over_stair"] for r in rows]
    gains = [r["gain_captured"] for r in rows if r["gain_captured"] is not None]
    rr = [r["rr_over_oracle_rr"] for r in rows]
    print("balanced vs staircase: mean %+.1f%%, worst %+.1f%%; RR vs oracle RR: worst %+.1f%%%s"
          % (100 * statistics.mean(over), 100 * max(over), 100 * max(rr, key=abs),
             "; gain captured: median %.0f%%" % (100 * statistics.median(gains)) if gains else ""))


def plot(name, rows, out):
    series = [("oracle round-robin", [(r["n"], r["round_robin"]) for r in rows]),
              ("staircase optimum", [(r["n"], r["staircase"]) for r in rows]),
              ("round-robin (measured)", [(r["n"], r["rr"]) for r in rows]),
              ("balanced (measured)", [(r["n"], r["bal"]) for r in rows])]
    path = os.path.join(out, "%s.svg" % name.lower())
    with open(path, "w") as f:
        f.write(line_plot(series, "tasks (N)", "completion time (s)", name))
    print("plot:", path)


def experiments(reps):
    fast16 = [1000] * 16
    return {
        "E1": [(fast16, n, 3000, "virtual", None) for n in E1_N],
        "E1R": [([400] * 4, n, 1000, "real", None) for n in (5, 6)],
        "E2V": [(fast16 + [333] * 4, n, 3000, "virtual", None)
                for n in (16, 17, 20, 24, 32, 36, 40)],
        "E2R": [([600, 600, 200, 200], 8, 2000, "real", None)],
        "E3": [(fast16, n, 3000, "virtual", seed) for n in (17, 24, 36) for seed in range(1, 6)],
    }


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("build")
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--only", default="E1,E1R,E2V,E2R,E3")
    ap.add_argument("--n", default="", help="only these N (comma-separated), for a quick look")
    ap.add_argument("--out", default=".")
    args = ap.parse_args()
    runner = Runner(args.build)
    results = {}
    for name, points in experiments(args.reps).items():
        if name not in args.only.split(","):
            continue  # (E10 runs after the others)
        if args.n:
            points = [p for p in points if str(p[1]) in args.n.split(",")]
        # E3's five seeds are its repetitions: one run of each.
        reps = 1 if name == "E3" else args.reps
        rows = [point(runner, sp, n, w, cpu, reps, seed) for sp, n, w, cpu, seed in points]
        if name == "E3":  # one row per N: the medians over the seeds
            rows = [merge_seeds([r for r, p in zip(rows, points) if p[1] == n])
                    for n in sorted({p[1] for p in points})]
        results[name] = rows
        table(name, rows)
        summary(rows)
        if len(rows) > 2:
            plot(name, rows, args.out)
    with open(os.path.join(args.out, "results.json"), "w") as f:
        json.dump(results, f, indent=1)
    if "E10" in args.only.split(","):
        stability(runner, args.reps, args.out)
    if "RING" in args.only.split(","):
        ring_check(runner, args.reps, args.out)
    if "E12" in args.only.split(","):
        chatty_check(runner, args.reps, args.out)
    if "E4" in args.only.split(","):
        background_check(runner, args.reps, args.out)
    if "E4V" in args.only.split(","):
        background_tasks_check(runner, args.reps, args.out)


STEADY = [("3 tasks on 2 hosts", [1000] * 2, 3), ("17 tasks on 16 hosts", [1000] * 16, 17),
          ("1 fast + 1 slow host, 2 tasks", [1000, 333], 2),
          ("overloaded: 16 tasks on 4 hosts", [1000] * 4, 16)]


def stability(runner, reps, out):
    """E10 (the digest's steady loads): tasks of 20 s (2000 s of MOSIX's
    time), balancer on. Moves per task, tasks that went back to a host they
    had left, and the moves once settled: after the first 2 s and before the
    first task ends (a task that ends changes the load)."""
    rows = []
    for name, speeds, n in STEADY:
        for _ in range(reps):
            j = runner.job(speeds, n, 20000, "virtual", "on")
            settled = [m for m in j["moves"]
                       if j["start"] + 2.0 <= m["request_ns"] / 1e9 < j["first_end"]]
            window = j["first_end"] - j["start"] - 2.0
            rows.append({"load": name, "n": n, "time": j["time"], "moves": len(j["moves"]),
                         "back_and_forth": back_and_forth(j["moves"]),
                         "settled_moves": len(settled), "settled_s": window})
    print("\nE10: stability under steady loads (tasks of 20 s, balancer on)")
    print("| load | time | moves/task | A->B->A | moves once settled | settled for |")
    print("|---|---:|---:|---:|---:|---:|")
    for r in rows:
        print("| %s | %.2f s | %.2f | %d | %d | %.1f s |" % (
            r["load"], r["time"], r["moves"] / r["n"], r["back_and_forth"], r["settled_moves"],
            r["settled_s"]))
    with open(os.path.join(out, "e10.json"), "w") as f:
        json.dump(rows, f, indent=1)


def ring_check(runner, reps, out):
    """Never worse (issue 14 section 5.5): a lock-step ring of 16
    communicating tasks (bench/move_ring) on 4 equal hosts (400 each: 1.6 CPUs), balancer off and
    on. The ring's time and the moves the balancer made."""
    rows = {}
    for balance in ("off", "on"):
        times, moves = [], []
        for _ in range(reps):
            trace = os.path.join(runner.tmp, "trace.json")
            cmd = [os.path.join(runner.bin, "prun"), "--hosts", "a:400,b:400,c:400,d:400", "--balance", balance,
                   "--stdin", "none", "--trace", trace,
                   os.path.join(runner.bin, "move_ring"), "16", "6000"]
            env = dict(os.environ, MPVM_RUNDIR=os.path.join(runner.tmp, "run"), **SCALED)
            r = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=900)
            m = re.search(r"\bring ([0-9.]+) s$", r.stdout, re.M)
            if r.returncode != 0 or not m:
                raise RuntimeError("ring failed: " + r.stderr[-2000:])
            times.append(float(m.group(1)))
            moves.append(count_moves(trace))
        rows[balance] = {"time": statistics.median(times), "times": times,
                         "moves": statistics.median(moves)}
    print("\nRING: 16 communicating tasks on 4 hosts at 400 (move_ring 16 6000)")
    print("| balancer | ring time (median) | runs | moves (median) |")
    print("|---|---:|---|---:|")
    for b, r in rows.items():
        print("| %s | %.2f s | %s | %g |" % (b, r["time"], ", ".join("%.2f" % t for t in r["times"]),
                                          r["moves"]))
    print("balanced vs off: %+.1f%%" % (100 * (rows["on"]["time"] / rows["off"]["time"] - 1)))
    with open(os.path.join(out, "ring.json"), "w") as f:
        json.dump(rows, f, indent=1)


def background_check(runner, reps, out):
    """E4 (background load, issue 14 section 5.3) in real-CPU mode: the
    digest's recipe (background on half of the hosts, running and suspended
    in turn for U(0, 30) s against 300 s tasks) scaled to 4 hosts at 400 and
    tasks of 2 s. The background is no PVM task, so it cannot move (the
    digest's variant a). Round-robin without background ("clean"), with it,
    and balanced with it; the same background seeds in each arm.

    The oracle's background (balancer/oracle.h) is fitted to the measured
    round-robin arm: b on h0 and h1 such that the oracle's round-robin is
    slowed by as much as the measured one (its own start-up overhead
    aside). E4's loop runs half of the time, yet slows round-robin as a
    process running two thirds to all of the time would (the scheduler
    favours a process just continued). The gain captured is the fraction of
    round-robin's time saved, over the fraction the oracle's staircase saves
    under that background."""
    rows = []
    for n in (4, 5, 6, 8):
        row = {"n": n}
        for arm, balance, bg in (("clean", "off", False), ("rr", "off", True),
                                 ("bal", "on", True)):
            runs = [runner.job([400] * 4, n, 2000, "real", balance,
                               background=Background(["h0", "h1"], 0.2, rep) if bg else None)
                    for rep in range(reps)]
            row[arm] = statistics.median(r["time"] for r in runs)
            row[arm + "_moves"] = statistics.median(len(r["moves"]) for r in runs) / n
        row["background"] = fit_background(runner, runs[0]["works"], row["rr"] / row["clean"])
        row.update(runner.oracle([400] * 4, runs[0]["works"], background=[row["background"]] * 2
                                 + [0, 0]))
        ideal = 1 - row["staircase"] / row["round_robin"]
        row["gain_captured"] = (1 - row["bal"] / row["rr"]) / ideal if ideal > 1e-9 else None
        rows.append(row)
    print("\nE4: background load on h0 and h1 of 4 hosts at 400 (tasks of 2 s, real CPU)")
    print("| N | RR, no background | RR | balanced | RR slowdown from background "
          "| fitted b | oracle RR | staircase | balanced vs RR | gain captured | moves/task |")
    print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        gain = "-" if r["gain_captured"] is None else "%.0f%%" % (100 * r["gain_captured"])
        print("| %d | %.2f | %.2f | %.2f | %+.0f%% | %.2f | %.2f | %.2f | %+.1f%% | %s | %.2f |" % (
            r["n"], r["clean"], r["rr"], r["bal"], 100 * (r["rr"] / r["clean"] - 1),
            r["background"], r["round_robin"], r["staircase"], 100 * (r["bal"] / r["rr"] - 1),
            gain, r["bal_moves"]))
    with open(os.path.join(out, "e4.json"), "w") as f:
        json.dump(rows, f, indent=1)


def background_tasks_check(runner, reps, out):
    """E4 as the digest gives it, in virtual-work mode: 16 hosts at 1000,
    one background task on each of h0-h7 (work_task -b 8: computing for
    U(0, 300) ms of work and sleeping U(0, 0.3) s in turn, MOSIX's U(0, 30)
    s scaled by 1/100) and N tasks of W = 3 s, placed by round-robin after
    them (task i on h(8 + i) mod 16). Variant a: the background tasks hold a
    file lock, so mpvm will not move them; variant b: they may move. The
    oracle's background b on h0-h7 is derived from the recipe
    (background_tasks_oracle)."""
    speeds, rows = [1000] * 16, []
    for n in (16, 20, 24, 32):
        row = {"n": n}
        arms = (("clean", "off", None), ("rr", "off", (8, "pinned")),
                ("bal_pinned", "on", (8, "pinned")), ("bal_movable", "on", (8, "movable")))
        for arm, balance, bg in arms:
            runs = [runner.job(speeds, n, 3000, "virtual", balance, bg_tasks=bg)
                    for _ in range(reps)]
            row[arm] = statistics.median(r["time"] for r in runs)
            row[arm + "_moves"] = statistics.median(len(r["moves"]) for r in runs) / n
        row["works"] = runs[0]["works"]
        rows.append(background_tasks_oracle(runner, row))
    e4v_table(rows)
    with open(os.path.join(out, "e4v.json"), "w") as f:
        json.dump(rows, f, indent=1)


def e4v_table(rows):
    print("\nE4, mode V: background tasks on h0-h7 of 16 hosts at 1000 (tasks of 3 s)")
    print("| N | RR, no background | RR | RR slowdown | b | oracle RR | staircase "
          "| balanced, pinned bg | gain captured | moves/task | balanced, movable bg "
          "| gain captured | moves/task |")
    print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    pct = lambda g: "-" if g is None else "%.0f%%" % (100 * g)  # noqa: E731
    for r in rows:
        print("| %d | %.2f | %.2f | %+.0f%% | %.2f | %.2f | %.2f | %.2f | %s | %.2f | %.2f | %s "
              "| %.2f |" % (r["n"], r["clean"], r["rr"], 100 * (r["rr"] / r["clean"] - 1),
                            r["background"], r["round_robin"], r["staircase"], r["bal_pinned"],
                            pct(r["gain_pinned"]), r["bal_pinned_moves"], r["bal_movable"],
                            pct(r["gain_movable"]), r["bal_movable_moves"]))


def background_tasks_oracle(runner, row):
    """The oracle's view of an E4V row (its measured arms and works). In
    virtual-work mode a host's CPU is shared exactly, so b is derived, not
    fitted: a background task sleeps as long as it computes alone, and its
    computing stretches (k + 1) times beside k work tasks, so it is ready
    (k + 1) / (k + 2) of the time. k: the work tasks round-robin puts on
    h0 (task i on h(8 + i) mod 16). The oracle's host i is h(8 + i) mod 16,
    so the background is on its hosts 8-15."""
    n, speeds = row["n"], [1000] * 16
    k = sum(1 for i in range(n) if (8 + i) % 16 == 0)
    row["background"] = (k + 1) / (k + 2)
    mask = [0] * 8 + [1] * 8
    row.update(runner.oracle(speeds, row["works"],
                             background=[row["background"] * m for m in mask]))
    ideal = 1 - row["staircase"] / row["round_robin"]
    for v in ("pinned", "movable"):
        row["gain_" + v] = (1 - row["bal_" + v] / row["rr"]) / ideal if ideal > 1e-9 else None
    return row


def fit_background(runner, works, slowdown, speeds=None, mask=None):
    """The background b on h0 and h1 of 4 hosts at 400 that slows the
    oracle's round-robin by `slowdown` (measured RR with / without), by
    bisection: round-robin's time grows with b. Other `speeds`, with the
    background on the hosts `mask` marks, likewise."""
    speeds = speeds or [400] * 4
    mask = mask or [1, 1, 0, 0]
    clean = runner.oracle(speeds, works)["round_robin"]
    lo, hi = 0.0, 8.0
    for _ in range(30):
        mid = (lo + hi) / 2
        t = runner.oracle(speeds, works, background=[mid * m for m in mask])["round_robin"]
        lo, hi = (mid, hi) if t < clean * slowdown else (lo, mid)
    return (lo + hi) / 2


def migrations(trace):
    """The moves' records in a --trace file."""
    with open(trace) as f:
        return [e["args"] for e in json.load(f)["traceEvents"]
                if e.get("cat") == "migration" and "args" in e]


def count_moves(trace):
    return len(migrations(trace))


def chatty_check(runner, reps, out):
    """E12 (communication-aware, issue 14 section 5.6): 2 pairs of tasks in
    4 KiB ping-pong (bench/chatty_pairs) that round-robin splits across 2
    hosts at 800, joined by 100 Mbit/s links (MPVM_EMULATE_LINK), balancer
    off and on. The tasks' net communication time summed, the job's time and
    the moves."""
    rows = {}
    for balance in ("off", "on"):
        comm, elapsed, moves = [], [], []
        for _ in range(reps):
            trace = os.path.join(runner.tmp, "trace.json")
            cmd = [os.path.join(runner.bin, "prun"), "--hosts", "a:800,b:800", "--balance",
                   balance, "--stdin", "none", "--trace", trace, "-n", "4",
                   os.path.join(runner.bin, "chatty_pairs"), "30000", "4096"]
            env = dict(os.environ, MPVM_RUNDIR=os.path.join(runner.tmp, "run"),
                       MPVM_EMULATE_LINK="100mbit")
            r = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=900)
            found = re.findall(r"^comm ([0-9.]+) s elapsed ([0-9.]+) s$", r.stdout, re.M)
            if r.returncode != 0 or len(found) != 4:
                raise RuntimeError("chatty_pairs failed: " + r.stdout[-1000:] + r.stderr[-2000:])
            comm.append(sum(float(c) for c, _ in found))
            elapsed.append(max(float(e) for _, e in found))
            moves.append(count_moves(trace))
        rows[balance] = {"comm": statistics.median(comm), "comms": comm,
                         "time": statistics.median(elapsed), "moves": statistics.median(moves)}
    print("\nE12: 2 chatty pairs split across a:800,b:800, 100 Mbit/s links (chatty_pairs 30000 4096)")
    print("| balancer | communication time (sum of 4 tasks, median) | runs | job time | moves |")
    print("|---|---:|---|---:|---:|")
    for b, r in rows.items():
        print("| %s | %.2f s | %s | %.2f s | %g |" % (
            b, r["comm"], ", ".join("%.2f" % c for c in r["comms"]), r["time"], r["moves"]))
    print("communication time, balanced vs off: %+.1f%%"
          % (100 * (rows["on"]["comm"] / rows["off"]["comm"] - 1)))
    with open(os.path.join(out, "e12.json"), "w") as f:
        json.dump(rows, f, indent=1)


def merge_seeds(rows):
    out = {"n": rows[0]["n"]}
    for k, v in rows[0].items():
        if k != "n" and all(isinstance(r[k], (int, float)) for r in rows):
            out[k] = statistics.median(r[k] for r in rows)
    out["gain_captured"] = statistics.median(
        r["gain_captured"] for r in rows if r["gain_captured"] is not None)
    out["bal_back_and_forth"] = max(r["bal_back_and_forth"] for r in rows)
    return out


if __name__ == "__main__":
    main()
