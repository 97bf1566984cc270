"""Emulated hosts of mixed speed on one machine: all the tasks of a host of
speed S together get S/1000 of one CPU here, through a cgroup CPU quota or,
where none is writable, SIGSTOP/SIGCONT duty cycling; a task that moves
takes its new host's share (docs/user-guide.md, "Emulated hosts").

The shares are measured by the tasks themselves (CPU time over wall time),
so these tests need the machine otherwise idle: ctest runs them alone."""
import os
import re
import subprocess
import unittest

from harness import BIN, CONSOLE, PRUN, VmTestCase, wait_for_line

MIG_TASK = os.path.join(BIN, "mig_task")
TOLERANCE = 0.03


def cgroup_writable():
    """Whether a cgroup CPU quota can be set here (v1 cpu controller or v2)."""
    for base in ("/sys/fs/cgroup/cpu", "/sys/fs/cgroup/unified", "/sys/fs/cgroup"):
        probe = os.path.join(base, "mpvm-probe.%d" % os.getpid())
        try:
            os.mkdir(probe)
        except OSError:
            continue
        ok = any(os.path.exists(os.path.join(probe, f)) for f in ("cpu.cfs_quota_us", "cpu.max"))
        os.rmdir(probe)
        if ok:
            return True
    return False


def shares(text):
    """{tid: overall share} from `--tag-output tid` output of mig_task share."""
    return {m.group(1): float(m.group(2))
            for m in re.finditer(r"^\[(t[0-9a-f]+)\] share ([0-9.]+)$", text, re.M)}


class EmulatedSpeedTest(VmTestCase):
    def run_share(self, hosts, n, seconds, env=None):
        r = subprocess.run([PRUN, "--tag-output", "tid", "--stdin", "none", "--hosts", hosts,
                            "-n", str(n), MIG_TASK, "share", str(seconds)],
                           env=dict(self.env, **(env or {})), capture_output=True, text=True,
                           timeout=120)
        self.assertEqual(r.returncode, 0, r.stderr)
        got = shares(r.stdout)
        self.assertEqual(len(got), n, r.stdout)
        return got, r.stderr

    def test_a_task_alone_on_a_400_host_runs_at_0_40_through_a_cgroup(self):
        if not cgroup_writable():
            self.skipTest("no writable cgroup CPU controller here (v1 cpu or v2 cpu.max)")
        got, _ = self.run_share("a:400", 1, 3)
        self.assertAlmostEqual(list(got.values())[0], 0.40, delta=TOLERANCE)

    def test_a_task_alone_on_a_400_host_runs_at_0_40_by_duty_cycling(self):
        got, _ = self.run_share("a:400", 1, 3, env={"MPVM_CPU_LIMIT": "duty"})
        self.assertAlmostEqual(list(got.values())[0], 0.40, delta=TOLERANCE)

    def test_each_host_gives_its_own_speed_and_its_tasks_share_it(self):
        # Round-robin over a and b: two tasks on one, one on the other.
        got, _ = self.run_share("a:400,b:300", 3, 3)
        by_host = {}
        for tid, share in got.items():
            by_host.setdefault(int(tid[1:], 16) >> 18, []).append(share)
        totals = sorted((len(s), sum(s)) for s in by_host.values())
        self.assertEqual([n for n, _ in totals], [1, 2], got)
        speeds = {1: 0.40, 2: 0.30}  # host index 1 is a (prun's), 2 is b
        for host, s in by_host.items():
            self.assertAlmostEqual(sum(s), speeds[host], delta=TOLERANCE, msg=got)
            # Evenly: a host is one CPU, so its tasks do not take its quota
            # from different CPUs in turn (one of two got 0.3 of a 0.4 host).
            for share in s:
                self.assertAlmostEqual(share, speeds[host] / len(s), delta=TOLERANCE, msg=got)

    def test_speeds_past_the_machine_are_warned_about(self):
        cpus = os.cpu_count() or 1
        _, err = self.run_share("a:%d,b:1000" % (1000 * cpus), 1, 0.2)
        self.assertIn("warning: the emulated hosts' speeds add up to %d" % (1000 * cpus + 1000),
                      err)
        self.assertIn("measurements will lie", err)

    def test_a_bad_host_list_is_refused_with_the_reason(self):
        for bad, says in (("a:fast", "the speed must be an integer"), ("a,a", "named twice"),
                          ("a:0", "from 1 to 1000000"), (":300", "a host is NAME")):
            r = self.prun("--hosts", bad, MIG_TASK, "share", "0.1")
            self.assertEqual(r.returncode, 2, bad)
            self.assertIn(says, r.stderr, bad)

    def test_a_moved_task_takes_its_new_hosts_share(self):
        libs = subprocess.run(["ldd", MIG_TASK], capture_output=True, text=True).stdout
        if "libasan" in libs or "libubsan" in libs:
            self.skipTest("sanitizer builds cannot migrate; the dev build runs this test")
        subprocess.run([CONSOLE, "conf"], env=self.env, check=True, capture_output=True)
        for name, speed in (("slow", "300"), ("fast", "700")):
            r = subprocess.run([CONSOLE, "add", name, "--local", "--speed", speed], env=self.env,
                               capture_output=True, text=True, timeout=60)
            self.assertEqual(r.returncode, 0, r.stderr)
        p = subprocess.Popen([PRUN, "--tag-output", "tid", "--stdin", "none", "--host", "slow",
                              MIG_TASK, "share", "6"], env=self.env, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True)
        first = wait_for_line(p.stdout, lambda line: "second 1 " in line, timeout=30)[-1]
        tid, before = re.match(r"\[(t[0-9a-f]+)\] second 1 share ([0-9.]+)", first).groups()
        r = subprocess.run([CONSOLE, "migrate", tid, "fast"], env=self.env,
                           capture_output=True, text=True, timeout=60)
        self.assertIn("moved to fast", r.stdout + r.stderr)
        out, err = p.communicate(timeout=60)
        self.assertEqual(p.returncode, 0, err)
        seconds = [float(s) for s in re.findall(r"second \d+ share ([0-9.]+)", out)]
        self.assertAlmostEqual(float(before), 0.30, delta=TOLERANCE)
        # The last whole second ran at the new host's speed.
        self.assertAlmostEqual(seconds[-1], 0.70, delta=TOLERANCE)


