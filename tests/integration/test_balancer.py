"""The balancer: on a cluster of emulated hosts of mixed speed, plain PVM
tasks (no migration calls) are moved from slow hosts to fast ones while they
run, each move with its reason in the trace, and every result stays right
(docs/design/balancer.md). With the balancer off nothing moves.

The tasks compute for a fixed amount of work (mig_task spin) and print a
checksum; the hosts' speeds are enforced (test_emulated.py), so these tests
run alone."""
import json
import os
import re
import signal
import subprocess
import time
import unittest

from harness import BIN, CONSOLE, PRUN, VmTestCase

MIG_TASK = os.path.join(BIN, "mig_task")
WORK_TASK = os.path.join(BIN, "work_task")
# The balancer's clock scaled to these short jobs (as bench/balance.py does).
SCALED = {"MPVM_BALANCE_PERIOD": "0.1", "MPVM_BALANCE_RESIDENCY": "0.1"}
HOSTS = "a:600,b:600,c:200,d:200"
SPIN = "300000000"  # about 0.75 s at full speed: 7.5 s for two tasks on a 200 host


def migrations(trace_path):
    with open(trace_path) as f:
        events = json.load(f)["traceEvents"]
    return [e["args"] for e in events if e.get("cat") == "migration" and "args" in e]


