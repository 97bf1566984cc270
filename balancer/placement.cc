#include "placement.h"

#include <cstddef>

namespace mpvm::balancer {

std::vector<int> RoundRobin(const std::vector<HostLoad>& hosts, int ntask, int* cursor) {
  std::vector<int> out;
  if (hosts.empty() || ntask <= 0) return out;
  out.reserve(static_cast<std::size_t>(ntask));
  for (int i = 0; i < ntask; ++i) {
    *cursor = (*cursor + 1) % static_cast<int>(hosts.size());
    out.push_back(hosts[static_cast<std::size_t>(*cursor)].host);
  }
  return out;
}

std::vector<int> SpeedAware(std::vector<HostLoad> hosts, int ntask) {
  std::vector<int> out;
  if (hosts.empty() || ntask <= 0) return out;
  for (int i = 0; i < ntask; ++i) {
    std::size_t best = 0;
    double best_t = 0;
    for (std::size_t h = 0; h < hosts.size(); ++h) {
      double t = (hosts[h].tasks + 1) / (hosts[h].speed > 0 ? hosts[h].speed : 1e-9);
      if (h == 0 || t < best_t) {
        best = h;
        best_t = t;
      }
    }
    ++hosts[best].tasks;
    out.push_back(hosts[best].host);
  }
  return out;
}

}  // namespace mpvm::balancer
