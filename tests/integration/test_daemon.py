"""mpvmd: one per VM, recovery after a crash, and malformed input."""
import os
import shutil
import signal
import socket
import struct
import subprocess
import unittest

from harness import CHILD, CONSOLE, MPVMD, PRUN, VmTestCase, mpvm_processes


def frame(kind, payload=b"", length=None):
    n = len(payload) if length is None else length
    return b"MPVM" + bytes([1, kind, 0, 0]) + struct.pack("<iiiiQII", 0, 0, 0, 0, 0, n, 0) + payload


class DaemonTest(VmTestCase):
    def start_vm(self):
        r = subprocess.run([CONSOLE, "conf"], env=self.env, capture_output=True, text=True, timeout=30)
        self.assertEqual(r.returncode, 0, r.stderr)
        return r.stdout

    def log(self):
        with open(os.path.join(self.rundir, "mpvmd.log")) as f:
            return f.read()

    def still_serves(self):
        self.assertIn("LINUX64", self.start_vm())

    def send_raw(self, data):
        """Sends bytes to the daemon and waits until it closes the connection."""
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.connect(os.path.join(self.rundir, "mpvmd.sock"))
        s.sendall(data)
        s.shutdown(socket.SHUT_WR)
        s.settimeout(30)
        while s.recv(4096):
            pass
        s.close()

    def test_second_daemon_is_refused_clearly(self):
        self.start_vm()
        r = subprocess.run([MPVMD, "--rundir", self.rundir], capture_output=True, text=True, timeout=30)
        self.assertNotEqual(r.returncode, 0)
        self.assertIn("already serves the virtual machine", r.stderr)
        self.assertIn("mpvm halt", r.stderr)
        self.still_serves()

    def test_a_bad_setting_is_an_error_that_names_it(self):
        for var, value in (("MPVM_DEAD_AFTER", "3x"), ("MPVM_LINK_ENCRYPT", "yes"),
                           ("MPVM_LOG_LEVEL", "loud")):
            r = subprocess.run([MPVMD, "--rundir", self.rundir], env=dict(self.env, **{var: value}),
                               capture_output=True, text=True, timeout=30)
            self.assertEqual(r.returncode, 2, r.stderr)
            self.assertIn("%s=%s: not " % (var, value), r.stderr)
            self.assertFalse(os.path.exists(os.path.join(self.rundir, "mpvmd.sock")))
        # A task's library (here prun's) says so too, and the call fails.
        self.start_vm()
        r = subprocess.run([PRUN, "-n", "1", CHILD, "exit"], env=dict(self.env, MPVM_SPIN_US="abc"),
                           capture_output=True, text=True, timeout=60)
        self.assertNotEqual(r.returncode, 0)
        self.assertIn("MPVM_SPIN_US=abc: not a whole number of microseconds", r.stderr)

    def test_files_of_a_crashed_daemon_are_cleaned(self):
        self.start_vm()
        [daemon] = [p for p in mpvm_processes(self.rundir)]
        os.kill(daemon, signal.SIGKILL)
        while daemon in mpvm_processes(self.rundir):
            os.waitid(os.P_PID, daemon, os.WEXITED | os.WNOHANG) if False else os.sched_yield()
        self.assertTrue(os.path.exists(os.path.join(self.rundir, "mpvmd.sock")))
        self.still_serves()  # the console starts a new daemon, which cleans up
        self.assertIn("did not stop cleanly", self.log())

    def test_garbage_is_rejected_logged_and_the_daemon_keeps_serving(self):
        self.start_vm()
        self.send_raw(b"GET / HTTP/1.0\r\n\r\n" * 10)
        self.assertIn("bad frame magic", self.log())
        self.still_serves()

    def test_oversized_frame_is_refused_before_allocation(self):
        self.start_vm()
        self.send_raw(frame(2, length=0xffffffff))  # past the 2 GiB - 1 a message can hold
        self.assertIn("larger than the configured maximum", self.log())
        self.still_serves()

    def test_a_frame_that_claims_2_gib_costs_only_what_arrives(self):
        self.start_vm()
        [daemon] = mpvm_processes(self.rundir)
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.connect(os.path.join(self.rundir, "mpvmd.sock"))
        # 8 MiB of it: sendall returns once the daemon has read most of it.
        s.sendall(frame(2, length=0x7fffffff) + b"x" * (8 << 20))
        self.still_serves()
        with open(f"/proc/{daemon}/status") as f:
            rss_kib = int(next(l for l in f if l.startswith("VmRSS")).split()[1])
        self.assertLess(rss_kib, 300 << 10, "the daemon allocated what the header claimed")
        s.close()
        self.still_serves()

    def test_truncated_frame_is_dropped_with_a_warning(self):
        self.start_vm()
        self.send_raw(frame(2, b"\x08\x01", length=100))
        self.assertIn("closed in the middle of a frame", self.log())
        self.still_serves()

    def test_undecodable_control_message_is_ignored(self):
        self.start_vm()
        self.send_raw(frame(2, b"\xff\xff\xff\xff"))
        self.assertIn("undecodable control message", self.log())
        self.still_serves()

    def test_runtime_directory_is_private(self):
        os.makedirs(self.rundir, mode=0o755)
        os.chmod(self.rundir, 0o755)
        self.start_vm()
        self.assertEqual(os.stat(self.rundir).st_mode & 0o777, 0o700)

    def test_ep_directories_are_searched_for_programs(self):
        epdir = os.path.join(self.tmp, "ep")
        os.makedirs(epdir)
        shutil.copy(CHILD, os.path.join(epdir, "only_in_ep"))
        r, w = os.pipe()
        d = subprocess.Popen([MPVMD, "--rundir", self.rundir, "--ep", epdir, "--ready-fd", str(w)],
                             pass_fds=(w,), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        os.close(w)
        self.assertEqual(os.read(r, 16), b"ok\n")  # the daemon's readiness event
        os.close(r)
        out = subprocess.run([CONSOLE, "spawn", "->", "only_in_ep", "env", "X"], env=self.env,
                             capture_output=True, text=True, timeout=30).stdout
        self.assertRegex(out, r"\[t4[0-9a-f]{4}\] X=\(unset\)")
        subprocess.run([CONSOLE, "halt"], env=self.env, capture_output=True, timeout=30)
        d.wait(timeout=30)

    def test_task_debug_runs_the_program_under_pvm_debugger(self):
        dbg = os.path.join(self.tmp, "dbg")
        with open(dbg, "w") as f:
            f.write('#!/bin/sh\necho "debugger: $*"\nexec "$@"\n')
        os.chmod(dbg, 0o755)
        env = dict(self.env, PVM_DEBUGGER=dbg)
        out = subprocess.run([CONSOLE, "spawn", "-?", "->", CHILD, "env", "X"], env=env,
                             capture_output=True, text=True, timeout=30).stdout
        self.assertRegex(out, r"\] debugger: \S*mpvm_test_child env X")
        self.assertRegex(out, r"\] X=\(unset\)")

    def start_with_hostfile(self, text, env=None):
        path = os.path.join(self.tmp, "hosts")
        with open(path, "w") as f:
            f.write(text)
        r, w = os.pipe()
        d = subprocess.Popen([MPVMD, "--rundir", self.rundir, "--ready-fd", str(w), path],
                             pass_fds=(w,), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                             text=True, env=env)
        os.close(w)
        said = os.read(r, 4096).decode()
        os.close(r)
        return d, said

    def test_a_hostfile_with_every_pvm_option_expands_its_paths_and_uses_them(self):
        home = os.path.join(self.tmp, "home")
        bindir = os.path.join(home, "apps", "LINUX64")
        os.makedirs(bindir)
        shutil.copy(CHILD, os.path.join(bindir, "only_in_hostfile_ep"))
        env = dict(self.env, HOME=home)
        env.pop("PVM_ARCH", None)
        d, said = self.start_with_hostfile(
            "* so=pw\n"
            "localhost sp=1200 ep=$HOME/apps/$PVM_ARCH wd=${HOME} lo=me dx=/opt/pvm3/lib/pvmd "
            "bx=/usr/bin/gdb ip=127.0.0.1 id=vm1 so=ms\n"
            "&later ip=10.0.0.7 so=ms\n", env)
        self.assertEqual(said, "ok\n", d.stderr.read() if d.poll() is not None else "")
        out = subprocess.run([CONSOLE, "spawn", "->", "only_in_hostfile_ep", "env", "PWD"],
                             env=self.env, capture_output=True, text=True, timeout=30).stdout
        self.assertRegex(out, r"\[t4[0-9a-f]{4}\] PWD=")  # found through the expanded ep=
        subprocess.run([CONSOLE, "halt"], env=self.env, capture_output=True, timeout=30)
        d.wait(timeout=30)

    def test_hostfile_sets_this_hosts_speed(self):
        d, said = self.start_with_hostfile("# test\n* sp=1500\nlocalhost sp=2500 wd=/tmp\n")
        self.assertEqual(said, "ok\n")
        self.assertRegex(self.start_vm(), r"LINUX64 +2500 ")
        subprocess.run([CONSOLE, "halt"], env=self.env, capture_output=True, timeout=30)
        d.wait(timeout=30)

    def test_malformed_hostfile_is_refused_naming_the_line(self):
        d, said = self.start_with_hostfile("localhost\n\nother sp=fast\n")
        _, err = d.communicate(timeout=30)
        self.assertEqual(d.returncode, 1)
        self.assertIn("hosts:3: sp= needs a positive integer (1..1000000), got 'fast'", said)
        self.assertIn("hosts:3:", err)

    def test_other_hosts_in_a_hostfile_are_reported_not_silently_dropped(self):
        d, said = self.start_with_hostfile("localhost\nfarhost.invalid sp=10\n")
        self.assertEqual(said, "ok\n")
        subprocess.run([CONSOLE, "halt"], env=self.env, capture_output=True, timeout=30)
        _, err = d.communicate(timeout=30)
        self.assertIn("hosts: host 'farhost.invalid' (line 2) not started: cannot resolve farhost.invalid", err)

    def test_halt_removes_every_file(self):
        self.start_vm()
        r = subprocess.run([CONSOLE, "halt"], env=self.env, capture_output=True, text=True, timeout=30)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertNothingLeft()


if __name__ == "__main__":
    unittest.main()