class BalancerTest(VmTestCase):
    @classmethod
    def setUpClass(cls):
        libs = subprocess.run(["ldd", MIG_TASK], capture_output=True, text=True).stdout
        if "libasan" in libs or "libubsan" in libs:
            raise unittest.SkipTest("sanitizer builds cannot migrate; the dev build runs these")

    def run_job(self, balance):
        trace = os.path.join(self.tmp, "trace-%s.json" % balance)
        r = subprocess.run([PRUN, "--balance", balance, "--trace", trace, "--tag-output", "tid",
                            "--stdin", "none", "--hosts", HOSTS, "-n", "8", MIG_TASK, "spin",
                            SPIN], env=self.env, capture_output=True, text=True, timeout=180)
        self.assertEqual(r.returncode, 0, r.stderr)
        sums = re.findall(r"^\[t[0-9a-f]+\] done sum ([0-9a-f]+)$", r.stdout, re.M)
        self.assertEqual(len(sums), 8, r.stdout)
        self.assertEqual(len(set(sums)), 1, "a task computed something else")
        return migrations(trace)

    def test_tasks_move_from_slow_hosts_to_fast_ones_and_results_stay_right(self):
        moves = self.run_job("on")
        self.assertTrue(any(m["from"] in "cd" and m["to"] in "ab" for m in moves), moves)
        for m in moves:
            self.assertTrue(m["reason"].startswith("balancer: "), m)
            self.assertIn("less time per task", m["reason"])
        # Stable speeds: no task goes back to a host it left.
        left = {}
        for m in moves:
            self.assertNotIn(m["to"], left.get(m["tid"], set()), moves)
            left.setdefault(m["tid"], set()).add(m["from"])

    def test_virtual_work_is_balanced_too(self):
        # Four tasks on three equal hosts: one host runs two until the others
        # finish, then one of its two moves to an idle host.
        trace = os.path.join(self.tmp, "trace-virtual.json")
        r = subprocess.run([PRUN, "--balance", "on", "--cpu", "virtual", "--trace", trace,
                            "--stdin", "none", "--hosts", "a:1000,b:1000,c:1000", "-n", "4",
                            WORK_TASK, "1500"], env=dict(self.env, **SCALED), capture_output=True,
                           text=True, timeout=120)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(len(re.findall(r"work 1500 took", r.stdout)), 4, r.stdout)
        moves = migrations(trace)
        self.assertGreaterEqual(len(moves), 1)
        self.assertTrue(all(m["reason"].startswith("balancer: ") for m in moves), moves)

    def test_with_the_balancer_off_nothing_moves(self):
        self.assertEqual(self.run_job("off"), [])

    def test_progress_and_top_show_the_job_and_the_moves(self):
        r = subprocess.run([PRUN, "--balance", "on", "--progress", "--stdin", "none", "--hosts",
                            HOSTS, "-n", "8", MIG_TASK, "spin", SPIN],
                           env=self.env, capture_output=True, text=True, timeout=180)
        self.assertEqual(r.returncode, 0, r.stderr)
        lines = re.findall(r"prun: (\d+) running, (\d+) done, (\d+) moves?, [0-9.]+ s", r.stderr)
        self.assertGreaterEqual(len(lines), 2, r.stderr)
        self.assertEqual(lines[-1][:2], ("0", "8"))  # the last line: every task done
        self.assertGreater(int(lines[-1][2]), 0)  # and the moves counted
        self.assertTrue(all(int(a) + int(b) == 8 for a, b, _ in lines), lines)

    def test_top_shows_each_hosts_speed_and_load(self):
        subprocess.run([CONSOLE, "conf"], env=self.env, check=True, capture_output=True)
        for name, speed in (("slow", "300"), ("fast", "700")):
            subprocess.run([CONSOLE, "add", name, "--local", "--speed", speed], env=self.env,
                           check=True, capture_output=True, timeout=60)
        r = subprocess.run([CONSOLE, "top", "-n", "1"], env=self.env, capture_output=True,
                           text=True, timeout=60)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn("mpvm top: 3 hosts, balancer off", r.stdout)
        self.assertRegex(r.stdout, r"\n\s+slow\s+300\s+0\s")
        self.assertRegex(r.stdout, r"\n\s+fast\s+700\s+0\s")
        self.assertIn("latest moves by the balancer: none", r.stdout)
        bad = subprocess.run([CONSOLE, "top", "-n", "x"], env=self.env, capture_output=True,
                             text=True, timeout=60)
        self.assertEqual(bad.returncode, 2)

    def host_group(self, name):
        """The cgroup directory of emulated host `name`, or None."""
        for root, dirs, _ in os.walk("/sys/fs/cgroup"):
            for d in dirs:
                if d.startswith("mpvm.%s." % name):
                    return os.path.join(root, d)
            if root.count(os.sep) > 8:
                dirs[:] = []
        return None

    def top_load(self, name):
        r = subprocess.run([CONSOLE, "top", "-n", "1"], env=self.env, capture_output=True,
                           text=True, timeout=60)
        m = re.search(r"\n\s+%s\s+\d+\s+\d+\s+([0-9.]+)" % name, r.stdout)
        self.assertIsNotNone(m, r.stdout + r.stderr)
        return float(m.group(1))

    def test_work_that_is_not_ours_counts_against_its_host(self):
        subprocess.run([CONSOLE, "conf"], env=self.env, check=True, capture_output=True)
        subprocess.run([CONSOLE, "add", "busy", "--local", "--speed", "500"], env=self.env,
                       check=True, capture_output=True, timeout=60)
        group = self.host_group("busy")
        if group is None:
            self.skipTest("no cgroup for the emulated host (duty cycling): its background "
                          "cannot be told apart")
        loop = subprocess.Popen(["sh", "-c", "while :; do :; done"])
        try:
            with open(os.path.join(group, "cgroup.procs"), "w") as f:
                f.write("%d\n" % loop.pid)
            load, deadline = 0.0, time.time() + 60
            while load < 0.8 and time.time() < deadline:
                load = self.top_load("busy")
            self.assertGreaterEqual(load, 0.8, "another user's busy loop in the host's group")
            loop.send_signal(signal.SIGSTOP)  # stopped, it asks for no CPU
            deadline = time.time() + 60
            while load > 0.2 and time.time() < deadline:
                load = self.top_load("busy")
            self.assertLessEqual(load, 0.2, "the loop is stopped: the host is idle again")
        finally:
            loop.kill()
            loop.wait()

    def test_the_console_switches_the_balancer_of_a_running_vm(self):
        def balance(*words):
            r = subprocess.run([CONSOLE, "balance", *words], env=self.env, capture_output=True,
                               text=True, timeout=60)
            self.assertEqual(r.returncode, 0, r.stderr)
            return r.stdout

        self.assertIn("balancer off: 0 moves ordered", balance())
        self.assertIn("balancer on", balance("on"))
        self.assertIn("balancer on", balance())
        self.assertIn("balancer off", balance("off"))
        r = subprocess.run([CONSOLE, "balance", "sideways"], env=self.env, capture_output=True,
                           text=True, timeout=60)
        self.assertEqual(r.returncode, 2)
        self.assertIn("usage: balance [on|off]", r.stderr)


if __name__ == "__main__":
    unittest.main()
