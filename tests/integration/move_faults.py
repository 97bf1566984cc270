"""Randomised fault injection into a move (issue: moves stay atomic under
faults). One trial: a task on beta streams checksummed, numbered messages in
lock step with a partner on alpha (`mig_task stream`); it is asked to move to
gamma; at a random moment of the move one of these happens:

  kill-source        beta's daemon is killed (SIGKILL)
  kill-destination   gamma's daemon is killed
  kill-restore       the restoring process (or the moved task) on gamma is killed
  stop-destination   gamma's daemon is stopped past the failure timeout, then resumed

The outcome is what the tasks and the console said. Acceptable: the stream
completed (every message arrived once, in order and intact), or the task
was lost with a host or a killed process and its loss was reported (the
partner got PvmTaskExit). Never: a hang, a damaged or missing message, a
task that ran twice, or a move request left unanswered. Used by
test_migrate_faults.py (a few trials) and bench/move_faults.py (many)."""
import os
import re
import signal
import subprocess
import time

from harness import CONSOLE

FAULTS = ("kill-source", "kill-destination", "kill-restore", "stop-destination")
STREAM = "3000"
BALLAST_MIB = "100"  # as in the issue: the move takes about half a second
ANSWER_BOUND_S = 130  # docs/design/migration.md: every request answered within 120 s


def inject(case, fault):
    """Does `fault` to the VM of `case` (a MigrateBase test)."""
    if fault == "kill-source":
        case.daemons["beta"][0].send_signal(signal.SIGKILL)
    elif fault == "kill-destination":
        case.daemons["gamma"][0].send_signal(signal.SIGKILL)
    elif fault == "kill-restore":
        for pid in case.copies_on("gamma"):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass  # it ended meanwhile
    elif fault == "stop-destination":
        gamma = case.daemons["gamma"][0]
        gamma.send_signal(signal.SIGSTOP)
        time.sleep(5)  # the fault itself: stopped past the 3 s failure timeout
        gamma.send_signal(signal.SIGCONT)


def outcome(out, rc, asker_rc):
    """Classifies a finished trial; the second value says whether it is allowed."""
    movers = len(re.findall(r"mover got all", out))
    if movers > 1:
        return "ran twice", False
    if re.search(r"expected message|damaged", out):
        return "message lost or damaged", False
    if asker_rc is None:
        return "move request unanswered", False
    if rc == 0 and movers == 1 and "partner got all" in out:
        return "completed", True
    if "lost before message" in out or re.search(r"prun: task \S+ .*was lost", out):
        return "task lost with its host, reported", True
    return "failed unreported (rc %s)" % rc, False


def trial(case, fault, delay):
    """One trial; returns (outcome, allowed, seconds)."""
    case.start_vm("alpha", "beta", "gamma")
    start = time.monotonic()
    p = case.start("stream", STREAM, "alpha", BALLAST_MIB, host="beta")
    _, tid = case.first_line(p)
    asker = subprocess.Popen([CONSOLE, "migrate", tid, "gamma"], env=case.env,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    case.procs.append(asker)
    time.sleep(delay)  # the fault's random moment (the experiment, not a wait for an event)
    inject(case, fault)
    try:
        out, err = p.communicate(timeout=150)
        out += err
        rc = p.returncode
    except subprocess.TimeoutExpired:
        return "hung", False, time.monotonic() - start
    try:
        asker.communicate(timeout=ANSWER_BOUND_S)
        asker_rc = asker.returncode
    except subprocess.TimeoutExpired:
        asker_rc = None
    what, ok = outcome(out, rc, asker_rc)
    if not ok:
        what += " | last output: " + " / ".join(out.splitlines()[-4:])
    return what, ok, time.monotonic() - start
