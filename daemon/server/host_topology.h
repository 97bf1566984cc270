// host_topology.h — this host's processors, as hwloc sees them: the load
// source's capacity model (how many tasks run at full speed at once) and
// what `mpvm conf` shows. hwloc lives here and nowhere else.
#pragma once

#include <string>

namespace mpvm {

struct HostTopology {
  int cores = 1;  // physical cores (1 if hwloc cannot tell)
  int pus = 1;    // hardware threads
};

// Reads the topology once; on any hwloc failure, says so in `*why` and
// returns one core and one thread.
HostTopology ReadHostTopology(std::string* why);

}  // namespace mpvm
