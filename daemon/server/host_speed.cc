#include "server/host_speed.h"

#include <time.h>

#include <algorithm>
#include <cmath>
#include <limits>

namespace mpvm {
namespace {

constexpr uint64_t kIterations = uint64_t{1} << 20;
constexpr int kRuns = 7;
// The loop's best run on the reference machine (one core of the 2-core AMD
// EPYC virtual machine mpvm is developed on, 2026-12): sp=1000.
constexpr double kReferenceNs = 1.8e6;

int64_t ThreadCpuNs() {
  timespec ts{};
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return int64_t{ts.tv_sec} * 1'000'000'000 + ts.tv_nsec;
}

// A chain that no step can start before the previous one ends: xorshift on
// the integer side, a multiply-add on the floating-point side. Built at -O2
// in every build type (daemon/CMakeLists.txt), so a debug build measures the
// same speed.
__attribute__((noinline)) uint64_t Loop(uint64_t n) {
  uint64_t x = 88172645463325252ULL;
  double y = 1.0;
  for (uint64_t i = 0; i < n; ++i) {
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    y = y * 0.999999 + static_cast<double>(x & 0xff) * 1e-9;
  }
  return x ^ static_cast<uint64_t>(y * 1e6);
}

}  // namespace

int SpeedFromRunTime(int64_t best_ns) {
  if (best_ns <= 0) return 1'000'000;
  const double speed = 1000.0 * kReferenceNs / static_cast<double>(best_ns);
  const double rounded = std::round(speed / 10) * 10;
  return static_cast<int>(std::clamp(rounded, 10.0, 1'000'000.0));
}

int CalibrateHostSpeed() {
  int64_t best = std::numeric_limits<int64_t>::max();
  volatile uint64_t sink = 0;  // keeps the loop's result, hence the loop
  for (int r = 0; r < kRuns; ++r) {
    const int64_t start = ThreadCpuNs();
    sink = sink + Loop(kIterations);
    best = std::min(best, ThreadCpuNs() - start);
  }
  return SpeedFromRunTime(best);
}

}  // namespace mpvm
