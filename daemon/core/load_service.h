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
#include <set>

#include "cluster_load.h"
#include "control.pb.h"
#include "core/env.h"

namespace mpvm {

class LoadService {
 public:
  // Host `host` (speed from the host table) reported `r` at `now`.
  void OnReport(int host, int speed, const ctl::LoadReport& r, int64_t now);
  // `n` tasks were just spawned on host `host`: they count there until its
  // reports show them (a report may predate them).
  void OnPlaced(int host, int n, int64_t now);
  // The host left the virtual machine: it and its tasks are forgotten.
  void OnHostGone(int host);
  // A move of `bytes` finished at a cost of `blackout_ns` (the task stopped).
  void OnMoveDone(uint64_t bytes, int64_t blackout_ns);
  // Task `tid` now runs on host `to` (a move's commit reached the master).
  void OnMoved(int tid, int to, int64_t now);
  // A move of task `tid` to host `to` failed or was refused at `now`;
  // `pinned`: for a lasting reason, so the task stays where it is. Until its
  // host's next report says so, the snapshot shows it pinned, and a task
  // whose move failed waits out the minimum residency before another.
  void OnMoveFailed(int tid, int to, bool pinned, int64_t now);
  // When task `tid` last landed somewhere, or last failed to move (0: never).
  int64_t moved_at(int tid) const;
  int64_t failed_at(int tid) const;
  // Moves to `host` that failed, and when the last one did (0: none).
  int failures_to(int host) const;
  int64_t last_failure_ns(int host) const;

  balancer::ClusterLoad Snapshot() const;
  // Measured costs for the migration policy (defaults until moves are seen).
  double bandwidth() const { return bandwidth_; }
  int64_t move_overhead_ns() const { return overhead_ns_; }

 private:
  // Takes the spawned tasks that a report from `host` shows off its count.
  void CountPlaced(int host, const ctl::LoadReport& r, int64_t now);

  std::map<int, balancer::HostLoad> hosts_;
  std::map<int, std::vector<balancer::TaskLoad>> tasks_;  // by host
  struct Failures {
    int count = 0;
    int64_t last_ns = 0;
  };
  std::map<int, Failures> failures_;  // by destination host
  struct Placed {
    int count = 0;
    int64_t at_ns = 0;
  };
  std::map<int, Placed> placed_;           // by host: spawned, not reported yet
  std::map<int, std::set<int>> reported_;  // by host: the tids its last report listed
  struct TaskMoves {
    int64_t moved_ns = 0, failed_ns = 0;
    int to = 0;           // where it last landed
    bool pinned = false;  // a move failed for a lasting reason
  };
  std::map<int, TaskMoves> task_moves_;  // by tid
  static void Apply(const TaskMoves& m, balancer::TaskLoad& t);
  double bandwidth_ = 1e9;            // bytes/s
  int64_t overhead_ns_ = 20'000'000;  // fixed part of a move
};

// This host's LoadReport from what the daemon knows of its tasks.
struct LocalTaskInfo {
  int tid = 0;
  int64_t spawned_ns = 0, moved_ns = 0;  // monotonic; moved 0: never
  bool pinned = false;
  double ready = 1;  // fraction of recent time ready to run (unknown: 1)
  int64_t cpu_ns = 0;
  uint64_t image_bytes = 0;
  std::vector<std::pair<int, uint64_t>> peers = {};  // bytes/s sent to each
};

// An average of counts of processes ready to run, sampled every 0.1 s, over
// about the last 32 samples (3.2 s). A shorter one (8 samples) followed
// where a ring's tasks were waiting at the moment, which moves from host to
// host, and the balancer chased it.
class ReadyAverage {
 public:
  static constexpr double kWeight = 1.0 / 32;
  explicit ReadyAverage(double start = 0) : value_(start) {}
  void Add(double now) { value_ = (1 - kWeight) * value_ + kWeight * now; }
  double value() const { return value_; }

 private:
  double value_;
};

// Each task's process, sampled every 0.1 s: whether it is ready to run
// (an average over the last samples, so that a task that computes between
// messages counts for the time it computes), its CPU time and memory.
class LoadSampler {
 public:
  struct Sampled {
    double runnable = 1;  // fraction of recent samples it was ready to run
    int64_t cpu_ns = 0;
    uint64_t rss_bytes = 0;
    int64_t at_ns = 0;
  };
  void Add(int tid, const ProcessSample& s, int64_t now);
  // Task `tid` arrived by a move: its average starts at `ready` (its
  // source's), not as a new task's does.
  void Seed(int tid, double ready, int64_t now);
  // Forgets the tasks not sampled since `before`.
  void Prune(int64_t before);
  // What is known of `tid` (defaults: runnable, nothing used).
  Sampled Get(int tid) const;

 private:
  std::map<int, Sampled> by_tid_;
};

// What each task of this host sends to each peer, per second: averaged from
// the tasks' own notes (ctl::TaskTraffic, about one a second each).
class TrafficMeter {
 public:
  void Add(int tid, const ctl::TaskTraffic& note, int64_t now);
  // Bytes per second by peer, lately; nothing once `tid` has sent no note
  // for kQuietNs (it stopped sending).
  std::vector<std::pair<int, uint64_t>> Rates(int tid, int64_t now) const;
  // Forgets the tasks with no note since `before`.
  void Prune(int64_t before);

  static constexpr int64_t kQuietNs = 3'000'000'000;
  static constexpr int64_t kMinSpanNs = 100'000'000;
  static constexpr int kMaxPeers = 64;
  static constexpr double kMaxRate = 1e12;  // bytes/s: more than any link

 private:
  struct PerPeer {
    std::map<int, double> by_peer;  // bytes/s
    int64_t at_ns = 0;              // the last note
  };
  std::map<int, PerPeer> by_tid_;
};

ctl::LoadReport MakeLoadReport(int speed, int cores, const std::vector<LocalTaskInfo>& tasks,
                               int64_t now);

}  // namespace mpvm