WORK_TASK = os.path.join(BIN, "work_task")


class VirtualWorkTest(VmTestCase):
    """mpvm_work on hosts in virtual-work mode (prun --cpu virtual) against
    the same work on real CPU."""

    def run_tasks(self, cpu, hosts, n, units):
        """Each task's (took, start, end), in seconds."""
        r = subprocess.run([PRUN, "--cpu", cpu, "--hosts", hosts, "--stdin", "none", "-n", str(n),
                            WORK_TASK, str(units)], env=self.env, capture_output=True, text=True,
                           timeout=120)
        self.assertEqual(r.returncode, 0, r.stderr)
        rows = [tuple(float(x) for x in m) for m in
                re.findall(r"took ([0-9.]+) s start ([0-9.]+) end ([0-9.]+)", r.stdout)]
        self.assertEqual(len(rows), n, r.stdout)
        return rows

    def took(self, cpu, hosts, n, units):
        return [took for took, _, _ in self.run_tasks(cpu, hosts, n, units)]

    def test_virtual_work_agrees_with_real_cpu_within_5_percent(self):
        real = self.took("real", "a:500", 1, 1000)[0]
        virtual = self.took("virtual", "a:500", 1, 1000)[0]
        self.assertAlmostEqual(virtual, 2.0, delta=0.1)  # 1000 units at half a CPU
        self.assertAlmostEqual(virtual / real, 1.0, delta=0.05)

    def test_tasks_working_on_one_host_share_its_speed(self):
        # Three tasks of 500 units on a host of 1000 units/s: the host does
        # 1000 a second whoever works, so the job spans 1.5 s from the first
        # start to the last end, however far apart the tasks start (a slow
        # machine starts them a few tenths apart, and the first one works
        # alone until the others join). Each took at least its 0.5 s alone
        # and at most the span.
        rows = self.run_tasks("virtual", "a:1000", 3, 500)
        span = max(end for _, _, end in rows) - min(start for _, start, _ in rows)
        self.assertAlmostEqual(span, 1.5, delta=0.15)
        for took, _, _ in rows:
            self.assertGreaterEqual(took, 0.5 - 0.05)
            self.assertLessEqual(took, span + 0.05)

    def test_a_task_outside_any_vm_just_computes(self):
        r = subprocess.run([WORK_TASK, "100"], env=dict(self.env, MPVM_RUNDIR=self.tmp + "/none"),
                           capture_output=True, text=True, timeout=60)
        self.assertIn("work 100 took", r.stdout, r.stderr)


if __name__ == "__main__":
    unittest.main()
