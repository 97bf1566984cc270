#!/usr/bin/env python3
"""Differential test: PVM's own example programs under Debian's PVM 3.4.6 and
under mpvm must print the same things, apart from tids and timings.

For every scenario it runs:
  reference  Debian's prebuilt binaries under Debian's pvmd;
  source     the package's C sources, unmodified, built against mpvm's pvm3.h
             and libpvm3, on a VM the mpvm console started;
  prebuilt   Debian's prebuilt binaries, unchanged, with mpvm's libpvm3 on
             LD_LIBRARY_PATH, on the same VM;
  prun       the prebuilt binaries launched by prun (embedded VM);
  4-host     the source builds on a VM of four hosts (the master and three
             emulated hosts), where spawned tasks go round-robin over all;
  moved-1, moved-10
             the source builds on such a VM whose daemons move every task
             they spawn to the next host at its first PVM call, and (10)
             again at the first call after each move, ten times in all
             (MPVM_TEST_MOVES); the output must not change;
  prebuilt-moved-1, prebuilt-moved-10
             the same with Debian's prebuilt binaries. Left out of
             sanitizer builds (shadow memory cannot move) and when
             MPVM_DIFF_MOVES=0.

usage: differential.py BUILD_DIR SOURCE_DIR [scenario ...]
"""
import difflib
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile

BUILD, SRC = os.path.abspath(sys.argv[1]), os.path.abspath(sys.argv[2])
ONLY = sys.argv[3:]
TIMEOUT = 60

# name -> (source file, extra cflags)
PROGRAMS = {
    "hello": ("hello.c", []), "hello_other": ("hello_other.c", []),
    "master1": ("master1.c", []), "slave1": ("slave1.c", []),
    "spmd": ("spmd.c", []),
    "timing": ("timing.c", []), "timing_slave": ("timing_slave.c", []),
    "inherit1": ("inherit1.c", []), "inherit2": ("inherit2.c", []),
    "inherit3": ("inherit3.c", []), "inherita": ("inherita.c", []),
    "inheritb": ("inheritb.c", []),
    "gmbi": ("gmbi.c taskf.c", []),
    "task0": ("task0.c taskf.c", []), "task1": ("task1.c taskf.c", []),
    "task_end": ("task_end.c", []),
    "gexample": ("gexample.c", []),
    "dbwtest": ("bwtest.c", ["-DENCODE=PvmDataDefault", "-DPACK"]),
    "ibwtest": ("bwtest.c", ["-DPACK", "-DENCODE=PvmDataInPlace"]),
    "pbwtest": ("bwtest.c", []),
    "rbwtest": ("bwtest.c", ["-DPACK", "-DENCODE=PvmDataRaw"]),
}
PREBUILT_NAME = {"hello": "hello.pvm"}

# Scenarios: steps are ("run", argv) in the foreground, ("bg", argv) in the
# background, ("wait_mbox", name), ("launch", n, argv) for N copies whose
# output is collected, ("join",) to wait for background steps.
# Flags: numbers = timings vary, mask all numbers; sort = lines arrive in
# any order.
SCENARIOS = {
    "hello": ([("run", ["hello"])], {}),
    # master1 starts 3 workers per host, so its output depends on the host count.
    "master1": ([("run", ["master1"])], {"sort": True, "single_host": True}),
    "spmd": ([("launch", 4, ["spmd"])], {}),
    "timing": ([("run", ["timing"])], {"numbers": True}),
    "inherit1": ([("run", ["inherita", "inherit1"])], {}),
    "inherit3": ([("run", ["inherita", "inherit3"])], {}),
    "gmbi": ([("run", ["gmbi"])], {}),
    # Started together (spmd style): join, pvm_freezegroup(nsibs), pvm_reduce
    # with PvmSum and a user function, then a barrier. The freeze must wait
    # for all four to join (it once froze a group of one: 1-Norm 2200).
    "gexample": ([("launch", 4, ["gexample"])], {}),
    "mbox": ([("bg", ["task0", "svc", "d"]), ("wait_mbox", "svc"),
              ("run", ["task1", "svc", "0", "d"]), ("run", ["task_end", "svc", "0"]),
              ("join",)], {"sort_blocks": True}),
    "dbwtest": ([("launch", 2, ["dbwtest"])], {"numbers": True}),
    "ibwtest": ([("launch", 2, ["ibwtest"])], {"numbers": True}),
    "pbwtest": ([("launch", 2, ["pbwtest"])], {"numbers": True}),
    "rbwtest": ([("launch", 2, ["rbwtest"])], {"numbers": True}),
}

