"""The mpvm console, as a one-shot command and interactively."""
import os
import re
import subprocess
import time
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

    def test_session_commands_as_in_pvms_console(self):
        """id, echo, alias/unalias, setenv, export/unexport, driven as a user
        types them (the outputs are PVM 3.4.6's console's)."""
        r = self.mpvm(input="\n".join([
            "id",
            "echo hello   world  \"a b\" 'c d'  # a comment",
            "alias x echo one",
            "alias y echo two three",
            "alias",
            "x more",
            "unalias x",
            "alias",
            "x",
            "setenv MPVM_T_FOO bar baz",
            "setenv MPVM_T_FOO",
            "export MPVM_T_FOO",
            "export MPVM_T_BAR MPVM_T_FOO",
            "export",
            "unexport MPVM_T_FOO",
            "export",
            "echo \"unmatched",
            "quit", ""]))
        out = r.stdout.splitlines()
        self.assertRegex(out[0], r"^t4[0-9a-f]{4}$")  # the console's own tid
        self.assertEqual(out[1], "hello world a b c d")
        self.assertEqual(out[2:4], ["x\techo one", "y\techo two three"])
        self.assertEqual(out[4], "one more")  # the alias, then what was typed after it
        self.assertEqual(out[5], "y\techo two three")
        self.assertEqual(out[6], "bar baz")
        self.assertEqual(out[7], "PVM_EXPORT=MPVM_T_FOO:MPVM_T_BAR")
        self.assertEqual(out[8], "PVM_EXPORT=MPVM_T_BAR")
        self.assertIn("x: unknown command", r.stderr)  # once the alias is gone
        self.assertIn("unmatched \"", r.stderr)

    def test_an_exported_variable_reaches_a_task_the_console_spawns(self):
        r = self.mpvm(input="setenv MPVM_T_COLOUR blue\nexport MPVM_T_COLOUR\n"
                            "spawn -> %s env MPVM_T_COLOUR\nquit\n" % CHILD)
        self.assertRegex(r.stdout, r"\[t4[0-9a-f]{4}\] MPVM_T_COLOUR=blue", r.stderr)

    def test_task_and_host_queries(self):
        r = self.mpvm("spawn", CHILD, "hold")
        [tid] = re.findall(r"^(t4[0-9a-f]{4})$", r.stdout, re.M)
        host = self.mpvm("conf").stdout.splitlines()[2].split()[0]
        r = self.mpvm("mstat", host, "nosuchhost")
        self.assertEqual(r.stdout.splitlines(), ["%24s  ok" % host, "%24s  No such host" % "nosuchhost"])
        self.assertEqual(r.returncode, 1)
        r = self.mpvm("pstat", tid, "t4ffff")
        self.assertEqual(r.stdout.splitlines(), ["t%8s  run" % tid[1:], "t%8s  No such task" % "4ffff"])
        self.assertEqual(self.mpvm("sig", "15", tid).returncode, 0)  # SIGTERM ends it
        for _ in range(600):  # polling its state, with a deadline
            if "No such task" in self.mpvm("pstat", tid).stdout:
                break
            time.sleep(0.05)
        self.assertIn("No such task", self.mpvm("pstat", tid).stdout)
        bad = self.mpvm("sig", "x", tid)
        self.assertEqual(bad.returncode, 2)
        self.assertIn("usage: sig SIGNUM", bad.stderr)

    def test_reset_ends_every_task_and_orphaned_mailbox_entries(self):
        r = self.mpvm("spawn", "-2", CHILD, "hold")
        tids = re.findall(r"^(t4[0-9a-f]{4})$", r.stdout, re.M)
        self.assertEqual(len(tids), 2)
        r = self.mpvm(input="put mine 1 kept\nreset\nnames\nquit\n")  # PvmMboxPersistent
        self.assertEqual(r.returncode, 0, r.stderr)
        for _ in range(600):  # polling their state, with a deadline
            if all("No such task" in self.mpvm("pstat", t).stdout for t in tids):
                break
            time.sleep(0.05)
        for t in tids:
            self.assertIn("No such task", self.mpvm("pstat", t).stdout)
        self.assertIn("<mine>:", r.stdout)  # its owner was alive at the reset
        # That console has gone since: its entry is an orphan now, and a reset drops it.
        self.assertIn("<mine>:", self.mpvm("names").stdout)
        self.mpvm("reset")
        self.assertNotIn("<mine>:", self.mpvm("names").stdout)

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
