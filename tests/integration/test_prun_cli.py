"""prun as mpirun users know it: the program gets its arguments verbatim,
tasks get the caller's environment, stdout and stderr stay apart, stdin goes
to rank 0, and usage errors exit 2 and name the problem."""
import os
import pty
import select
import subprocess
import time
import unittest

from harness import CHILD, CONSOLE, PRUN, VmTestCase, mpvm_processes


class PrunCommandLineTest(VmTestCase):
    def setUp(self):
        super().setUp()
        # A running VM: what prun passes must not depend on prun starting it.
        subprocess.run([CONSOLE, "conf"], env=self.env, check=True, capture_output=True)

    def run_prun(self, *args, env=None, input=None):
        return subprocess.run([PRUN, *args], env=env or self.env, capture_output=True, text=True,
                              input=input, stdin=None if input is not None else subprocess.DEVNULL,
                              timeout=60)

    def test_words_after_the_program_reach_it_verbatim(self):
        r = self.run_prun("-n", "1", "/bin/echo", "a", "-n", "3", "b")
        self.assertEqual((r.returncode, r.stdout), (0, "a -n 3 b\n"), r.stderr)
        r = self.run_prun("-n", "1", "/bin/sh", "-c", 'echo "[$0][$1]"', "x", "y")
        self.assertEqual(r.stdout, "[x][y]\n", r.stderr)

    def test_an_option_word_after_the_program_is_the_programs(self):
        # /bin/echo answers --help itself: what it prints alone, twice, and
        # nothing of prun's help.
        alone = subprocess.run(["/bin/echo", "--help"], capture_output=True, text=True).stdout
        r = self.run_prun("-n", "2", "/bin/echo", "--help")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(r.stdout, alone * 2)
        self.assertNotIn("prun", r.stdout)

    def test_a_flag_before_an_option_with_a_value_leaves_it_its_value(self):
        r = self.run_prun("--verbose", "--stdin", "none", "-n", "2", "/bin/echo", "x")
        self.assertEqual((r.returncode, r.stdout), (0, "x\nx\n"), r.stderr)
        self.assertIn("exited normally", r.stderr)

    def test_double_dash_ends_prun_options_and_is_not_passed_on(self):
        r = self.run_prun("-n", "2", "--", "/bin/echo", "x")
        self.assertEqual(r.stdout, "x\nx\n", r.stderr)

    def test_tasks_get_the_callers_environment_on_a_running_vm(self):
        env = dict(self.env, FOO="bar42")
        r = self.run_prun("-n", "2", "/bin/sh", "-c", "echo $FOO", env=env)
        self.assertEqual(r.stdout, "bar42\nbar42\n", r.stderr)

    def test_stdout_and_stderr_arrive_apart_and_untagged(self):
        r = self.run_prun("-n", "1", "/bin/sh", "-c", "echo out; echo err >&2")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(r.stdout, "out\n")
        self.assertEqual(r.stderr, "err\n")
        r = self.run_prun("-n", "1", "--tag-output", "rank", "/bin/sh", "-c", "echo out; echo err >&2")
        self.assertEqual((r.stdout, r.stderr), ("[0] out\n", "[0] err\n"))

    def test_stdin_goes_to_rank_0_and_the_others_read_end_of_file(self):
        r = self.run_prun("-n", "2", "--tag-output", "rank", "/bin/sh", "-c",
                          'read x; echo "${x:-EOF}"', input="hello\n")
        self.assertEqual(sorted(r.stdout.splitlines()), ["[0] hello", "[1] EOF"], r.stderr)
        r = self.run_prun("-n", "1", "--stdin", "none", "/bin/sh", "-c", 'read x; echo "${x:-EOF}"',
                          input="hello\n")
        self.assertEqual(r.stdout, "EOF\n", r.stderr)

    def test_a_terminal_reaches_rank_0_through_prun(self):
        """A task cannot read prun's terminal itself (its own session): prun
        reads it and passes on what is typed, and ^D ends it."""
        pid, fd = pty.fork()
        if pid == 0:  # prun, with the pty as its terminal
            os.execve(PRUN, [PRUN, "-n", "2", "--tag-output", "rank", "/bin/sh", "-c",
                             'read x; echo "got:${x:-EOF}"; read y || echo "then:EOF"'], self.env)
        try:
            seen = b""
            deadline = time.monotonic() + 60
            os.write(fd, b"hello\n")
            while b"[1] got:EOF" not in seen or b"[0] got:hello" not in seen:
                self.assertLess(time.monotonic(), deadline, seen)
                if select.select([fd], [], [], 1)[0]:
                    seen += os.read(fd, 4096)
            os.write(fd, b"\x04")  # ^D: rank 0's end of file
            while b"[0] then:EOF" not in seen:
                self.assertLess(time.monotonic(), deadline, seen)
                if select.select([fd], [], [], 1)[0]:
                    seen += os.read(fd, 4096)
        finally:
            _, status = os.waitpid(pid, 0)
            os.close(fd)
        self.assertEqual(os.waitstatus_to_exitcode(status), 0, seen)

    def test_mpirun_spellings(self):
        r = self.run_prun("-np", "2", "/bin/echo", "hi")
        self.assertEqual(r.stdout, "hi\nhi\n", r.stderr)
        r = self.run_prun("--version")
        self.assertEqual(r.returncode, 0)
        self.assertIn("prun (mpvm", r.stdout)
        self.assertIn("PVM 3.4.6", r.stdout)

    def test_a_missing_program_is_named_once_with_a_hint_that_fits(self):
        # A path is taken as given, from prun's directory; a bare name is
        # looked up. The hint is said once, not per rank, and never "././".
        r = self.run_prun("-n", "3", "./nosuch")
        self.assertNotEqual(r.returncode, 0)
        self.assertEqual(r.stderr.count("could not start ./nosuch"), 3, r.stderr)
        self.assertEqual(r.stderr.count("/nosuch is not an executable file"), 1, r.stderr)
        self.assertNotIn("././", r.stderr)
        r = self.run_prun("-n", "2", "nosuch-program")
        self.assertEqual(r.stderr.count("give a path (./nosuch-program) or put it on PATH"), 1,
                         r.stderr)

    def test_usage_errors_exit_2_and_name_the_problem_and_start_nothing(self):
        before = set(mpvm_processes(self.rundir))
        for args, says in [(("--bogus", "-n", "1", "/bin/true"), "'--bogus'"),
                           (("-n", "0", "/bin/true"), "--np"),
                           (("-n",), "--np"),
                           ((), "no program given"),
                           (("--tag-output", "color", "/bin/true"), "--tag-output"),
                           (("-x", "MPVM_SURELY_UNSET_VAR", "/bin/true"), "MPVM_SURELY_UNSET_VAR")]:
            r = self.run_prun(*args)
            self.assertEqual(r.returncode, 2, (args, r.stderr))
            self.assertIn(says, r.stderr, args)
            self.assertEqual(r.stdout, "", args)
        self.assertEqual(set(mpvm_processes(self.rundir)), before)  # no task was started

    def test_x_exports_a_variable_to_an_emulated_host_and_the_rest_stays_home(self):
        r = subprocess.run([CONSOLE, "add", "emu", "--local"], env=self.env, capture_output=True,
                           text=True, timeout=60)
        self.assertEqual(r.returncode, 0, r.stderr)
        env = dict(self.env, MPVM_IT_NOT_EXPORTED="local", MPVM_IT_X="from-caller")
        r = self.run_prun("--host", "emu", "-x", "MPVM_IT_X", "-x", "MPVM_IT_Y=given", "/bin/sh", "-c",
                          'echo "$MPVM_IT_X $MPVM_IT_Y ${MPVM_IT_NOT_EXPORTED:-unset}"', env=env)
        self.assertEqual(r.stdout, "from-caller given unset\n", r.stderr)


class PrunHostfileTest(VmTestCase):
    def test_hostfile_starts_those_hosts_for_the_job_only(self):
        hosts = os.path.join(self.tmp, "hosts")
        with open(hosts, "w") as f:
            f.write("# a job's hosts\n* sp=1000\nemu1 local=1\nemu2 local=1 bx=/bin/false id=job7\n")
        r = subprocess.run([PRUN, "--hostfile", hosts, "-n", "3", "--tag-output", "tid",
                            CHILD, "env", "MPVM_RANK"], env=self.env, capture_output=True, text=True,
                           stdin=subprocess.DEVNULL, timeout=120)
        self.assertEqual(r.returncode, 0, r.stderr)
        born = sorted(l[2] for l in r.stdout.splitlines())  # "[t4...", "[t8...", "[tc..."
        self.assertEqual(born, ["4", "8", "c"], r.stdout)
        self.assertNothingLeft()


if __name__ == "__main__":
    unittest.main()
