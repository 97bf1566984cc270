"""A VM of several daemons on loopback for the migration benchmarks: the
first host is the master, the others join it."""
import os
import subprocess
import sys


def start_daemon(bin_dir, argv, env):
    r, w = os.pipe()
    p = subprocess.Popen([os.path.join(bin_dir, "mpvmd"), *argv, "--ready-fd", str(w)],
                         pass_fds=(w,), env=env, stdout=subprocess.DEVNULL,
                         stderr=subprocess.DEVNULL)
    os.close(w)
    said = os.read(r, 4096)
    os.close(r)
    if not said.startswith(b"ok"):
        sys.exit(f"mpvmd did not start: {said.decode()}")
    return p


def start_vm(bin_dir, work, names, env, extra=()):
    """Returns (daemon processes, {name: runtime directory}). `extra`: more
    arguments for every daemon (`--emulate-speed --speed 400`, say)."""
    dirs = {n: os.path.join(work, n) for n in names}
    daemons = [start_daemon(bin_dir, ["--rundir", dirs[names[0]], "--hostname", names[0],
                                      "--listen", "127.0.0.1:0", *extra], env)]
    with open(os.path.join(dirs[names[0]], "master.addr")) as f:
        addr = f.read().strip()
    for n in names[1:]:
        daemons.append(start_daemon(bin_dir, ["--rundir", dirs[n], "--hostname", n, "--join",
                                              addr, "--key",
                                              os.path.join(dirs[names[0]], "vm.key"), *extra],
                                    env))
    return daemons, dirs
