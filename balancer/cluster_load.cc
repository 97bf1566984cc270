#include "cluster_load.h"

#include <algorithm>

namespace mpvm::balancer {

const HostLoad* ClusterLoad::Host(int host) const {
  auto it =
      std::find_if(hosts.begin(), hosts.end(), [&](const HostLoad& h) { return h.host == host; });
  return it == hosts.end() ? nullptr : &*it;
}

double ClusterLoad::Work(int host) const {
  const HostLoad* h = Host(host);
  return h == nullptr ? 0 : h->runnable + h->background;
}

}  // namespace mpvm::balancer
