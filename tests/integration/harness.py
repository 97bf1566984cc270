"""Shared helpers for mpvm's integration tests (real daemons and processes).

Tests synchronise on events -- a line appearing on a pipe, a process
exiting, a socket answering -- never on sleep.
"""
import glob
import os
import sys
import select
import signal
import subprocess
import tempfile
import time
import unittest

BUILD = os.environ["MPVM_BUILD"]
BIN = os.path.join(BUILD, "bin")
PRUN = os.path.join(BIN, "prun")
CONSOLE = os.path.join(BIN, "mpvm")
MPVMD = os.path.join(BIN, "mpvmd")
CHILD = os.path.join(BIN, "mpvm_test_child")
RING = os.path.join(BIN, "ring")


def mpvm_processes(rundir, names=(b"mpvmd", b"mpvm_test_child", b"ring")):
    """PIDs of mpvm daemons and test tasks (by command name) that belong to `rundir`."""
    found = []
    for proc in glob.glob("/proc/[0-9]*"):
        try:
            with open(proc + "/environ", "rb") as f:
                env = f.read().split(b"\0")
            with open(proc + "/cmdline", "rb") as f:
                cmd = f.read().replace(b"\0", b" ")
            with open(proc + "/comm", "rb") as f:
                comm = f.read().strip()
        except OSError:
            continue
        mine = any(e.startswith(b"MPVM_RUNDIR=" + rundir.encode()) for e in env) or \
            rundir.encode() in cmd
        if mine and comm in names:
            found.append(int(proc.rsplit("/", 1)[1]))
    return found


def wait_for_line(stream, predicate, timeout=30):
    """Reads lines from a pipe until one satisfies predicate; returns all read."""
    deadline = time.monotonic() + timeout
    seen = []
    buf = b""
    fd = stream.fileno()
    while time.monotonic() < deadline:
        r, _, _ = select.select([fd], [], [], max(0.0, deadline - time.monotonic()))
        if not r:
            break
        chunk = os.read(fd, 65536)
        if not chunk:
            break
        buf += chunk
        while b"\n" in buf:
            line, buf = buf.split(b"\n", 1)
            seen.append(line.decode(errors="replace"))
            if predicate(seen[-1]):
                return seen
    raise AssertionError(f"timed out waiting for a line; saw {seen[-10:]}")


def start_reporting(argv, env, log=None):
    """Starts a daemon with --ready-fd and waits for its readiness report;
    returns (process, what it reported: "ok\\n" or "error: ...").

    The daemon's stderr goes to the file `log` when given. A long test must
    give one: nobody reads a pipe while the test runs, and a daemon that
    fills it blocks on its next log line."""
    r, w = os.pipe()
    err = open(log, "w") if log else subprocess.PIPE
    p = subprocess.Popen([*argv, "--ready-fd", str(w)], pass_fds=(w,), env=env,
                         stdout=subprocess.DEVNULL, stderr=err, text=True)
    if log:
        err.close()
    os.close(w)
    said = b""
    while not said.endswith(b"\n"):
        chunk = os.read(r, 4096)
        if not chunk:
            break
        said += chunk
    os.close(r)
    return p, said.decode()


class VmTestCase(unittest.TestCase):
    """Each test gets a private runtime directory (so tests never share a VM)."""

    def setUp(self):
        self.tmp = tempfile.mkdtemp(prefix="mpvm-it-")
        self.rundir = os.path.join(self.tmp, "run")
        self.env = dict(os.environ, MPVM_RUNDIR=self.rundir)
        self.env.pop("LD_LIBRARY_PATH", None)

    def tearDown(self):
        subprocess.run([CONSOLE, "halt"], env=self.env, capture_output=True, timeout=30)
        for pid in mpvm_processes(self.rundir):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass  # it finished exiting meanwhile
        if os.environ.get("MPVM_KEEP_TMP"):
            print("kept", self.tmp, file=sys.stderr)  # logs and runtime dirs, for a post-mortem
        else:
            subprocess.run(["rm", "-rf", self.tmp])

    def assertNothingLeft(self, rundir=None):
        rundir = rundir or self.rundir
        # A daemon that has just closed its last connection may still be
        # exiting: wait for each process's exit event (pidfd), up to 10 s.
        for pid in mpvm_processes(rundir):
            try:
                fd = os.pidfd_open(pid)
            except OSError:
                continue
            select.select([fd], [], [], 10)
            os.close(fd)
        # The embedded VM's directory is <rundir>.p<pid>.
        left = [p for p in glob.glob(rundir + "*") if os.path.exists(p)]
        self.assertEqual(left, [], "runtime files left behind")
        self.assertEqual(mpvm_processes(rundir), [], "mpvm processes left behind")

    def prun(self, *args, timeout=60, **kw):
        return subprocess.run([PRUN, *args], env=self.env, capture_output=True, text=True,
                              timeout=timeout, **kw)
