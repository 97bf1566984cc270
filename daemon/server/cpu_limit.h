// cpu_limit.h — an emulated host's speed, enforced: all the tasks of the
// host together get speed/1000 of one CPU of this machine, so a cluster of
// hosts of mixed speed can be emulated on one machine (docs/user-guide.md,
// "Emulated hosts").
//
// Three ways, the first that works:
//   cgroup v1  a group of the `cpu` controller with cpu.cfs_quota_us over a
//              10 ms cpu.cfs_period_us;
//   cgroup v2  the same through cpu.max;
//   duty cycle SIGSTOP/SIGCONT of the host's task processes in 50 ms
//              periods, each running for its share. Cruder: it assumes the
//              tasks are CPU-bound and counts them against this machine's
//              cores, so use it only where no cgroup is writable.
// A process started by the daemon (a task, or the restore process of a task
// moving here) is added at once; what it forks follows it (cgroups) or not
// (duty cycle). A task that moves away leaves the group with its process.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace mpvm {

class CpuLimit {
 public:
  virtual ~CpuLimit() = default;
  // Process `pid` is one of the host's tasks from now on.
  virtual void Add(pid_t pid) = 0;
  // Process `pid` ended.
  virtual void Remove(pid_t pid) = 0;
  // Duty cycling: stop or continue the tasks as the period demands; returns
  // the nanoseconds until the next call is due (-1: never needed).
  virtual int64_t Tick(int64_t now_ns) = 0;
  // "cgroup v1 /sys/fs/cgroup/cpu/...", "duty cycle": for the log.
  virtual std::string How() const = 0;
  // The processes in the host's CPU group, ours or not (a cgroup takes in
  // whatever is written to it); empty where only ours can be in it.
  virtual std::vector<pid_t> Members() const { return {}; }
};

// The limit for host `name` at `speed` (sp= units, 1000 = one CPU here),
// or nullptr when speed is at least the machine's CPUs (nothing to limit).
// `cores` is this machine's CPU count. Never fails: where no cgroup can be
// made, `*why` says why and duty cycling is used.
// `mode` "duty" skips the cgroups. `cpu` >= 0: the host's tasks also run on
// that CPU only. A host of speed 1000 or less is one CPU of this machine;
// its tasks spread over several CPUs took the group's quota unevenly (the
// kernel hands a group's quota to a CPU in 5 ms slices, more than a 400
// host's 4 ms per 10 ms period, so one task could starve its neighbour).
std::unique_ptr<CpuLimit> MakeCpuLimit(const std::string& name, int speed, int cores,
                                       const std::string& mode, int cpu, std::string* why);

// Keeps process `pid` on CPU `cpu`; false if the kernel refused.
bool PinToCpu(pid_t pid, int cpu);

// The CPUs this machine has online (what 1000 sp= units per CPU count on).
int MachineCpus();

}  // namespace mpvm