# Things that look like tids (host field 1..16, small local part), written as
# t40003 / 40003 (hex) or 262147 (decimal), whatever host they were born on.
HEX_TID_RE = re.compile(r"(?<![.\d])\bt?[0-9a-f]{5,7}\b")
DEC_TID_RE = re.compile(r"(?<![.\d])\b\d{6,8}\b")


def looks_like_tid(v):
    return 1 <= (v >> 18) <= 16 and 0 < (v & 0x3ffff) < 0x1000


def mask_tids(line):
    line = HEX_TID_RE.sub(lambda m: "TID" if looks_like_tid(int(m.group(0).lstrip("t"), 16))
                          else m.group(0), line)
    return DEC_TID_RE.sub(lambda m: "TID" if looks_like_tid(int(m.group(0))) else m.group(0), line)
NUM_RE = re.compile(r"[-+]?\d+(\.\d+)?")
PREFIX_RE = re.compile(r"^\[(t[0-9a-f]+)\] ?(.*)$")


def normalize(text, flags):
    """Splits output into per-task streams and masks what may differ."""
    streams, main = {}, []
    for line in text.splitlines():
        m = PREFIX_RE.match(line)
        if m:
            if m.group(2) in ("BEGIN", "EOF"):
                continue
            streams.setdefault(m.group(1), []).append(m.group(2))
        else:
            main.append(line)
    out = []
    for s in [main] + list(streams.values()):
        lines = []
        for line in s:
            line = mask_tids(line)
            if flags.get("numbers"):
                # Measurements: a time such as 262155 us may look like a
                # tid (t4000b), so tids and numbers are one class here.
                line = " ".join(NUM_RE.sub("N", line).replace("TID", "N").split())
            lines.append(line.rstrip())
        while lines and lines[-1] == "":
            lines.pop()
        if flags.get("sort") or flags.get("sort_blocks"):
            lines.sort()
        if lines:
            out.append(lines)
    out.sort()
    return out


class Env:
    def __init__(self, name, env, bindir, launcher, waitinfo, prun=False):
        self.name, self.env, self.bindir = name, env, bindir
        self.launcher, self.waitinfo, self.prun = launcher, waitinfo, prun

    def exe(self, prog):
        if self.bindir == "/usr/bin":
            return PREBUILT_NAME.get(prog, prog)
        return os.path.join(self.bindir, prog)

    def run_steps(self, steps):
        out, bg = [], []
        for step in steps:
            if step[0] == "run":
                argv = [self.exe(step[1][0])] + step[1][1:]
                if self.prun:
                    argv = [os.path.join(BUILD, "bin", "prun"), "-n", "1", "--tag-output", "none",
                            "--stdin", "none"] + argv
                r = subprocess.run(argv, env=self.env, capture_output=True, text=True,
                                   timeout=TIMEOUT, cwd=self.env["HOME"])
                out.append(r.stdout)
            elif step[0] == "bg":
                argv = [self.exe(step[1][0])] + step[1][1:]
                bg.append(subprocess.Popen(argv, env=self.env, stdout=subprocess.PIPE,
                                           stderr=subprocess.DEVNULL, text=True,
                                           cwd=self.env["HOME"]))
            elif step[0] == "wait_mbox":
                subprocess.run([self.waitinfo, step[1]], env=self.env, check=True, timeout=TIMEOUT)
            elif step[0] == "join":
                for p in bg:
                    o, _ = p.communicate(timeout=TIMEOUT)
                    out.append(o)
            elif step[0] == "launch":
                n, argv = step[1], step[2]
                if self.prun:
                    cmd = [os.path.join(BUILD, "bin", "prun"), "-n", str(n), "--tag-output", "tid",
                           "--stdin", "none", self.exe(argv[0])] + argv[1:]
                else:
                    cmd = [self.launcher, str(n), self.exe(argv[0])] + argv[1:]
                r = subprocess.run(cmd, env=self.env, capture_output=True, text=True,
                                   timeout=TIMEOUT, cwd=self.env["HOME"])
                out.append(r.stdout)
        return "\n".join(out)


