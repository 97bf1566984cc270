// load_service.h — the master's view of the cluster's load: it keeps each
// host's latest LoadReport (its own included) and builds the ClusterLoad
// snapshot that the balancer's policies decide from (placement at spawn,
// and later the migration policy). It also learns what moves cost, from
// their outcomes, so that the policy uses measured costs.
//
// No I/O, no clock: the time comes with each call.
#pragma once

#include <cstdint>
#include <map>

#include "cluster_load.h"
#include "control.pb.h"

namespace mpvm {

class LoadService {
 public:
  // Host `host` (speed from the host table) reported `r` at `now`.
  void OnReport(int host, int speed, const ctl::LoadReport& r, int64_t now);
  // The host left the virtual machine: it and its tasks are forgotten.
  void OnHostGone(int host);
  // A move of `bytes` finished at a cost of `blackout_ns` (the task stopped).
  void OnMoveDone(uint64_t bytes, int64_t blackout_ns);
  // A move to host `to` failed or was refused at `now`.
  void OnMoveFailed(int to, int64_t now);
  // Moves to `host` that failed, and when the last one did (0: none).
  int failures_to(int host) const;
  int64_t last_failure_ns(int host) const;

  balancer::ClusterLoad Snapshot() const;
  // Measured costs for the migration policy (defaults until moves are seen).
  double bandwidth() const { return bandwidth_; }
  int64_t move_overhead_ns() const { return overhead_ns_; }

 private:
  std::map<int, balancer::HostLoad> hosts_;
  std::map<int, std::vector<balancer::TaskLoad>> tasks_;  // by host
  struct Failures {
    int count = 0;
    int64_t last_ns = 0;
  };
  std::map<int, Failures> failures_;  // by destination host
  double bandwidth_ = 1e9;            // bytes/s
  int64_t overhead_ns_ = 20'000'000;  // fixed part of a move
};

// This host's LoadReport from what the daemon knows of its tasks.
struct LocalTaskInfo {
  int tid = 0;
  int64_t spawned_ns = 0, moved_ns = 0;  // monotonic; moved 0: never
  bool pinned = false;
};
ctl::LoadReport MakeLoadReport(int speed, int cores, const std::vector<LocalTaskInfo>& tasks,
                               int64_t now);

}  // namespace mpvm
