"""prun: launching, output, exit status, interrupts, and cleaning up."""
import os
import select
import signal
import subprocess
import time
import unittest

from harness import CHILD, PRUN, RING, VmTestCase, mpvm_processes, wait_for_line


class PrunTest(VmTestCase):
    def test_ring_on_embedded_vm_and_nothing_left(self):
        r = self.prun("-n", "8", "--tag-output", "tid", RING, "2")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn("8 tasks passed the token 2 times", r.stdout)
        self.assertRegex(r.stdout.splitlines()[0], r"^\[t4[0-9a-f]{4}\] round 0: token 28 ok$")
        self.assertNothingLeft()

    def test_siblings_rank_and_size(self):
        r = self.prun("-n", "5", "--tag-output", "rank", CHILD, "ring", "3")
        self.assertEqual(r.returncode, 0, r.stderr)
        lines = sorted(r.stdout.splitlines())
        self.assertEqual(lines, [f"[{i}] rank {i} of 5 ok" for i in range(5)])

    def test_untagged_output(self):
        r = self.prun("-n", "1", "--tag-output", "none", CHILD, "flood", "3")
        self.assertEqual(r.stdout.splitlines(), [f"line {i} of 3" for i in range(3)])

    def test_output_of_a_task_that_exits_at_once_is_not_lost(self):
        r = self.prun("-n", "4", CHILD, "print", "no newline, no flush")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(len([l for l in r.stdout.splitlines() if l.endswith("no newline, no flush")]), 4)

    def test_large_output_arrives_complete_and_in_order(self):
        r = self.prun("-n", "2", "--tag-output", "rank", CHILD, "flood", "20000")
        for rank in ("0", "1"):
            mine = [l.split("] ", 1)[1] for l in r.stdout.splitlines() if l.startswith(f"[{rank}]")]
            self.assertEqual(mine, [f"line {i} of 20000" for i in range(20000)])

    def test_failed_task_is_named_and_status_nonzero(self):
        r = self.prun("-n", "2", CHILD, "exit", "7")
        self.assertEqual(r.returncode, 7)
        self.assertRegex(r.stderr, r"task t4[0-9a-f]{4} \(rank \d\) exited with status 7")
        self.assertNothingLeft()

    def test_crashed_task_is_named_with_its_signal(self):
        r = self.prun("-n", "1", CHILD, "crash")
        self.assertEqual(r.returncode, 128 + signal.SIGSEGV)
        self.assertIn("killed by signal 11 (Segmentation fault)", r.stderr)
        self.assertNothingLeft()

    def test_missing_program_says_how_to_fix_it(self):
        r = self.prun("-n", "2", "no-such-program-xyz")
        self.assertNotEqual(r.returncode, 0)
        self.assertIn("No such file", r.stderr)
        self.assertIn("PATH", r.stderr)
        self.assertNothingLeft()

    def start_holding(self, n):
        """prun with n tasks blocked in pvm_recv; returns once all said ready."""
        p = subprocess.Popen([PRUN, "-n", str(n), "--tag-output", "none", CHILD, "hold"],
                             env=self.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        ready = 0
        def is_ready(line):
            nonlocal ready
            ready += line.startswith("ready")
            return ready == n
        wait_for_line(p.stdout, is_ready)
        return p

    def _interrupt(self, sig):
        p = self.start_holding(4)
        self.assertEqual(len(mpvm_processes(self.rundir)), 5)  # daemon + 4 tasks
        p.send_signal(sig)
        _, err = p.communicate(timeout=30)
        self.assertEqual(p.returncode, 128 + sig)
        self.assertIn("stopping 4 task(s)", err.decode())
        self.assertNothingLeft()

    def test_ctrl_c_stops_everything(self):
        self._interrupt(signal.SIGINT)

    def test_sigterm_stops_everything(self):
        self._interrupt(signal.SIGTERM)

    def test_killed_prun_takes_the_embedded_vm_down(self):
        p = self.start_holding(2)
        p.kill()
        p.wait()
        # The daemon sees its owner go, kills the tasks and removes its files.
        deadline = time.monotonic() + 10
        while mpvm_processes(self.rundir) and time.monotonic() < deadline:
            os.sched_yield()
        self.assertNothingLeft()

    def test_killed_prun_on_a_shared_vm_takes_its_tasks_with_it(self):
        subprocess.run([os.path.join(os.path.dirname(PRUN), "mpvm"), "conf"], env=self.env,
                       check=True, capture_output=True)
        p = self.start_holding(3)
        tasks = [pid for pid in mpvm_processes(self.rundir, names=(b"mpvm_test_child",))]
        self.assertEqual(len(tasks), 3)
        p.kill()
        p.wait()
        # The daemon sees prun's connection close and ends its job; the VM stays.
        for pid in tasks:
            try:
                fd = os.pidfd_open(pid)
            except OSError:
                continue  # gone already
            ready, _, _ = select.select([fd], [], [], 30)
            os.close(fd)
            self.assertTrue(ready, f"task {pid} outlived its prun")
        self.assertTrue(os.path.exists(os.path.join(self.rundir, "mpvmd.sock")))

    def test_uses_a_running_vm_and_leaves_it_running(self):
        subprocess.run([os.path.join(os.path.dirname(PRUN), "mpvm"), "conf"], env=self.env,
                       check=True, capture_output=True)
        r = self.prun("-n", "3", RING, "1")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertTrue(os.path.exists(os.path.join(self.rundir, "mpvmd.sock")))

    def test_pvm_export_passes_variables_to_spawned_tasks(self):
        # pvm_spawn (here the console's spawn, on a VM whose daemon lacks the
        # variable) passes only what PVM_EXPORT names; prun passes everything.
        subprocess.run([os.path.join(os.path.dirname(PRUN), "mpvm"), "conf"], env=self.env,
                       check=True, capture_output=True)
        env = dict(self.env, MPVM_IT_VAR="exported value")
        spawn = [os.path.join(os.path.dirname(PRUN), "mpvm"), "spawn", "->", CHILD, "env", "MPVM_IT_VAR"]
        r = subprocess.run(spawn, env=env, capture_output=True, text=True, timeout=60)
        self.assertIn("MPVM_IT_VAR=(unset)", r.stdout)
        env["PVM_EXPORT"] = "MPVM_IT_VAR"
        r = subprocess.run(spawn, env=env, capture_output=True, text=True, timeout=60)
        self.assertIn("MPVM_IT_VAR=exported value", r.stdout)

    def test_spawned_tasks_run_with_a_fixed_layout(self):
        # Migration restores a task into a fresh process of the same
        # executable: the daemon turns address-space randomisation off.
        r = self.prun("-n", "2", "--tag-output", "none", CHILD, "layout")
        self.assertEqual(r.stdout.split(), ["aslr", "off", "aslr", "off"], r.stderr)

    def test_spawned_tasks_load_mpvms_library(self):
        r = self.prun("-n", "1", "--tag-output", "none", CHILD, "env", "LD_LIBRARY_PATH")
        self.assertRegex(r.stdout.strip(), r"^LD_LIBRARY_PATH=/\S+/lib")

    def test_prun_32_runs_every_task_and_leaves_nothing(self):
        # How fast this is belongs to bench/startup.py (docs/benchmarks.md);
        # the test asserts what 32 tasks on the embedded VM must do.
        r = self.prun("-n", "32", RING, "1")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn("32 tasks passed the token 1 times", r.stdout)
        self.assertNothingLeft()

if __name__ == "__main__":
    unittest.main()
