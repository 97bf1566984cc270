"""Transparent migration between hosts: a running task moves, keeps its tid,
and its output equals a run that did not move (docs/design/migration.md).

Two daemons on loopback (master alpha, member beta) form the VM. The task
program, mig_task, is plain PVM code that knows nothing of migration."""
import json
import os
import random
import re
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
import unittest

from harness import (BIN, CONSOLE, MPVMD, PRUN, VmTestCase, mpvm_processes, start_reporting,
                     wait_for_line)

MIG_TASK = os.path.join(BIN, "mig_task")
HOP_TASK = os.path.join(BIN, "hop_task")
SPIN = "600000000"  # about 1.5 s of computing without a PVM call


# prun options for a job whose tasks are moved: output tagged by tid (the
# tests find tids there) and stdin kept from rank 0, which could not move.
MOVABLE = ("--tag-output", "tid", "--stdin", "none")


def mix(x):
    """mig_task's mix(): the pattern a `hold` task keeps in its heap."""
    x ^= x >> 33
    x = (x * 0xff51afd7ed558ccd) & (2**64 - 1)
    x ^= x >> 33
    return x


class LoopbackCapture:
    """Every packet on the loopback interface while it is open (AF_PACKET:
    root only), in `data` once closed."""

    def __enter__(self):
        self.sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(3))  # ETH_P_ALL
        self.sock.bind(("lo", 0))
        self.sock.settimeout(0.2)
        self.sock.setsockopt(socket.SOL_SOCKET, 33, 64 << 20)  # SO_RCVBUFFORCE: drop nothing
        self.packets, self.stop = [], False
        self.thread = threading.Thread(target=self.run)
        self.thread.start()
        return self

    def run(self):
        while not self.stop:
            try:
                self.packets.append(self.sock.recv(1 << 20))
            except socket.timeout:
                continue

    def __exit__(self, *exc):
        self.stop = True
        self.thread.join()
        self.sock.setblocking(False)
        while True:  # what came after the thread's last read (loopback sends are synchronous)
            try:
                self.packets.append(self.sock.recv(1 << 20))
            except BlockingIOError:
                break
        tp_packets, self.drops = struct.unpack("II", self.sock.getsockopt(263, 6, 8))  # PACKET_STATISTICS
        self.sock.close()
        self.data = b"\n".join(self.packets)


def strip_tids(text):
    return [re.sub(r"^\[t[0-9a-f]+\] ", "", line) for line in text.splitlines()]


