#include "traffic.h"

namespace mpvm {

std::optional<ctl::TaskTraffic> TrafficCounter::Due(int64_t now_ns) {
  if (since_ns_ == 0) since_ns_ = now_ns;
  if (now_ns - since_ns_ < kEveryNs || bytes_.empty()) return std::nullopt;
  ctl::TaskTraffic note;
  note.set_over_ns(now_ns - since_ns_);
  for (const auto& [peer, bytes] : bytes_) {
    auto* p = note.add_peers();
    p->set_tid(peer);
    p->set_bytes(bytes);
  }
  bytes_.clear();
  since_ns_ = now_ns;
  return note;
}

}  // namespace mpvm
