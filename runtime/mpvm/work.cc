#include "mpvm/work.h"

#include <fcntl.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>

#include "mpvm/paths.h"

namespace mpvm {

std::optional<VirtualCpu> ReadVirtualCpu(const std::string& rundir) {
  // Plain system calls: this runs every 10 ms in every working task.
  const int fd = open(VirtualCpuPath(rundir).c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return std::nullopt;
  char buf[64];
  const ssize_t n = read(fd, buf, sizeof buf - 1);
  close(fd);
  if (n <= 0) return std::nullopt;
  buf[n] = '\0';
  VirtualCpu v;
  if (std::sscanf(buf, "%d %d", &v.speed, &v.working) != 2 || v.speed <= 0) return std::nullopt;
  return v;
}

double VirtualProgress(const VirtualCpu& v, int64_t wall_ns) {
  const double ms = static_cast<double>(std::max<int64_t>(0, wall_ns)) / 1e6;
  return ms * v.speed / 1000.0 / std::max(1, v.working);
}

void Spin(double ms) {
  // The CPU time used is summed in steps: a task that moves meanwhile goes on
  // in a new process whose CPU clock starts again near zero.
  const auto cpu_ms = [] {
    timespec t{};
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t);
    return static_cast<double>(t.tv_sec) * 1e3 + static_cast<double>(t.tv_nsec) / 1e6;
  };
  volatile uint64_t x = 0x9e3779b97f4a7c15ull;
  double used = 0, last = cpu_ms();
  while (used < ms) {
    for (int i = 0; i < 2000; ++i) x = x * 6364136223846793005ull + 1442695040888963407ull;
    const double now = cpu_ms();
    used += now >= last ? now - last : now;  // after a move: what the new process used
    last = now;
  }
}

}  // namespace mpvm