class MigrateBase(VmTestCase):
    """A VM of several daemons on loopback: the first is the master."""

    @classmethod
    def setUpClass(cls):
        libs = subprocess.run(["ldd", MIG_TASK], capture_output=True, text=True).stdout
        if "libasan" in libs or "libtsan" in libs or "libubsan" in libs:
            raise unittest.SkipTest("sanitizer builds cannot migrate (shadow memory); "
                                    "the dev build runs these tests")

    def setUp(self):
        super().setUp()
        self.procs = []
        self.daemons = {}  # name: (process, runtime directory)

    def start_vm(self, *names, faults=None, env=None):
        """Starts one daemon per name; faults: {name: MPVM_FAULT value};
        env: more environment for every daemon."""
        faults = faults or {}
        for name in names:
            rundir = self.rundir if not self.daemons else os.path.join(self.tmp, "run-" + name)
            argv = [MPVMD, "--rundir", rundir, "--hostname", name]
            if not self.daemons:
                argv += ["--listen", "127.0.0.1:0"]
            else:
                with open(os.path.join(self.rundir, "master.addr")) as f:
                    argv += ["--join", f.read().strip(), "--key",
                             os.path.join(self.rundir, "vm.key")]
            denv = dict(self.env, MPVM_KEEP_LOG="1", **(env or {}))
            if name in faults:
                denv["MPVM_FAULT"] = faults[name]
            p, said = start_reporting(argv, denv, log=os.path.join(self.tmp, name + ".log"))
            self.procs.append(p)
            self.assertEqual(said, "ok\n")
            self.daemons[name] = (p, rundir)

    def tearDown(self):
        if not getattr(self._outcome, "success", True):  # the daemons' view, for a post-mortem
            for name, (_, d) in self.daemons.items():
                with open(os.path.join(d, "mpvmd.log"), errors="replace") as f:
                    print("---- last lines of", name, "mpvmd.log", *f.readlines()[-15:], sep="\n",
                          file=sys.stderr)
        for p in self.procs:
            if p.poll() is None:
                p.kill()
            p.communicate()
        for _, d in list(self.daemons.values())[1:]:
            for pid in mpvm_processes(d, (b"mpvmd", b"mig_task")):
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass  # it finished exiting meanwhile
        super().tearDown()

    def console(self, *args, host=None):
        rundir = self.daemons[host][1] if host else self.rundir
        env = dict(self.env, MPVM_RUNDIR=rundir)
        return subprocess.run([CONSOLE, *args], env=env, capture_output=True, text=True,
                              timeout=60)

    def start(self, *args, host=None):
        where = ["--host", host] if host else []
        p = subprocess.Popen([PRUN, *MOVABLE, *where, MIG_TASK, *args], env=self.env,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self.procs.append(p)
        return p

    def first_line(self, p):
        """The task's first line of output, and its tid."""
        first = wait_for_line(p.stdout, lambda l: "start" in l)[-1]
        return first, re.match(r"\[(t[0-9a-f]+)\]", first).group(1)

    def task_tids(self):
        out = self.console("ps").stdout  # every host's tasks
        return ["t" + m for m in re.findall(r"^\s*\w+\s+([0-9a-f]+)\s.*mig_task$", out, re.M)]

    def migrate(self, tid, host):
        r = self.console("migrate", tid, host)
        self.assertEqual(r.returncode, 0, r.stderr)
        return r.stdout

    def host_of(self, tid):
        m = re.search(r"^\s*(\w+)\s+%s\s" % tid[1:], self.console("ps").stdout, re.M)
        return m.group(1) if m else None

    def copies_on(self, name):
        """Processes of the test program that belong to host `name` (a
        restore process included, before it becomes the task)."""
        return mpvm_processes(self.daemons[name][1], (b"mig_task",))

    def ring_under_random_moves(self, k, rounds, hosts, seed, max_moves=None):
        """Runs `mig_task ring K ROUNDS` while moving random tasks to random
        hosts until it ends (or max_moves moves); returns the moves made.
        Nothing may be lost, doubled or reordered: every task's checksum of
        the stream it saw must equal that of a run without moves."""
        want = self.reference("ring", str(k), str(rounds))
        p = self.start("ring", str(k), str(rounds))
        rng = random.Random(seed)
        tids = []
        while len(tids) < k and p.poll() is None:
            tids = self.task_tids()
        moves = 0
        while p.poll() is None and (max_moves is None or moves < max_moves):
            r = self.console("migrate", rng.choice(tids), rng.choice(hosts))
            if "moved to" in r.stdout:
                moves += 1
            elif r.returncode != 0:  # only a task that has finished may be missing
                self.assertRegex(r.stderr, "(?i)no task|has exited|it ended|not called")
        out, err = p.communicate(timeout=180)
        self.assertEqual(p.returncode, 0, err)
        self.assertEqual(strip_tids(out), want)
        return moves

    def reference(self, *args):
        r = subprocess.run([PRUN, *MOVABLE, MIG_TASK, *args], env=self.env, capture_output=True, text=True,
                           timeout=120)
        self.assertEqual(r.returncode, 0, r.stderr)
        return strip_tids(r.stdout)


class MigrateTest(MigrateBase):
    def setUp(self):
        super().setUp()
        self.start_vm("alpha", "beta")

    def test_a_computing_task_moves_and_keeps_its_tid_and_output(self):
        want = self.reference("spin", SPIN)
        p = self.start("spin", SPIN)
        first, tid = self.first_line(p)
        said = self.migrate(tid, "beta")
        self.assertIn("moved to beta", said)
        self.assertEqual(self.host_of(tid), "beta")
        out, err = p.communicate(timeout=120)
        self.assertEqual(p.returncode, 0, err)
        self.assertEqual([strip_tids(first)[0]] + strip_tids(out), want)
        # Every line still came from the same tid.
        self.assertEqual(set(re.findall(r"^\[(t[0-9a-f]+)\]", out, re.M)), {tid})

    def test_ps_shows_a_moved_task_as_it_was_started(self):
        # The restore points the kernel's argument range at the task's own
        # (PR_SET_MM_MAP, which needs no capability).
        p = self.start("spin", SPIN)
        _, tid = self.first_line(p)
        self.assertIn("moved to beta", self.migrate(tid, "beta"))
        m = re.search(r"^\s*beta\s+%s\s+\S+\s+(\d+)" % tid[1:], self.console("ps").stdout, re.M)
        self.assertIsNotNone(m)
        with open("/proc/%s/cmdline" % m.group(1), "rb") as f:
            argv = f.read().split(b"\0")
        self.assertEqual(argv[1:3], [b"spin", SPIN.encode()])
        self.assertTrue(argv[0].endswith(b"mig_task"), argv)
        p.communicate(timeout=120)

    def test_prun_trace_shows_the_task_on_each_host_and_its_migration(self):
        trace = os.path.join(self.tmp, "run.json")
        p = subprocess.Popen([PRUN, *MOVABLE, "--trace", trace, MIG_TASK, "spin", SPIN], env=self.env,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self.procs.append(p)
        _, tid = self.first_line(p)
        self.assertIn("moved to beta", self.migrate(tid, "beta"))
        out, err = p.communicate(timeout=120)
        self.assertEqual(p.returncode, 0, err)
        with open(trace) as f:
            events = json.load(f)["traceEvents"]
        hosts = {e["args"]["name"]: e["pid"] for e in events if e["name"] == "process_name"}
        self.assertEqual(set(hosts), {"alpha", "beta"})
        thread = int(tid[1:], 16)
        on = lambda host: [e for e in events if e["ph"] == "X" and e.get("cat") == "task" and
                           e["pid"] == hosts[host] and e["tid"] == thread]
        self.assertEqual(len(on("alpha")), 1, events)  # until it moved
        self.assertEqual(len(on("beta")), 1, events)   # from the commit to its end
        self.assertLessEqual(on("alpha")[0]["ts"] + on("alpha")[0]["dur"], on("beta")[0]["ts"])
        moves = [e for e in events if e.get("cat") == "migration" and e["ph"] == "X"]
        self.assertEqual(len(moves), 1)
        m = moves[0]
        self.assertEqual((m["name"], m["pid"], m["tid"]), ("migrate to beta", hosts["alpha"],
                                                           thread))
        a = m["args"]
        self.assertLessEqual(a["request_ns"], a["freeze_ns"])
        self.assertLessEqual(a["freeze_ns"], a["restored_ns"])
        self.assertLessEqual(a["restored_ns"], a["commit_ns"])
        self.assertGreater(a["bytes"], 0)
        self.assertEqual(a["admin_messages"], 9)
        for k in ("forwarded", "link_updates", "forwarded_later"):
            self.assertIn(k, a)
        flows = sorted(e["ph"] for e in events if e["ph"] in ("s", "f"))
        self.assertEqual(flows, ["f", "s"])  # an arrow from alpha to beta

    def test_each_host_hashes_a_file_once(self):
        # The program's and libraries' mappings are checked by content hash
        # on both sides of a move; each host remembers what it computed
        # (rundir/hash-cache), so later moves find them there.
        p = self.start("spin", "2000000000")
        _, tid = self.first_line(p)
        caches = [os.path.join(d, "hash-cache") for _, d in self.daemons.values()]
        sizes = []
        for i in range(6):
            self.assertIn("moved to", self.migrate(tid, "beta" if i % 2 == 0 else "alpha"))
            sizes.append([os.path.getsize(c) if os.path.exists(c) else 0 for c in caches])
        self.assertTrue(all(s > 0 for s in sizes[1]), sizes)  # both hosts hashed, once
        self.assertEqual(sizes[1], sizes[-1], "later moves hashed the same files again")
        p.kill()

    def test_a_moving_tasks_memory_never_crosses_the_wire_in_clear(self):
        """Item 8 of the issue "Correct and at home": a task holds a 1 MiB
        pattern and moves while every loopback packet is captured; no packet
        holds a word of it, though a control sent in clear is found. The
        restore process listened on the daemons' address, not on all."""
        if os.geteuid() != 0:
            self.skipTest("capturing loopback packets needs root (CAP_NET_RAW)")
        p = self.start("hold", "1", host="alpha")
        wait_for_line(p.stdout, lambda l: "ready" in l)
        [tid] = self.task_tids()
        words = [mix(i).to_bytes(8, "little") for i in range(1, 65)]  # hold's data[1..64]
        control = b"".join(mix(i).to_bytes(8, "little") for i in range(1000, 1004))
        with LoopbackCapture() as cap:
            self.assertIn("moved to beta", self.migrate(tid, "beta"))
            with socket.create_connection(("127.0.0.1", self.listen_once())) as c:
                c.sendall(control)
        self.assertIn(control, cap.data, "the capture saw nothing: it proves nothing")
        self.assertEqual(cap.drops, 0, "the capture dropped packets")
        leaked = [w.hex() for w in words if w in cap.data]
        self.assertEqual(leaked, [], "words of the task's memory crossed the wire in clear")
        m = re.search(r"^\s*beta\s+%s\s+\S+\s+(\d+)\s" % tid[1:], self.console("ps").stdout, re.M)
        self.assertIsNotNone(m, "the task is not shown on beta")
        os.kill(int(m.group(1)), signal.SIGUSR1)
        out, err = p.communicate(timeout=60)
        self.assertIn("intact", out, err)
        with open(os.path.join(self.daemons["beta"][1], "mpvmd.log")) as f:
            bound = re.findall(r"waits for its sealed image on (\S+)", f.read())
        self.assertTrue(bound)
        self.assertTrue(all(b.startswith("127.0.0.1:") for b in bound), bound)

    def listen_once(self):
        """A loopback port that takes one connection and reads it (the
        capture's control)."""
        srv = socket.socket()
        srv.bind(("127.0.0.1", 0))
        srv.listen(1)

        def serve():
            conn, _ = srv.accept()
            while conn.recv(65536):
                pass
            conn.close()
            srv.close()
        threading.Thread(target=serve, daemon=True).start()
        return srv.getsockname()[1]

    def test_ten_moves_in_a_row(self):
        want = self.reference("spin", "2000000000")
        p = self.start("spin", "2000000000")
        first, tid = self.first_line(p)
        for i in range(10):
            self.assertIn("moved to", self.migrate(tid, "beta" if i % 2 == 0 else "alpha"))
        out, err = p.communicate(timeout=120)
        self.assertEqual(p.returncode, 0, err)
        self.assertEqual([strip_tids(first)[0]] + strip_tids(out), want)

    def pid_of(self, tid):
        m = re.search(r"^\s*\w+\s+%s\s+\S+\s+(\d+)" % tid[1:], self.console("ps").stdout, re.M)
        return int(m.group(1)) if m else None

    def test_an_arriving_task_is_restored_in_the_process_one_of_its_program_left(self):
        # A process whose task moved away stays on its host as a spare
        # (daemon/server/spares.h); the next task of the same program that
        # arrives there is restored in it rather than in a fresh process.
        want = self.reference("spin", SPIN)
        a = self.start("spin", SPIN)
        first_a, ta = self.first_line(a)
        left = self.pid_of(ta)
        self.assertIn("moved to beta", self.migrate(ta, "beta"))
        self.assertIn(left, self.copies_on("alpha"), "the process it left is kept on alpha")
        b = self.start("spin", SPIN, host="beta")
        first_b, tb = self.first_line(b)
        self.assertIn("moved to alpha", self.migrate(tb, "alpha"))
        self.assertEqual(self.pid_of(tb), left)
        for p, first, tid in ((a, first_a, ta), (b, first_b, tb)):
            out, err = p.communicate(timeout=120)
            self.assertEqual(p.returncode, 0, err)
            self.assertEqual([strip_tids(first)[0]] + strip_tids(out), want)
            self.assertEqual(set(re.findall(r"^\[(t[0-9a-f]+)\]", out, re.M)), {tid})
        # The spare ta's move left on beta ends with the VM.
        kept = self.copies_on("beta")
        self.assertEqual(len(kept), 1, "a spare on beta: %s" % kept)
        self.console("halt")
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and self.copies_on("beta"):
            time.sleep(0.05)
        self.assertEqual(self.copies_on("beta"), [])

    def test_a_ring_exchanging_messages_survives_random_moves(self):
        moves = self.ring_under_random_moves(4, 4000, ["alpha", "beta"], seed=4)
        self.assertGreaterEqual(moves, 5, "too few moves happened during the run")

    def test_a_task_that_cannot_move_is_refused_and_shown_pinned(self):
        want = self.reference("pipe", SPIN)
        p = self.start("pipe", SPIN, host="alpha")
        first, tid = self.first_line(p)
        r = self.console("migrate", tid, "beta")
        self.assertEqual(r.returncode, 1)
        self.assertIn("is pipe:", r.stderr)  # the reason, from the task itself
        ps = self.console("ps").stdout
        self.assertRegex(ps, r"%s is pinned: .*pipe" % tid)
        out, err = p.communicate(timeout=120)
        self.assertEqual(p.returncode, 0, err)
        self.assertEqual(strip_tids(first) + strip_tids(out), want)  # it ran on where it was

    def test_unknown_host_and_task_are_refused_with_a_reason(self):
        p = self.start("spin", SPIN)
        first, tid = self.first_line(p)
        r = self.console("migrate", tid, "nowhere")
        self.assertEqual(r.returncode, 1)
        self.assertIn("no host named 'nowhere'", r.stderr)
        r = self.console("migrate", "t4ffff", "beta")
        self.assertEqual(r.returncode, 1)
        self.assertIn("no task", r.stderr.lower())
        p.communicate(timeout=120)
        self.assertEqual(p.returncode, 0)


class EncryptedLinksTest(MigrateBase):
    """Tasks whose direct links are encrypted (MPVM_LINK_ENCRYPT=1) move too:
    the source daemon carries on each link's cipher where the task left it."""

    def test_a_ring_over_encrypted_links_survives_random_moves(self):
        self.start_vm("alpha", "beta", env={"MPVM_LINK_ENCRYPT": "1"})
        moves = self.ring_under_random_moves(4, 3000, ["alpha", "beta"], seed=6)
        self.assertGreaterEqual(moves, 5, "too few moves happened during the run")
        records = []
        for _, d in self.daemons.values():
            with open(os.path.join(d, "mpvmd.log")) as f:
                records += [json.loads(l.split("migration ", 1)[1]) for l in f
                            if "migration {" in l]
        self.assertGreater(sum(r["encrypted_links"] for r in records), 0,
                           "no move handed over an encrypted link: the test proved nothing")


class ChaosRingTest(MigrateBase):
    """The chaos ring, reduced for CI (bench/chaos_ring.py is the full one:
    16 tasks, 4 hosts, 500 moves)."""

    def test_eight_tasks_on_four_hosts_survive_random_moves(self):
        hosts = ["alpha", "beta", "gamma", "delta"]
        self.start_vm(*hosts)
        moves = self.ring_under_random_moves(8, 3000, hosts, seed=8, max_moves=60)
        self.assertGreaterEqual(moves, 20, "too few moves happened during the run")


class ForwardingTest(MigrateBase):
    """The forwarding bounds: however often a task moves, no message to it is
    forwarded more than twice, and a sender puts at most 2 messages on a link
    after the old host told it the task moved (docs/design/migration.md, "At
    most 2 hops", "Stale sends")."""

    def test_after_100_moves_no_message_took_over_two_hops_nor_a_link_over_two_stale_sends(self):
        hosts = ["alpha", "beta", "gamma"]
        self.start_vm(*hosts)
        stop = os.path.join(self.tmp, "stop")
        trace = os.path.join(self.tmp, "trace.json")
        p = subprocess.Popen([PRUN, *MOVABLE, "--trace", trace, HOP_TASK, stop], env=self.env,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self.procs.append(p)
        _, tid = self.first_line(p)
        for i in range(100):  # the receiver, while its sender streams to it
            self.assertIn("moved to", self.migrate(tid, hosts[(i + 1) % 3]))
        open(stop, "w").close()
        out, err = p.communicate(timeout=120)
        self.assertEqual(p.returncode, 0, out + err)
        self.assertRegex(out, r"received \d+ in order")
        m = re.search(r"hops 0:(\d+) 1:(\d+) 2:(\d+) 3\+:(\d+) max (\d+)", out)
        self.assertIsNotNone(m, out)
        direct, one, two, more, most = map(int, m.groups())
        self.assertEqual(more, 0, out)
        self.assertLessEqual(most, 2, out)
        self.assertGreater(one + two, 0, "no message was forwarded: the test proved nothing")
        # The sender's link updates, by the stale sends it made before each.
        m = re.search(r"link updates by stale sends 0:(\d+) 1:(\d+) 2:(\d+) 3\+:(\d+) max (\d+)",
                      out)
        self.assertIsNotNone(m, out)
        none, once, twice, more_stale, most_stale = map(int, m.groups())
        self.assertGreater(none + once + twice + more_stale, 0,
                           "the sender was never told of a move: the test proved nothing")
        self.assertEqual(more_stale, 0, out)
        self.assertLessEqual(most_stale, 2, out)
        # Every move's record is in the trace, completed by its source's
        # count of what it forwarded after the commit.
        moves = [e["args"] for e in json.load(open(trace))["traceEvents"]
                 if e.get("cat") == "migration" and e["ph"] == "X"]
        self.assertEqual(len(moves), 100, err)
        self.assertTrue(all("forwarded_later" in m for m in moves), err)
        print(f"\n{direct} direct, {one} forwarded once, {two} twice, over 100 moves; "
              f"{none + once + twice} link updates: {none} after no stale send, {once} after 1, "
              f"{twice} after 2", file=sys.stderr)


if __name__ == "__main__":
    unittest.main()
