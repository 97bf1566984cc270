#include "traffic.h"

#include <algorithm>
#include <vector>

namespace mpvm {

std::optional<ctl::TaskTraffic> TrafficCounter::Due(int64_t now_ns) {
  if (since_ns_ == 0 || now_ns < since_ns_) since_ns_ = now_ns;
  if (now_ns - since_ns_ < kEveryNs || bytes_.empty()) return std::nullopt;
  ctl::TaskTraffic note;
  note.set_over_ns(now_ns - since_ns_);
  std::vector<std::pair<int32_t, uint64_t>> busiest(bytes_.begin(), bytes_.end());
  if (busiest.size() > kMaxPeers) {
    std::partial_sort(busiest.begin(), busiest.begin() + kMaxPeers, busiest.end(),
                      [](const auto& a, const auto& b) { return a.second > b.second; });
    busiest.resize(kMaxPeers);
  }
  for (const auto& [peer, bytes] : busiest) {
    auto* p = note.add_peers();
    p->set_tid(peer);
    p->set_bytes(bytes);
  }
  bytes_.clear();
  since_ns_ = now_ns;
  return note;
}

}  // namespace mpvm
