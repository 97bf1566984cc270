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
  return h == nullptr ? 0 : h->runnable + h->pending + h->background;
}

void ClusterLoad::Recount() {
  for (HostLoad& h : hosts) h.runnable = 0;
  for (const TaskLoad& t : tasks)
    for (HostLoad& h : hosts)
      if (h.host == t.host) h.runnable += t.ready;
}

}  // namespace mpvm::balancer
