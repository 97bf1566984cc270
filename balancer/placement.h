// placement.h — where spawned tasks go. Policies are pure functions of a load
// snapshot, so they are tested from tables. One host for now; the multi-host
// and migration policies build on this interface.
#pragma once

#include <vector>

namespace mpvm::balancer {

struct HostLoad {
  int host = 0;        // host index
  double speed = 1.0;  // relative speed
  int tasks = 0;       // runnable tasks now
};

// PVM's default: hosts in turn, starting after the last one used.
// Returns one host index per task. `cursor` carries the turn between calls.
std::vector<int> RoundRobin(const std::vector<HostLoad>& hosts, int ntask, int* cursor);

// Speed-aware: each task to the host whose expected finish time
// (tasks + 1) / speed is lowest after placing it.
std::vector<int> SpeedAware(std::vector<HostLoad> hosts, int ntask);

}  // namespace mpvm::balancer
