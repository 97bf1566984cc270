// options.h — how mpvmd was asked to run (its command line, main.cc).
#pragma once

#include <string>

namespace mpvm {

struct ServerOptions {
  std::string rundir;
  int ready_fd = -1;
  bool embedded = false;
  std::string hostname;
  // PVM's ep= host option: directories searched for spawned programs after
  // $HOME/pvm3/bin/LINUX64 and before the spawner's PATH.
  std::string ep;
  std::string hostfile;  // PVM host file; this host's line sets sp=, ep=, wd=
  std::string wd;        // working directory of spawned tasks (PVM's wd=)
  // Multi-host. A master listens ("ADDR:PORT", port 0: any free one); a
  // member joins a master. Both use the VM key file (created by the master
  // in its runtime directory when none is given).
  std::string listen;
  std::string join;
  std::string key;
  int speed = 0;  // 0: 1000 or the host file's sp=
  // An emulated host: its tasks together get speed/1000 of one CPU here
  // (server/cpu_limit.h). The master gives it to the emulated hosts it
  // starts with an sp= (local=1 in a host file; `mpvm add --local`).
  bool emulate_speed = false;
  // The CPU an emulated host of speed 1000 or less runs its tasks on (the
  // master picks one for each host it starts; -1: any).
  int emulate_cpu = -1;
  // An emulated host in virtual-work mode (DaemonConfig::virtual_work): no
  // CPU limit; its tasks' mpvm_work advances at speed / (tasks working).
  // The master passes it on to the emulated hosts it starts.
  bool virtual_work = false;
  // An emulated host (the master starts them with it): it shares this
  // machine with the other hosts, so /proc/stat's load is not its
  // background; only what runs in its CPU group and is no task of its own is.
  bool emulated = false;
  // Another host's file hash cache to share (`<rundir>/hash-cache` becomes a
  // link to it): the emulated hosts a master starts share its own, since
  // they map the same files. Else each host hashes every library once.
  std::string hash_cache;
  // How (env MPVM_CPU_LIMIT): "" picks the first that works; "duty" forces
  // SIGSTOP/SIGCONT duty cycling (to test it, or where cgroups misbehave).
  std::string cpu_limit_mode;
  double dead_after_s = 3.0;  // a host silent this long is declared dead
  double heartbeat_s = 0.5;
  // Fault injection for tests (env MPVM_FAULT): "exit-on-STEP" ends this
  // daemon at once, as a crash would; "kill-task-on-STEP" kills the moving
  // task. STEP: offer, accept, handover, image (docs/design/migration.md).
  std::string fault;
  int test_moves = 0;  // env MPVM_TEST_MOVES: see DaemonConfig::test_moves
  // Processes of tasks that moved away, kept per program to restore the next
  // arrivals with (env MPVM_SPARES; server/spares.h). 0: none.
  int spares = 2;
  std::string placement = "round-robin";  // see DaemonConfig::placement
  std::string balance = "off";            // on/off: see DaemonConfig::balance
  double balance_period_s = 1.0;
  double balance_residency_s = 1.0;  // minimum age and residency before a move
};

}  // namespace mpvm
