"""Another user's work on emulated hosts, for the balancer's experiment E4
(../shared/seed-digest.md: background tasks that alternate running and
suspended, each for a random time).

Each background process is a busy loop that is no PVM task: it is written
into its emulated host's cgroup as soon as the host's daemon makes one, so
it takes its share of that host's CPU and the daemon sees it as background
load (docs/design/balancer.md). A thread stops and continues each loop in
turn (SIGSTOP/SIGCONT), for times uniform in [0, cycle) seconds.
"""
import os
import random
import signal
import subprocess
import threading
import time


def host_groups():
    """The emulated hosts' cgroup directories now, by name prefix."""
    found = set()
    for root, dirs, _ in os.walk("/sys/fs/cgroup"):
        found.update(os.path.join(root, d) for d in dirs if d.startswith("mpvm."))
        if root.count(os.sep) > 8:
            dirs[:] = []
    return found


class Background:
    def __init__(self, hosts, cycle_s, seed):
        self.hosts = hosts  # emulated host names, one loop each
        self.cycle_s = cycle_s
        self.rng = random.Random(seed)
        self.loops = []
        self.done = threading.Event()
        self.thread = None
        self.placed = 0

    def start(self):
        """Before the job: loops wait for their hosts' groups to appear."""
        self.before = host_groups()
        self.done.clear()
        self.thread = threading.Thread(target=self.run, daemon=True)
        self.thread.start()

    def stop(self):
        self.done.set()
        if self.thread:
            self.thread.join()
        for p in self.loops:
            p.kill()
            p.wait()
        self.loops = []

    def place(self):
        """Puts one loop in each host's new group; False until all exist."""
        fresh = host_groups() - self.before
        for name in self.hosts[len(self.loops):]:
            group = next((g for g in fresh if os.path.basename(g).startswith("mpvm.%s." % name)),
                         None)
            if group is None:
                return False
            loop = subprocess.Popen(["sh", "-c", "while :; do :; done"])
            self.loops.append(loop)  # killed by stop() whatever happens next
            with open(os.path.join(group, "cgroup.procs"), "w") as f:
                f.write("%d\n" % loop.pid)
        return True

    def run(self):
        while not self.place():
            if self.done.wait(0.01):
                return
        self.placed = len(self.loops)
        # Each loop's next switch, alternating running and suspended.
        due = [time.time() + self.rng.uniform(0, self.cycle_s) for _ in self.loops]
        running = [True] * len(self.loops)
        while not self.done.wait(max(0.0, min(due) - time.time())):
            i = due.index(min(due))
            running[i] = not running[i]
            os.kill(self.loops[i].pid, signal.SIGCONT if running[i] else signal.SIGSTOP)
            due[i] = time.time() + self.rng.uniform(0, self.cycle_s)
