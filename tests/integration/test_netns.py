"""Hosts with their own network: daemons in network namespaces, joined by
hand (`mpvmd --join`) and started over ssh (`mpvm add`, host files).

Run under tests/support/netns_hosts.sh, which makes the namespaces (with an
sshd in each) inside a sandbox of this test's own. Where it could not make
them, the join tests run with daemons on loopback and say so, and the ssh
tests are skipped with the reason.
"""
import os
import re
import shutil
import subprocess
import sys
import time
import unittest

from harness import CHILD, CONSOLE, MPVMD, PRUN, RING, VmTestCase, start_reporting

HOSTS = [h.split("=", 1) for h in os.environ.get("MPVM_TEST_HOSTS", "").split()]
GATEWAY = os.environ.get("MPVM_TEST_GATEWAY", "")
WHY_NOT = os.environ.get("MPVM_TEST_NETNS", "not run under tests/support/netns_hosts.sh")
if not HOSTS:
    print(f"test_netns: no network namespaces ({WHY_NOT}): using loopback daemons",
          file=sys.stderr)


def netns_of(pid):
    return os.readlink(f"/proc/{pid}/ns/net")


def daemon_pids(hostname):
    found = []
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open(f"/proc/{d}/cmdline", "rb") as f:
                cmd = f.read().split(b"\0")
        except OSError:
            continue
        if cmd and cmd[0].endswith(b"mpvmd") and b"--hostname" in cmd and \
                cmd[cmd.index(b"--hostname") + 1] == hostname.encode():
            found.append(int(d))
    return found


def wait_gone(pids, timeout=20):
    import select
    for pid in pids:
        try:
            fd = os.pidfd_open(pid)
        except OSError:
            continue
        select.select([fd], [], [], timeout)
        os.close(fd)
    def alive(pid):  # an exited process not yet reaped by its parent (sshd) is a zombie
        try:
            with open(f"/proc/{pid}/stat") as f:
                return f.read().rsplit(")", 1)[1].split()[0] != "Z"
        except OSError:
            return False
    return [p for p in pids if alive(p)]


class NamespaceTestCase(VmTestCase):
    def setUp(self):
        super().setUp()
        self.env["MPVM_DEAD_AFTER"] = "20"  # a loaded CI machine must not lose hosts mid-test
        self.procs = []

    def tearDown(self):
        for p in self.procs:
            if p.poll() is None:
                p.kill()
            p.communicate()
        super().tearDown()

    def mpvm(self, *args, timeout=60):
        return subprocess.run([CONSOLE, *args], env=self.env, capture_output=True, text=True,
                              timeout=timeout)

    def daemon(self, argv, env=None):
        p, said = start_reporting(argv, env or self.env)
        self.procs.append(p)
        return p, said


class JoinedNamespaceHostsTest(NamespaceTestCase):
    """`mpvmd --join` run inside each namespace (as an external launcher would)."""

    def test_four_hosts_with_their_own_addresses_run_a_job(self):
        listen = (GATEWAY or "127.0.0.1") + ":0"
        _, said = self.daemon([MPVMD, "--rundir", self.rundir, "--listen", listen,
                               "--hostname", "alpha"])
        self.assertEqual(said, "ok\n")
        with open(os.path.join(self.rundir, "master.addr")) as f:
            addr = f.read().strip()
        key = os.path.join(self.rundir, "vm.key")
        names = [name for name, _ in HOSTS[:3]] or ["lo1", "lo2", "lo3"]
        for name in names:
            cmd = [MPVMD, "--join", addr, "--key", key, "--hostname", name, "--rundir",
                   os.path.join(self.tmp, "run-" + name)]
            if HOSTS:
                cmd = ["ip", "netns", "exec", name, *cmd]
            _, said = self.daemon(cmd)
            self.assertEqual(said, "ok\n", f"{name}: {said}")
        self.assertIn("4 hosts", self.mpvm("conf").stdout)
        if HOSTS:
            spaces = {netns_of(daemon_pids(n)[0]) for n in names}
            self.assertEqual(len(spaces), 3)
            self.assertNotIn(netns_of(os.getpid()), spaces)
        r = subprocess.run([PRUN, "-n", "8", RING, "5"], env=self.env, capture_output=True,
                           text=True, timeout=120)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn("8 tasks passed the token 5 times", r.stdout)
        self.assertEqual(self.mpvm("halt").returncode, 0)
        for p in self.procs:
            self.assertEqual(p.wait(timeout=30), 0)
        self.assertNothingLeft()


@unittest.skipUnless(HOSTS and os.environ.get("MPVM_RSH"),
                     f"needs test hosts with sshd (tests/support/netns_hosts.sh K --sshd): {WHY_NOT}")
