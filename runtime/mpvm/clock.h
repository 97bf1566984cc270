// clock.h — monotonic time (timeouts, the daemon core's timing) and
// wall-clock time (trace records compared across hosts).
#pragma once

#include <time.h>

#include <cstdint>

namespace mpvm {

inline int64_t MonotonicNs() {
  timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return int64_t{ts.tv_sec} * 1'000'000'000 + ts.tv_nsec;
}

inline int64_t RealtimeNs() {
  timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return int64_t{ts.tv_sec} * 1'000'000'000 + ts.tv_nsec;
}

}  // namespace mpvm
