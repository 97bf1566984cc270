"""A move interrupts nothing (docs/design/migration.md, "What a move never
disturbs"). A task in a blocking call of its own when its move is asked for
(sleep, nanosleep, a pipe read, poll) finishes that call exactly as if no
move had been asked for, whether the move then happens or is refused. A task
holding what a move would lose (a child process, an armed alarm) is refused
and shown pinned, and what it holds keeps working: the child's output
arrives, the alarm fires on time.

Each case is mig_task `call C ARG`: it says "start", makes call C (3 s),
prints what the call returned and how long it took, then computes for 1 s,
when a move asked for during the call happens."""
import os
import re
import subprocess
import threading
import time

from harness import CONSOLE
from test_migrate import MigrateBase

CALL = r"call (\w+) returned (-?\d+) errno (\d+) after ([\d.]+) s"


class MovesInterruptNothingTest(MigrateBase):
    def setUp(self):
        super().setUp()
        self.start_vm("alpha", "beta")

    def start_calls(self, calls, *extra):
        """Starts one task per (call, arg) on alpha; returns [(process, tid)]
        once each has said "start" (its call begins then)."""
        started = []
        for call, arg in calls:
            p = self.start("call", call, arg, *extra, host="alpha")
            if call == "read":  # the FIFO's writer: the task opens it before "start"
                self.fifo_writer = self.open_writer(arg)
            started.append((p, self.first_line(p)[1]))
            if call == "read":  # the data comes 3 s into the read
                threading.Timer(3.0, self.write_fifo).start()
        return started

    def open_writer(self, path, timeout=30):
        deadline = time.monotonic() + timeout
        while True:
            try:
                return os.open(path, os.O_WRONLY | os.O_NONBLOCK)
            except OSError:  # ENXIO until the task has opened its end
                self.assertLess(time.monotonic(), deadline, "the task never opened the FIFO")
                time.sleep(0.01)  # polling for the reader, with a deadline

    def make_fifo(self):
        path = os.path.join(self.tmp, "fifo")
        os.mkfifo(path)
        return path

    def write_fifo(self):
        os.write(self.fifo_writer, b"hello")
        os.close(self.fifo_writer)

    def results(self, started):
        """Each task's call line (name, returned, errno, seconds) and output."""
        out = []
        for p, tid in started:
            text, err = p.communicate(timeout=60)
            self.assertEqual(p.returncode, 0, err)
            m = re.search(CALL, text)
            self.assertIsNotNone(m, text)
            out.append(((m.group(1), int(m.group(2)), int(m.group(3)), float(m.group(4))), text))
        return out

    def assert_undisturbed(self, results):
        want = {"sleep": 0, "nanosleep": 0, "poll": 0, "read": 5}  # read: "hello"
        for (call, returned, errno, secs), _ in results:
            self.assertEqual((returned, errno), (want[call], 0), call)
            self.assertGreaterEqual(secs, 2.95, call)  # its whole time, not cut short
            self.assertLess(secs, 4.0, call)           # and not slept again

    def ask_to_move(self, started, tolerate_refusal):
        """1 s into the calls, asks every task at once to move to beta;
        returns the console's answers (each comes once its move is done)."""
        time.sleep(1.0)  # the scenario: the move is asked for 1 s into the call
        env = dict(self.env, MPVM_RUNDIR=self.rundir)
        asks = [subprocess.Popen([CONSOLE, "migrate", tid, "beta"], env=env, text=True,
                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE)
                for _, tid in started]
        answers = []
        for a in asks:
            out, err = a.communicate(timeout=60)
            if not tolerate_refusal:
                self.assertEqual(a.returncode, 0, err)
            answers.append(subprocess.CompletedProcess(a.args, a.returncode, out, err))
        return answers

    def test_calls_in_progress_end_as_if_no_move_had_been_asked_for(self):
        started = self.start_calls([("sleep", "3"), ("nanosleep", "3"), ("poll", "3"),
                                    ("read", self.make_fifo())])
        answers = self.ask_to_move(started, tolerate_refusal=False)
        for r in answers:
            self.assertIn("moved to beta", r.stdout)
        self.assert_undisturbed(self.results(started))

    def test_calls_in_progress_end_as_if_no_move_had_been_asked_for_when_it_is_refused(self):
        started = self.start_calls([("sleep", "3"), ("nanosleep", "3"), ("poll", "3"),
                                    ("read", self.make_fifo())], "pinned")
        answers = self.ask_to_move(started, tolerate_refusal=True)
        for r in answers:
            self.assertEqual(r.returncode, 1, r.stdout)
            self.assertIn("pipe", r.stderr)  # the task's own reason, once its call returned
        self.assert_undisturbed(self.results(started))

    def test_a_task_in_system_is_refused_and_its_command_prints(self):
        started = self.start_calls([("system", "2")])
        [r] = self.ask_to_move(started, tolerate_refusal=True)
        self.assertEqual(r.returncode, 1)
        self.assertIn("child process", r.stderr)
        tid = started[0][1]
        self.assertRegex(self.console("ps").stdout, r"%s is pinned: .*child process" % tid)
        [((_, returned, errno, secs), text)] = self.results(started)
        self.assertEqual((returned, errno), (0, 0))
        self.assertIn("done\n", text.replace("[%s] " % tid, ""))
        self.assertGreaterEqual(secs, 1.95)

    def test_an_armed_alarm_is_refused_and_fires_on_time(self):
        started = self.start_calls([("alarm", "2")])
        [r] = self.ask_to_move(started, tolerate_refusal=True)
        self.assertEqual(r.returncode, 1)
        self.assertIn("alarm", r.stderr)
        [((_, fired, _, secs), _)] = self.results(started)
        self.assertEqual(fired, 1)
        self.assertGreaterEqual(secs, 1.95)
        self.assertLess(secs, 2.5)


if __name__ == "__main__":
    import unittest
    unittest.main()
