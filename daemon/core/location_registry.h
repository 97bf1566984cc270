// location_registry.h — where tasks that moved are now, as this daemon
// knows it. The master's entries are exact (every move's commit reports to
// it); a member keeps one per task that left it, and sends what comes for
// those to the master. The master also notes moves in transit between
// members, so that a source host that dies mid-move does not make it report
// the task lost too soon, and the tasks of other hosts known to be gone.
// No I/O; the time comes with each call.
#pragma once

#include <cstdint>
#include <deque>
#include <optional>
#include <set>
#include <unordered_map>
#include <vector>

namespace mpvm {

class LocationRegistry {
 public:
  // How long a task moving away from a host that died may take to arrive
  // before it is reported lost, and how long a move may stay in transit.
  static constexpr int64_t kLimboNs = 10'000'000'000;
  static constexpr int64_t kTransitNs = 30'000'000'000;

  // Where moved task `tid` runs now, if it moved.
  std::optional<int> At(int tid) const;
  bool contains(int tid) const { return where_.contains(tid); }
  void Set(int tid, int host) { where_[tid] = host; }
  // It arrived (here or at `host`), or ended: no longer in transit or limbo.
  void Settle(int tid) {
    transit_.erase(tid);
    limbo_.erase(tid);
  }
  void Forget(int tid) {
    where_.erase(tid);
    Settle(tid);
  }
  size_t size() const { return where_.size(); }

  // Master: task `tid` is moving from host `from` to `to`.
  void BeginTransit(int tid, int from, int to, int64_t now) { transit_[tid] = {from, to, now}; }
  void EndTransit(int tid) { transit_.erase(tid); }
  // Host `index` left. Of `lost` (tasks that were there), those that were
  // moving away from it are taken out and wait in limbo; moves to or from
  // it end.
  void HostGone(int index, std::set<int>* lost, int64_t now);
  // Entries that point at host `index` go (after its tasks were reported).
  void ForgetHost(int index);
  // Tasks in limbo whose time is up (they are taken out); stale transits go.
  std::vector<int> Expired(int64_t now);

  // Tasks of other hosts known to be gone (bounded: the oldest go first).
  void NoteGone(int tid);
  bool KnownGone(int tid) const { return gone_.contains(tid); }

 private:
  struct Transit {
    int from = 0, to = 0;
    int64_t since_ns = 0;
  };
  static constexpr size_t kGoneKept = 65536;
  std::unordered_map<int, int> where_;
  std::unordered_map<int, Transit> transit_;
  std::unordered_map<int, int64_t> limbo_;  // tid -> deadline
  std::set<int> gone_;
  std::deque<int> gone_order_;
};

}  // namespace mpvm
