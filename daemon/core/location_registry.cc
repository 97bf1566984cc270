#include "core/location_registry.h"

#include <algorithm>

namespace mpvm {

std::optional<int> LocationRegistry::At(int tid) const {
  auto it = where_.find(tid);
  if (it == where_.end()) return std::nullopt;
  return it->second;
}

void LocationRegistry::HostGone(int index, std::set<int>* lost, int64_t now) {
  for (auto it = transit_.begin(); it != transit_.end();) {
    if (it->second.from == index && lost->erase(it->first) > 0) {
      limbo_[it->first] = now + kLimboNs;
    } else if (it->second.to != index) {
      ++it;
      continue;
    }
    it = transit_.erase(it);
  }
}

void LocationRegistry::ForgetHost(int index) {
  std::erase_if(where_, [&](const auto& w) { return w.second == index; });
}

std::vector<int> LocationRegistry::Expired(int64_t now) {
  std::erase_if(transit_, [&](const auto& e) { return now - e.second.since_ns > kTransitNs; });
  std::vector<int> out;
  for (const auto& [tid, deadline] : limbo_)
    if (now > deadline) out.push_back(tid);
  for (int t : out) limbo_.erase(t);
  return out;
}

void LocationRegistry::NoteGone(int tid) {
  if (!gone_.insert(tid).second) return;
  gone_order_.push_back(tid);
  if (gone_order_.size() > kGoneKept) {
    gone_.erase(gone_order_.front());
    gone_order_.pop_front();
  }
}

}  // namespace mpvm
