"""A task has exactly one thread while it computes and while blocked in
pvm_recv: the library never starts threads (transparent migration needs it)."""
import os
import signal
import subprocess
import time
import unittest

from harness import CHILD, PRUN, VmTestCase, wait_for_line

POLL_SYSCALLS = {"7", "271"}  # poll, ppoll on x86_64


class ThreadTest(VmTestCase):
    def test_one_thread_computing_and_blocked(self):
        p = subprocess.Popen([PRUN, "-n", "1", "--tag-output", "none", CHILD, "threads"],
                             env=self.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        lines = wait_for_line(p.stdout, lambda l: l.endswith("blocking"))
        self.assertIn("threads while computing: 1", lines)
        pid = int(lines[-1].split()[1])
        # Wait for the event "the task is inside poll() in pvm_recv".
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            with open(f"/proc/{pid}/syscall") as f:
                if f.read().split()[0] in POLL_SYSCALLS:
                    break
            os.sched_yield()
        else:
            self.fail("task never blocked in poll")
        with open(f"/proc/{pid}/status") as f:
            threads = [l for l in f if l.startswith("Threads:")][0]
        self.assertEqual(threads.split()[1], "1")
        self.assertEqual(len(os.listdir(f"/proc/{pid}/task")), 1)
        os.kill(pid, signal.SIGTERM)
        p.communicate(timeout=30)


if __name__ == "__main__":
    unittest.main()
