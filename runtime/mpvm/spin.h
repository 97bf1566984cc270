// spin.h — whether a receive may busy-poll for a while before it sleeps.
//
// Polling wins a few microseconds when the sender runs on another CPU: the
// reply is picked up without a scheduler round trip. It loses when the
// sender needs this CPU: on a host pinned to one CPU (an emulated host), or
// when more tasks are ready to run than there are CPUs. There the spin only
// delays the task it waits for. Measured on this 2-CPU machine: a pair of
// tasks in ping-pong (bench/chatty_pairs, 4 KiB) on one CPU took 177 us a
// round with a 50 us spin and 108 us without.
#pragma once

#include <cstdint>

namespace mpvm {

class SpinPolicy {
 public:
  static constexpr int64_t kRecheckNs = 1'000'000'000;
  struct Cpus {
    int allowed = 1;  // CPUs this task may run on
    int running = 1;  // tasks ready to run on the machine, this one included
  };
  using Probe = Cpus (*)();
  // This process's affinity and /proc/loadavg.
  static Cpus ReadCpus();

  explicit SpinPolicy(Probe probe = &ReadCpus) : probe_(probe) {}

  // Whether to spin at `now_ns`. Looks at the CPUs again once a second, so
  // a task that moved to another host follows its new CPUs.
  bool Allowed(int64_t now_ns);
  // The rule: spin only with more than one CPU to run on, and no more tasks
  // ready to run on the machine (this one included) than those CPUs.
  static bool Decide(int cpus_allowed, int running);

 private:
  Probe probe_;
  int64_t checked_ns_ = 0;
  bool checked_ = false;
  bool allowed_ = false;
};

}  // namespace mpvm
