#include "spin.h"

#include <sched.h>

#include <cstdio>

namespace mpvm {
namespace {

int CpusAllowed() {
  cpu_set_t set;
  CPU_ZERO(&set);
  if (sched_getaffinity(0, sizeof set, &set) != 0) return 1;
  return CPU_COUNT(&set);
}

// Tasks ready to run on the machine now: /proc/loadavg's "R/T" field.
// Unknown: as many as can run without harm (1).
int RunningNow() {
  FILE* f = std::fopen("/proc/loadavg", "r");
  if (f == nullptr) return 1;
  int running = 1;
  if (std::fscanf(f, "%*f %*f %*f %d/", &running) != 1) running = 1;
  std::fclose(f);
  return running;
}

}  // namespace

SpinPolicy::Cpus SpinPolicy::ReadCpus() { return {CpusAllowed(), RunningNow()}; }

bool SpinPolicy::Decide(int cpus_allowed, int running) {
  return cpus_allowed > 1 && running <= cpus_allowed;
}

bool SpinPolicy::Allowed(int64_t now_ns) {
  // (A clock that went back, on a host the task moved to, checks again.)
  if (!checked_ || now_ns - checked_ns_ >= kRecheckNs || now_ns < checked_ns_) {
    const Cpus c = probe_();
    allowed_ = Decide(c.allowed, c.running);
    checked_ = true;
    checked_ns_ = now_ns;
  }
  return allowed_;
}

}  // namespace mpvm
