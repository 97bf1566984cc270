// placement_policy.h — where spawned tasks go.
//
// A policy is a pure function of a load snapshot: for `ntask` tasks, one
// host index each, chosen from `candidates` (the hosts the spawn may use, in
// the order PVM tries them: the spawner's host first). The daemon's spawner
// calls it; tests drive it from tables.
//
//   round-robin  PVM's default: task i goes to candidates[i % n].
//   speed-aware  each task to the candidate with the lowest expected time per
//                task after placing it, (work + 1) / speed, counting the tasks
//                this call has placed already (so a burst of spawns spreads
//                instead of swamping the host that looked idlest).
#pragma once

#include <memory>
#include <string_view>
#include <vector>

#include "cluster_load.h"

namespace mpvm::balancer {

class PlacementPolicy {
 public:
  virtual ~PlacementPolicy() = default;
  // One host index per task (empty when there are no candidates).
  virtual std::vector<int> Place(const ClusterLoad& load, const std::vector<int>& candidates,
                                 int ntask) const = 0;
};

class RoundRobinPlacement final : public PlacementPolicy {
 public:
  std::vector<int> Place(const ClusterLoad& load, const std::vector<int>& candidates,
                         int ntask) const override;
};

class SpeedAwarePlacement final : public PlacementPolicy {
 public:
  std::vector<int> Place(const ClusterLoad& load, const std::vector<int>& candidates,
                         int ntask) const override;
};

// "round-robin" or "speed-aware"; nullptr for any other name.
std::unique_ptr<PlacementPolicy> MakePlacementPolicy(std::string_view name);

}  // namespace mpvm::balancer
