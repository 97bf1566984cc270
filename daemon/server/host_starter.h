// host_starter.h — the master starting the daemons of other hosts: emulated
// hosts on this machine (in network namespaces when it can, else on
// loopback) and real hosts over the remote shell, each told to join this
// master. A daemon that ends before it joined (or later) is reaped here:
// what it said, and the directory an emulated host left, are taken care of.
#pragma once

#include <sys/types.h>

#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "core/env.h"
#include "hostfile.h"
#include "server/cpu_limit.h"
#include "server/host_launch.h"
#include "server/options.h"
#include "server/vm_links.h"

namespace mpvm {

class HostStarter {
 public:
  // `own_speed`: this host's speed, which the hosts started on this machine
  // without an sp= of their own share (the same CPU; measured once).
  HostStarter(const ServerOptions& opts, VmLinks& links, int own_speed)
      : opts_(opts),
        links_(links),
        own_speed_(own_speed),
        cpu_speed_(static_cast<size_t>(MachineCpus()), 0) {}

  mpvm::expected<void, HostStartError> Start(const HostSpec& spec);
  // A host daemon started here ended: its host's name and why.
  std::optional<std::pair<std::string, std::string>> Reaped(pid_t pid, int status);
  std::vector<pid_t> Pids() const;
  // The daemons' output pipes and the emulated hosts' bridge.
  void Close();
  // This daemon is itself an emulated host of `speed` on `cpu`.
  void TakeCpu(int cpu, int speed);
  // Whether this master has started emulated hosts (this machine's load is
  // then theirs too, not background).
  bool started_emulated() const { return started_emulated_; }

 private:
  // How to start a host's daemon: the command, the emulated host's address
  // in its network namespace (if any), and what goes to its stdin (the key).
  struct HostCommand {
    std::vector<std::string> argv;
    std::string netns_address, stdin_text;
  };
  mpvm::expected<HostCommand, HostStartError> EmulatedHostCommand(
      const HostSpec& spec, const std::string& daemon, const std::vector<std::string>& common);
  mpvm::expected<HostCommand, HostStartError> RemoteHostCommand(
      const HostSpec& spec, const std::string& daemon, const std::vector<std::string>& common);
  // What a daemon's starter printed last: "" for "ok", else why it failed.
  static std::string LastWords(int fd);
  // Sums the speeds of the emulated hosts started; warns once past what
  // this machine can give (server/cpu_limit.h).
  void NoteEmulatedSpeed(int speed);
  bool started_emulated_ = false;
  // A daemon killed outright cannot tidy up: what it left is removed.
  void RemoveHostDir(const std::string& name) const;

  const ServerOptions& opts_;
  VmLinks& links_;
  const int own_speed_;
  std::unique_ptr<EmulatedNet> net_;  // emulated hosts' network, if namespaces are used
  bool loopback_noted_ = false;
  int emulated_speed_ = 0;  // of the emulated hosts with enforced speeds
  bool speed_warned_ = false;
  struct LocalHost {
    std::string name;
    int output_fd;
    bool local;    // an emulated host (else started over the remote shell)
    int cpu = -1;  // the CPU it runs its tasks on (an emulated host of speed <= 1000)
    int speed = 0;
  };
  // The CPU with the most room for an emulated host of `speed` (-1: more
  // than one CPU's worth); it is counted there until the host ends.
  int PickCpu(int speed);
  std::vector<int> cpu_speed_;  // by CPU: the emulated speed placed on it
  std::map<pid_t, LocalHost> host_pids_;
};

}  // namespace mpvm