def sh(cmd, **kw):
    subprocess.run(cmd, check=True, **kw)


def main():
    missing = [f for f in ("/usr/share/doc/pvm-examples/examples.tar.gz", "/usr/bin/pvm",
                           "/usr/include/pvm3.h") if not os.path.exists(f)]
    if missing:
        print("SKIP: Debian's PVM is not installed (missing " + ", ".join(missing) +
              "); run scripts/setup.sh")
        return 77
    work = tempfile.mkdtemp(prefix="mpvm-diff-")
    failures = []
    deb_env = ours_env = None
    vms = []
    try:
        with tarfile.open("/usr/share/doc/pvm-examples/examples.tar.gz") as t:
            t.extractall(work)
        ex = os.path.join(work, "examples")
        ours = os.path.join(work, "ours")
        os.makedirs(ours)
        inc, lib = os.path.join(SRC, "pvmcompat", "include"), os.path.join(BUILD, "lib")
        cflags = ["-std=gnu89", "-w", "-O1", "-DHASSTDLIB", "-DSYSVSTR"]
        for prog, (srcs, extra) in PROGRAMS.items():
            files = [os.path.join(ex, s) for s in srcs.split()]
            sh(["cc"] + cflags + extra + ["-I", inc, "-o", os.path.join(ours, prog)] + files +
               ["-L", lib, "-Wl,-rpath," + lib, "-lgpvm3", "-lpvm3"])
        here = os.path.dirname(os.path.abspath(__file__))
        for tool in ("launcher", "waitinfo"):
            sh(["cc", "-w", "-I", inc, "-o", os.path.join(ours, tool + "_mpvm"),
                os.path.join(here, tool + ".c"), "-L", lib, "-Wl,-rpath," + lib, "-lpvm3"])
            sh(["cc", "-w", "-o", os.path.join(work, tool + "_deb"), os.path.join(here, tool + ".c"),
                "-lpvm3"])
        print(f"built {len(PROGRAMS)} examples from the package sources against mpvm")

        # Reference: Debian's PVM. It finds programs in $HOME/pvm3/bin/LINUX64.
        dhome = os.path.join(work, "debhome")
        dbin = os.path.join(dhome, "pvm3", "bin", "LINUX64")
        os.makedirs(dbin)
        for prog in list(PROGRAMS) + ["hello.pvm"]:
            src = os.path.join("/usr/bin", PREBUILT_NAME.get(prog, prog))
            os.symlink(src, os.path.join(dbin, prog))
        os.symlink("/usr/lib/pvm3/lib/pvmgs", os.path.join(dbin, "pvmgs"))  # group server
        dtmp = os.path.join(work, "debtmp")
        os.makedirs(dtmp)
        deb_env = dict(os.environ, HOME=dhome, PVM_TMP=dtmp, PVM_ALLOW_ROOT="yes",
                       PVM_ROOT="/usr/lib/pvm3")
        sh(["pvm"], input=b"quit\n", env=deb_env, stdout=subprocess.DEVNULL, timeout=30)

        # mpvm: a VM started by the console, in a private runtime directory.
        mhome = os.path.join(work, "mhome")
        os.makedirs(mhome)
        rundir = os.path.join(work, "run")
        base = dict(os.environ, HOME=mhome, MPVM_RUNDIR=rundir)
        base.pop("LD_LIBRARY_PATH", None)
        sh([os.path.join(BUILD, "bin", "mpvm"), "conf"], env=base, stdout=subprocess.DEVNULL)
        ours_env = base
        src_env = dict(base, PATH=ours + ":" + base["PATH"])
        pre_env = dict(base, LD_LIBRARY_PATH=lib, PATH="/usr/bin:" + base["PATH"])
        # 4-host VMs: the master and three emulated hosts; spawned tasks are
        # placed round-robin over all four. Their daemons may move every task.

        def four_hosts(name, env, moves=0):
            vm = dict(env, MPVM_RUNDIR=os.path.join(work, name))
            if moves:
                vm["MPVM_TEST_MOVES"] = str(moves)
                vm["MPVM_KEEP_LOG"] = "1"  # counted at the end
            sh([os.path.join(BUILD, "bin", "mpvm"), "conf"], env=vm, stdout=subprocess.DEVNULL)
            vms.append(vm)
            for h in ("emu1", "emu2", "emu3"):
                sh([os.path.join(BUILD, "bin", "mpvm"), "add", h, "--local"], env=vm,
                   stdout=subprocess.DEVNULL)
            return vm

        mh_env = four_hosts("mh", src_env)
        # Migration needs the dev build (a sanitizer's shadow memory cannot move).
        libs = subprocess.run(["ldd", os.path.join(ours, "hello")], capture_output=True,
                              text=True).stdout
        movable = not any(s in libs for s in ("libasan", "libtsan", "libubsan"))
        moved = []
        want_moves = os.environ.get("MPVM_DIFF_MOVES", "1") != "0"
        if movable and want_moves:
            for n in (1, 10):
                moved += [
                    Env(f"moved-{n}", four_hosts(f"mv{n}", src_env, n), ours,
                        os.path.join(ours, "launcher_mpvm"), os.path.join(ours, "waitinfo_mpvm")),
                    Env(f"prebuilt-moved-{n}", four_hosts(f"pmv{n}", pre_env, n), "/usr/bin",
                        os.path.join(ours, "launcher_mpvm"), os.path.join(ours, "waitinfo_mpvm")),
                ]
        elif want_moves:
            print("note: a sanitizer build: the moved-* scenarios are left out")
        prun_env = dict(pre_env)
        prun_env.pop("MPVM_RUNDIR")
        prun_env["MPVM_RUNDIR"] = os.path.join(work, "prunrun")  # no VM there: embedded
        envs = [
            Env("reference", deb_env, "/usr/bin", os.path.join(work, "launcher_deb"),
                os.path.join(work, "waitinfo_deb")),
            Env("source", src_env, ours, os.path.join(ours, "launcher_mpvm"),
                os.path.join(ours, "waitinfo_mpvm")),
            Env("prebuilt", pre_env, "/usr/bin", os.path.join(ours, "launcher_mpvm"),
                os.path.join(ours, "waitinfo_mpvm")),
            Env("prun", prun_env, "/usr/bin", None, os.path.join(ours, "waitinfo_mpvm"),
                prun=True),
            Env("4-host", mh_env, ours, os.path.join(ours, "launcher_mpvm"),
                os.path.join(ours, "waitinfo_mpvm")),
        ] + moved
        if os.environ.get("DIFF_ENVS"):  # for debugging: only these (and the reference)
            keep = os.environ["DIFF_ENVS"].split(",") + ["reference"]
            envs = [e for e in envs if e.name in keep]
        for name, (steps, flags) in SCENARIOS.items():
            if ONLY and name not in ONLY:
                continue
            results = {}
            for e in envs:
                if e.prun and any(s[0] in ("bg", "wait_mbox") for s in steps):
                    continue  # the mailbox trio needs a VM that outlives each program
                if e.name in ("4-host",) + tuple(m.name for m in moved) and \
                        flags.get("single_host"):
                    continue
                try:
                    results[e.name] = normalize(e.run_steps(steps), flags)
                except subprocess.TimeoutExpired as t:
                    results[e.name] = [[f"TIMEOUT: {t.cmd}"]]
            ref = results.pop("reference")
            bad = [k for k, v in results.items() if v != ref]
            if bad:
                failures.append(name)
                print(f"FAIL {name}: differs under {', '.join(bad)}")
                flat = lambda streams: [l for s in streams for l in s + ["----"]]
                for k in bad:
                    diff = difflib.unified_diff(flat(ref), flat(results[k]), "reference", k,
                                                lineterm="", n=1)
                    print("\n".join(list(diff)[:40]))
            else:
                print(f"ok   {name} ({', '.join(results)} match the reference)")
    finally:
        if deb_env:
            subprocess.run(["pvm"], input=b"halt\n", env=deb_env, stdout=subprocess.DEVNULL,
                           stderr=subprocess.DEVNULL, timeout=30)
        if ours_env:
            for e in [ours_env] + vms:
                subprocess.run([os.path.join(BUILD, "bin", "mpvm"), "halt"], env=e,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        if os.environ.get("MPVM_KEEP_TMP"):
            print("kept", work)  # logs and builds, for a post-mortem
        else:
            shutil.rmtree(work, ignore_errors=True)
    total = len([n for n in SCENARIOS if not ONLY or n in ONLY])
    print(f"{total - len(failures)} passed, {len(failures)} failed")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
