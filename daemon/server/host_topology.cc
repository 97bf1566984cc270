#include "server/host_topology.h"

#include <hwloc.h>

#include <algorithm>

namespace mpvm {

HostTopology ReadHostTopology(std::string* why) {
  HostTopology t;
  hwloc_topology_t topo;
  if (hwloc_topology_init(&topo) != 0) {
    *why = "hwloc_topology_init failed";
    return t;
  }
  if (hwloc_topology_load(topo) != 0) {
    *why = "hwloc_topology_load failed";
    hwloc_topology_destroy(topo);
    return t;
  }
  t.cores = std::max(1, hwloc_get_nbobjs_by_type(topo, HWLOC_OBJ_CORE));
  t.pus = std::max(t.cores, hwloc_get_nbobjs_by_type(topo, HWLOC_OBJ_PU));
  hwloc_topology_destroy(topo);
  return t;
}

}  // namespace mpvm
