"""The checkpoint engine without daemons: ckpt_demo moves itself into a
fresh copy of itself, at library calls and from a signal at random
instants, and must print exactly what a run that never moved prints."""
import os
import random
import subprocess
import sys
import tempfile
import time
import unittest

BUILD = os.environ.get("MPVM_BUILD", os.path.join(os.path.dirname(__file__), "../../build/dev"))
DEMO = os.path.join(BUILD, "bin", "ckpt_demo")


def run(args, cwd, **kw):
    # setarch -R: the address space layout must be the same in both copies,
    # as mpvmd arranges for the tasks it spawns.
    return subprocess.run(["setarch", "-R", DEMO, *args], cwd=cwd, capture_output=True,
                          text=True, timeout=120, **kw)


def moves(stderr):
    for line in stderr.splitlines():
        if line.startswith("moves "):
            return int(line.split()[1])
    return None


class CheckpointEngine(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        if not os.path.exists(DEMO):
            raise unittest.SkipTest(f"{DEMO} not built")
        probe = subprocess.run(["setarch", "-R", "true"], capture_output=True)
        if probe.returncode != 0:
            raise unittest.SkipTest("setarch -R (ADDR_NO_RANDOMIZE) is not allowed here")
        cls.dir = tempfile.mkdtemp(prefix="ckpt-")
        probe = run(["call", "10", "5"], cls.dir)
        if "AddressSanitizer" in probe.stderr:
            raise unittest.SkipTest("sanitizer builds cannot migrate (shadow memory); "
                                    "the dev build runs these tests")
        cls.ref = {n: run(["none", str(n)], cls.dir).stdout for n in (3000, 400000)}

    def check(self, args, expect_moves):
        n = int(args[1])
        r = run(args, self.dir)
        self.assertEqual(r.stdout, self.ref[n], r.stderr)
        self.assertEqual(moves(r.stderr), expect_moves, r.stderr)
        self.assertNotIn("restore:", r.stderr)

    def test_one_move_at_a_library_call(self):
        self.check(["call", "3000", "1500"], 1)

    def test_ten_moves_in_a_row(self):
        self.check(["call", "3000"] + [str(i) for i in range(100, 1100, 100)], 10)

    def test_moves_at_the_first_and_last_iteration(self):
        self.check(["call", "3000", "0", "2999"], 2)

    def test_signal_at_random_instants(self):
        rng = random.Random(os.getpid())
        for trial in range(6):
            pidfile = os.path.join(self.dir, "ckpt_demo.pid")
            if os.path.exists(pidfile):
                os.unlink(pidfile)
            p = subprocess.Popen(["setarch", "-R", DEMO, "signal", "400000"], cwd=self.dir,
                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            sent = 0
            for _ in range(1 + trial % 3):  # up to 3 moves in a chain
                pid = self.wait_pid(pidfile, p)
                if pid is None:
                    break
                time.sleep(rng.uniform(0.02, 0.15))  # a random instant, not a synchronisation
                try:
                    os.kill(pid, 10)  # SIGUSR1
                except ProcessLookupError:
                    break
                sent += 1
                if not self.wait_moved(pidfile, pid, p):
                    break
            out, err = p.communicate(timeout=120)
            self.assertEqual(out, self.ref[400000], err)
            self.assertNotIn("restore:", err)
            self.assertGreaterEqual(moves(err), 1 if sent else 0, err)

    def wait_pid(self, pidfile, proc):
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                with open(pidfile) as f:
                    pid = int(f.read())
                os.kill(pid, 0)
                return pid
            except (OSError, ValueError):
                if proc.poll() is not None:
                    return None
            time.sleep(0.005)
        return None

    def wait_moved(self, pidfile, old, proc):
        """True once the pid file names another live process."""
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                with open(pidfile) as f:
                    pid = int(f.read())
                if pid != old:
                    return True
            except (OSError, ValueError):
                pass
            if proc.poll() is not None and not os.path.exists(f"/proc/{old}"):
                # The original exited: either it moved, or it finished.
                try:
                    with open(pidfile) as f:
                        return int(f.read()) != old
                except (OSError, ValueError):
                    return False
            time.sleep(0.002)
        return False

    def test_untouched_pages_are_left_out_of_the_image_and_read_as_zeros(self):
        r = run(["sparse", "1"], self.dir)
        self.assertEqual(r.stdout, "sparse intact\n", r.stderr)
        self.assertEqual(moves(r.stderr), 1, r.stderr)
        sent = [int(l.split()[1]) for l in r.stderr.splitlines() if l.startswith("image ")]
        self.assertEqual(len(sent), 1, r.stderr)
        # 1024 of the mapping's 16384 pages hold data (4 MiB); the rest of
        # the process is a few MiB at most. Whole, the mapping alone is 64.
        self.assertLess(sent[0], 16 << 20, r.stderr)
        self.assertGreater(sent[0], 4 << 20, r.stderr)

    def test_threads_are_refused_and_the_task_carries_on(self):
        r = run(["threads", "1"], self.dir)
        self.assertEqual(r.returncode, 0)
        self.assertIn("refused: the task runs 2 threads", r.stderr)

    def test_foreign_sockets_are_refused(self):
        r = run(["socket", "1"], self.dir)
        self.assertEqual(r.returncode, 0)
        self.assertIn("socket:[", r.stderr)
        self.assertIn("cannot move", r.stderr)

    def test_randomised_layout_is_refused(self):
        r = subprocess.run([DEMO, "call", "3000", "5"], cwd=self.dir, capture_output=True,
                           text=True, timeout=60)
        self.assertIn("refused: address-space randomisation is on", r.stderr)
        self.assertEqual(r.stdout, self.ref[3000])


if __name__ == "__main__":
    unittest.main()
