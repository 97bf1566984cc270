"""The mpvm console, as a one-shot command and interactively."""
import os
import re
import subprocess
import unittest

from harness import CHILD, CONSOLE, VmTestCase, mpvm_processes


class ConsoleTest(VmTestCase):
    def mpvm(self, *args, input=None):
        r = subprocess.run([CONSOLE, *args], env=self.env, capture_output=True, text=True,
                           input=input, timeout=60)
        return r

    def test_conf_starts_a_vm_like_pvm(self):
        r = self.mpvm("conf")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertRegex(r.stdout, r"1 host, 1 data format")
        # No sp= given: the daemon measured its speed (server/host_speed.h).
        self.assertRegex(r.stdout, r"40000 +LINUX64 +[1-9]\d*0 0x00408c41")

    def test_conf_shows_each_hosts_cores_from_hwloc(self):
        r = self.mpvm("conf")
        header, row = r.stdout.splitlines()[1].split(), r.stdout.splitlines()[2].split()
        self.assertEqual(header[-1], "CORES")
        cores = int(row[header.index("CORES")])
        # hwloc's count of physical cores: at least one, at most the CPUs.
        self.assertTrue(1 <= cores <= os.cpu_count(), r.stdout)

    def test_spawn_ps_kill_halt(self):
        r = self.mpvm("spawn", "-2", CHILD, "hold")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn("2 successful", r.stdout)
        tids = re.findall(r"^t(4[0-9a-f]{4})$", r.stdout, re.M)
        self.assertEqual(len(tids), 2)
        ps = self.mpvm("ps").stdout
        for t in tids:
            self.assertRegex(ps, rf"\b{t}\b.*mpvm_test_child")
        self.assertEqual(self.mpvm("kill", "t" + tids[0]).returncode, 0)
        bad = self.mpvm("kill", "t4ffff")
        self.assertNotEqual(bad.returncode, 0)
        self.assertIn("No such task", bad.stderr)
        self.assertEqual(self.mpvm("halt").returncode, 0)
        self.assertNothingLeft()

    def test_spawn_with_output_to_the_console(self):
        r = self.mpvm("spawn", "->", CHILD, "flood", "2")
        self.assertRegex(r.stdout, r"\[t4[0-9a-f]{4}\] line 1 of 2")

    def test_interactive_session_and_quit_keeps_the_vm(self):
        r = self.mpvm(input="version\nconf\nnonsense\nps -a\nquit\n")
        self.assertIn("3.4.6", r.stdout)
        self.assertIn("LINUX64", r.stdout)
        self.assertIn("(tool)", r.stdout)
        self.assertIn("nonsense: unknown command; type help", r.stderr)
        self.assertEqual(self.mpvm("conf").returncode, 0)  # still running

    def test_help_and_unknown_commands(self):
        r = self.mpvm("frobnicate")  # first: no VM is running yet
        self.assertEqual(r.returncode, 2)
        self.assertIn("unknown command 'frobnicate'", r.stderr)
        self.assertEqual(mpvm_processes(self.rundir), [])  # no VM was started for it
        self.assertFalse(os.path.exists(os.path.join(self.rundir, "mpvmd.sock")))
        self.assertIn("spawn", self.mpvm("help").stdout)

    def test_halt_with_no_vm_says_so(self):
        r = self.mpvm("halt")
        self.assertEqual(r.returncode, 1)
        self.assertIn("no virtual machine is running", r.stderr)


if __name__ == "__main__":
    unittest.main()