class SshStartedHostsTest(NamespaceTestCase):
    """`mpvm add HOST` and host files start daemons over ssh, as PVM did with rsh."""

    def test_add_starts_daemons_over_ssh_and_delete_stops_them(self):
        (n1, ip1), (n2, ip2) = HOSTS[0], HOSTS[1]
        self.assertEqual(self.mpvm("conf").returncode, 0)  # starts the master
        r = self.mpvm("add", n1, f"ip={ip1}", "sp=2000")
        self.assertEqual(r.returncode, 0, r.stderr)
        r = self.mpvm("add", n2, f"ip={ip2}")
        self.assertEqual(r.returncode, 0, r.stderr)
        out = self.mpvm("conf").stdout
        self.assertIn("3 hosts", out)
        self.assertRegex(out, rf"{n1} +80000 +LINUX64 +2000")
        # Each daemon runs in its host's namespace, not ours.
        p1, p2 = daemon_pids(n1), daemon_pids(n2)
        self.assertEqual((len(p1), len(p2)), (1, 1))
        self.assertNotEqual(netns_of(p1[0]), netns_of(os.getpid()))
        self.assertNotEqual(netns_of(p1[0]), netns_of(p2[0]))
        # The key reached it on stdin, never on its disk.
        with open(f"/proc/{p1[0]}/cmdline", "rb") as f:
            self.assertIn(b"--key\0-\0", f.read())
        r = subprocess.run([PRUN, "-n", "6", "--tag-output", "tid", CHILD, "ring", "3"], env=self.env,
                           capture_output=True, text=True, timeout=120)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual({line[2] for line in r.stdout.splitlines()}, {"4", "8", "c"}, r.stdout)
        self.assertEqual(self.mpvm("delete", n1).returncode, 0)
        self.assertEqual(wait_gone(p1), [])
        self.assertIn("2 hosts", self.mpvm("conf").stdout)
        self.assertEqual(self.mpvm("halt").returncode, 0)
        self.assertEqual(wait_gone(p2), [])
        self.assertNothingLeft()

    def test_a_failed_remote_start_says_why(self):
        n1, ip1 = HOSTS[0]
        r = self.mpvm("add", n1, f"ip={ip1}", "dx=/nonexistent/mpvmd")
        self.assertEqual(r.returncode, 1)
        self.assertIn("/nonexistent/mpvmd", r.stderr)
        self.assertRegex(r.stderr, "No such file|not found")
        self.assertIn("1 host", self.mpvm("conf").stdout)

    def test_hostfile_hosts_are_started_with_the_vm(self):
        (n1, ip1), (n2, ip2) = HOSTS[0], HOSTS[1]
        hostfile = os.path.join(self.tmp, "hosts")
        with open(hostfile, "w") as f:
            f.write(f"* sp=1500\n{n1} ip={ip1}\n{n2} ip={ip2} sp=4000\n")
        os.makedirs(self.rundir, mode=0o700, exist_ok=True)
        d, said = self.daemon([MPVMD, "--rundir", self.rundir, hostfile])
        self.assertEqual(said, "ok\n")
        # The master reports ready once its host file's hosts have joined.
        out = self.mpvm("conf").stdout
        self.assertIn("3 hosts", out)
        self.assertRegex(out, rf"{n1} +\w+ +LINUX64 +1500")
        self.assertRegex(out, rf"{n2} +\w+ +LINUX64 +4000")
        self.assertEqual(self.mpvm("halt").returncode, 0)
        self.assertEqual(d.wait(timeout=30), 0)
        self.assertEqual(wait_gone(daemon_pids(n1) + daemon_pids(n2)), [])
        self.assertNothingLeft()


@unittest.skipUnless(HOSTS and os.environ.get("MPVM_RSH") and shutil.which("mpirun"),
                     f"needs test hosts with sshd and Open MPI: {WHY_NOT}")
class MpirunLaunchTest(NamespaceTestCase):
    """The documented recipe: Open MPI starts one member daemon per node."""

    def test_mpirun_ppr_1_node_starts_one_daemon_per_host(self):
        _, said = self.daemon([MPVMD, "--rundir", self.rundir, "--listen", GATEWAY + ":0",
                               "--hostname", "alpha"])
        self.assertEqual(said, "ok\n")
        with open(os.path.join(self.rundir, "master.addr")) as f:
            addr = f.read().strip()
        key = os.path.join(self.rundir, "vm.key")
        ips = [ip for _, ip in HOSTS[:3]]
        # The test hosts share this machine's host name and /tmp, so name each
        # daemon by its rank and give it a runtime directory of its own.
        launcher = subprocess.Popen(
            ["mpirun", "--allow-run-as-root", "--host", ",".join(ips), "--map-by", "ppr:1:node",
             "--mca", "plm_rsh_agent", os.environ["MPVM_RSH"],
             "--mca", "oob_tcp_if_include", GATEWAY + "/24",
             os.path.join(os.environ["MPVM_BUILD"], "bin", "mpvm-join"), addr, key,
             "--hostname", "node{rank}", "--rundir", os.path.join(self.tmp, "run-node{rank}")],
            env=self.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self.procs.append(launcher)
        # The daemons join on their own; watch the host table fill (bounded).
        deadline = time.monotonic() + 60
        out = ""
        while time.monotonic() < deadline and launcher.poll() is None:
            out = self.mpvm("conf").stdout
            if f"{len(ips) + 1} hosts" in out:
                break
        self.assertIn(f"{len(ips) + 1} hosts", out)
        for rank in range(len(ips)):
            pids = daemon_pids(f"node{rank}")
            self.assertEqual(len(pids), 1)
            self.assertNotEqual(netns_of(pids[0]), netns_of(os.getpid()))
        r = subprocess.run([PRUN, "-n", "8", RING, "2"], env=self.env, capture_output=True,
                           text=True, timeout=120)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn("8 tasks passed the token 2 times", r.stdout)
        # Halting the VM ends the daemons, and with them the mpirun job.
        self.assertEqual(self.mpvm("halt").returncode, 0)
        _, err = launcher.communicate(timeout=60)
        self.assertEqual(launcher.returncode, 0, err)
        self.assertNothingLeft()


if __name__ == "__main__":
    unittest.main()
