// cluster_load.h — a snapshot of the virtual machine's load: what the
// balancer's policies decide from. Plain data, built by the master's load
// service from the hosts' LoadReports; no I/O, no daemon types.
//
// Times are nanoseconds of the master's monotonic clock (Time). Speeds are in
// PVM's sp= units (1000: one CPU of the reference machine).
#pragma once

#include <cstdint>
#include <map>
#include <vector>

namespace mpvm::balancer {

using Time = int64_t;  // ns
inline constexpr Time kSecond = 1'000'000'000;

struct HostLoad {
  int host = 0;           // host index
  int speed = 1000;       // sp=
  int cores = 1;          // from hwloc where known
  double runnable = 0;    // our tasks' demand for CPU: the sum of their ready fractions
  double background = 0;  // runnable work that is not ours, in tasks
  int pending = 0;        // tasks spawned there that its reports do not show yet
  Time reported = 0;      // when its last LoadReport arrived
};

struct TaskLoad {
  int tid = 0;
  int host = 0;                        // where it runs
  Time started = 0;                    // spawn time
  Time last_move = 0;                  // its last move (0: never moved)
  Time last_failure = 0;               // its last failed or refused move (0: none)
  int64_t cpu_ns = 0;                  // CPU it has used
  uint64_t image_bytes = 0;            // what a move would carry
  double ready = 1;                    // fraction of recent time it was ready to run
                                       // (else blocked in a receive)
  bool pinned = false;                 // cannot move (threads, refused before, prun's stdin, ...)
  std::map<int, uint64_t> bytes_with;  // peer tid -> bytes/s it sent to that peer, lately
};

struct ClusterLoad {
  std::vector<HostLoad> hosts;  // by host index, ascending
  std::vector<TaskLoad> tasks;

  // The host with index `host`, or nullptr.
  const HostLoad* Host(int host) const;
  // Runnable work on `host`: our runnable tasks, those spawned there and not
  // reported yet, and background load.
  double Work(int host) const;
  // Sets each host's demand from its tasks (after tasks were moved in the
  // snapshot).
  void Recount();
};

}  // namespace mpvm::balancer
