"""Fault injection into migration (docs/design/migration.md, "Atomicity").

Each test kills the task, the source daemon or the destination daemon at one
step of the protocol (MPVM_FAULT makes a daemon do it at exactly that step)
and checks the rule: the task is never lost by the move and never runs
twice. Before the commit it stays at its source; after it, at its
destination, even if the source daemon dies."""
import random
import re
import subprocess
import time
import unittest

import move_faults
from harness import CONSOLE
from test_migrate import SPIN, MigrateBase, strip_tids

LONG_SPIN = "2000000000"  # about 5 s


def subsequence(lines, of):
    """Whether `lines` appear in `of` in the same order, none twice."""
    it = iter(of)
    return all(line in it for line in lines)


class MigrateFaultTest(MigrateBase):
    def wait_until(self, what, condition, timeout=20):
        deadline = time.monotonic() + timeout
        while not condition():
            if time.monotonic() > deadline:
                self.fail("timed out waiting until " + what)
            time.sleep(0.05)  # polling a condition with a deadline, not a delay

    def assert_no_copy_on(self, name):
        """The destination's restore process goes away: no second copy."""
        self.wait_until("no copy of the task is left on " + name,
                        lambda: not self.copies_on(name))
        self.assertNotIn("mig_task", self.console("ps", host=name).stdout)

    # ---- the task dies ----------------------------------------------------------

    def test_task_killed_before_it_stops(self):
        self.start_vm("alpha", "beta", faults={"alpha": "kill-task-on-accept"})
        p = self.start("spin", SPIN, host="alpha")
        _, tid = self.first_line(p)
        r = self.console("migrate", tid, "beta")
        self.assertEqual(r.returncode, 1)
        self.assertIn("ended before it could move", r.stderr)
        p.communicate(timeout=60)
        self.assertNotEqual(p.returncode, 0)  # prun reports the task killed
        self.assert_no_copy_on("beta")

    def test_task_killed_while_its_image_streams(self):
        self.start_vm("alpha", "beta", faults={"alpha": "kill-task-on-handover"})
        p = self.start("spin", SPIN, host="alpha")
        _, tid = self.first_line(p)
        r = self.console("migrate", tid, "beta")
        self.assertEqual(r.returncode, 1)
        self.assertRegex(r.stderr, "died while it was being moved|ended before")
        p.communicate(timeout=60)
        self.assertNotEqual(p.returncode, 0)
        self.assert_no_copy_on("beta")

    def test_task_killed_after_its_image_is_restored(self):
        # The copy is complete: the source commits it, and it finishes there.
        self.start_vm("alpha", "beta", faults={"alpha": "kill-task-on-image"})
        want = self.reference("spin", SPIN)
        p = self.start("spin", SPIN, host="alpha")
        first, tid = self.first_line(p)
        self.assertIn("moved to beta", self.migrate(tid, "beta"))
        out, err = p.communicate(timeout=120)
        self.assertEqual(p.returncode, 0, err)
        self.assertEqual(strip_tids(first) + strip_tids(out), want)

    # ---- the destination daemon dies ----------------------------------------------

    def test_destination_dies_on_the_offer(self):
        self.start_vm("alpha", "beta", faults={"beta": "exit-on-offer"})
        # It must outlast the 3 s in which the master finds beta dead.
        want = self.reference("spin", LONG_SPIN)
        p = self.start("spin", LONG_SPIN, host="alpha")
        first, tid = self.first_line(p)
        r = self.console("migrate", tid, "beta")
        self.assertEqual(r.returncode, 1)
        self.assertRegex(r.stderr, "destination host died|no host named|no answer")
        out, err = p.communicate(timeout=120)
        self.assertEqual(p.returncode, 0, err)
        self.assertEqual(strip_tids(first) + strip_tids(out), want)  # it ran on at alpha

    # ---- the source daemon dies ---------------------------------------------------

    def asker(self, tid, host):
        """`mpvm migrate` in the background: its answer was to come from the
        source daemon, which the test kills."""
        p = subprocess.Popen([CONSOLE, "migrate", tid, host], env=self.env,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        self.procs.append(p)
        return p

    def assert_answered_with_the_hosts_loss(self, asker):
        """The asker's own daemon answers when the source host is declared
        dead (3 s here; the bound is docs/design/migration.md's)."""
        _, err = asker.communicate(timeout=60)
        self.assertEqual(asker.returncode, 1, err)
        self.assertIn("left the virtual machine while it was asked to move", err.decode())

    def test_source_dies_before_it_signals_the_task(self):
        self.start_vm("alpha", "beta", "gamma", faults={"beta": "exit-on-accept"})
        p = self.start("spin", SPIN, host="beta")
        _, tid = self.first_line(p)
        asker = self.asker(tid, "gamma")
        self.daemons["beta"][0].wait(timeout=30)  # it died at the step
        # The restore process gets no commit and ends: the task never runs
        # at gamma (it stays at beta, whose daemon has gone).
        self.assert_no_copy_on("gamma")
        self.assert_answered_with_the_hosts_loss(asker)
        p.communicate(timeout=60)

    def test_source_dies_while_the_image_streams(self):
        # The copy is restored, the source is gone: the task commits the copy
        # itself, and gamma registers it with the master.
        self.start_vm("alpha", "beta", "gamma", faults={"beta": "exit-on-handover"})
        want = self.reference("spin", SPIN)
        p = self.start("spin", SPIN, host="beta")
        first, tid = self.first_line(p)
        asker = self.asker(tid, "gamma")
        out, err = p.communicate(timeout=120)
        self.assert_answered_with_the_hosts_loss(asker)
        self.assertEqual(p.returncode, 0, err)
        got = strip_tids(first) + strip_tids(out)
        # Lines the task had printed and beta had not yet read die with beta;
        # nothing is printed twice, and the task ran to its end.
        self.assertTrue(subsequence(got, want), got)
        self.assertEqual(got[-1], want[-1])
        self.assertEqual(set(re.findall(r"\[(t[0-9a-f]+)\]", out)), {tid})

    def test_source_dies_one_second_after_the_commit(self):
        self.start_vm("alpha", "beta", "gamma")
        want = self.reference("spin", SPIN)
        p = self.start("spin", SPIN, host="beta")
        first, tid = self.first_line(p)
        self.assertIn("moved to gamma", self.migrate(tid, "gamma"))
        time.sleep(1)  # the scenario itself: the source dies 1 s after the commit
        self.daemons["beta"][0].kill()
        out, err = p.communicate(timeout=120)
        self.assertEqual(p.returncode, 0, err)
        self.assertEqual(strip_tids(first) + strip_tids(out), want)


    # ---- messages between living tasks ----------------------------------------------

    STREAM = "4000"

    def stream_through_a_source_that_dies(self, env=None):
        """A streams messages with its partner on alpha in lock step; it is
        moved beta -> gamma and beta's daemon dies as the image streams. What
        was in flight (on the links beta's daemon held, or inside it) is sent
        again by its sender: both get every message, once and in order (the
        tasks check each one's number and contents)."""
        self.start_vm("alpha", "beta", "gamma", faults={"beta": "exit-on-handover"}, env=env)
        p = self.start("stream", self.STREAM, "alpha", host="beta")
        _, tid = self.first_line(p)
        asker = self.asker(tid, "gamma")
        out, err = p.communicate(timeout=180)
        self.assert_answered_with_the_hosts_loss(asker)
        self.assertEqual(p.returncode, 0, out + err)
        self.assertIn("mover got all " + self.STREAM, out)
        self.assertIn("partner got all " + self.STREAM, out)

    def test_no_message_is_lost_when_the_source_dies_mid_move(self):
        self.stream_through_a_source_that_dies()

    def test_no_relayed_message_is_lost_when_the_source_dies_mid_move(self):
        self.stream_through_a_source_that_dies(env={"MPVM_DIRECT_LINKS": "0"})

    # ---- faults at a random moment -------------------------------------------------

    def test_a_fault_at_a_random_moment_of_a_move_loses_nothing_silently(self):
        # One trial of each fault (bench/move_faults.py runs many and
        # docs/design/migration.md has their table).
        seed = int(time.time())
        rng = random.Random(seed)
        for fault in move_faults.FAULTS:
            with self.subTest(fault=fault, seed=seed):
                delay = rng.uniform(0.0, 0.8)
                what, ok, _ = move_faults.trial(self, fault, delay)
                self.assertTrue(ok, "%s after %.2f s: %s" % (fault, delay, what))
            self.tearDown()  # a fresh VM for the next trial
            self.setUp()

if __name__ == "__main__":
    unittest.main()
