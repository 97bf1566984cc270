// traffic.h — what this task sends to each peer: counted on the caller's
// thread as it sends, and told to its daemon about once a second. A task's
// links to its peers bypass the daemons, so only the task can count; the
// balancer's communication-aware rule reads the rates (issue 14, E12).
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <unordered_map>

#include "control.pb.h"

namespace mpvm {

class TrafficCounter {
 public:
  static constexpr int64_t kEveryNs = 1'000'000'000;
  static constexpr size_t kMaxPeers = 64;  // a note names the busiest peers only

  void Count(int32_t peer, size_t bytes) { bytes_[peer] += bytes; }
  // The note to send at `now_ns`, once kEveryNs has passed since the last
  // one and something was counted; the counts start again from zero. A
  // clock that went back (the task moved to a host whose clock is behind)
  // starts the span again.
  std::optional<ctl::TaskTraffic> Due(int64_t now_ns);

 private:
  std::unordered_map<int32_t, uint64_t> bytes_;
  int64_t since_ns_ = 0;  // start of the span being counted (0: not started)
};

}  // namespace mpvm
