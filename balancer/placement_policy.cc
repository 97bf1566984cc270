#include "placement_policy.h"

#include <cstddef>

namespace mpvm::balancer {

std::vector<int> RoundRobinPlacement::Place(const ClusterLoad&, const std::vector<int>& candidates,
                                            int ntask) const {
  std::vector<int> out;
  if (candidates.empty() || ntask <= 0) return out;
  out.reserve(static_cast<std::size_t>(ntask));
  for (int i = 0; i < ntask; ++i)
    out.push_back(candidates[static_cast<std::size_t>(i) % candidates.size()]);
  return out;
}

std::vector<int> SpeedAwarePlacement::Place(const ClusterLoad& load,
                                            const std::vector<int>& candidates, int ntask) const {
  std::vector<int> out;
  if (candidates.empty() || ntask <= 0) return out;
  std::vector<double> work, speed;
  for (int host : candidates) {
    const HostLoad* h = load.Host(host);
    work.push_back(load.Work(host));
    speed.push_back(h != nullptr && h->speed > 0 ? h->speed : 1000.0);
  }
  for (int i = 0; i < ntask; ++i) {
    std::size_t best = 0;
    for (std::size_t k = 1; k < candidates.size(); ++k)
      if ((work[k] + 1) / speed[k] < (work[best] + 1) / speed[best]) best = k;
    work[best] += 1;  // damping: what this call placed counts at once
    out.push_back(candidates[best]);
  }
  return out;
}

std::unique_ptr<PlacementPolicy> MakePlacementPolicy(std::string_view name) {
  if (name == "round-robin") return std::make_unique<RoundRobinPlacement>();
  if (name == "speed-aware") return std::make_unique<SpeedAwarePlacement>();
  return nullptr;
}

}  // namespace mpvm::balancer
