#include "migration_policy.h"

#include <fmt/format.h>

#include <algorithm>
#include <map>

namespace mpvm::balancer {
namespace {

struct Pick {
  const TaskLoad* task = nullptr;
  int64_t affinity = 0;  // bytes towards the destination's tasks minus the source's
};

bool Eligible(const TaskLoad& t, const Limits& lim, Time now) {
  const Time since = t.last_move != 0 ? t.last_move : t.started;
  return t.runnable && !t.pinned && now - t.started >= lim.min_age &&
         now - since >= lim.min_residency;
}

// The task to move from `from` to `to`, or none: eligible, worth its cost
// at relative gain `gain`, with the best affinity to `to`, then the smallest.
Pick Choose(const ClusterLoad& load, const std::map<int, int>& host_of, int from, int to,
            double gain, const Limits& lim, Time now) {
  Pick best;
  for (const TaskLoad& t : load.tasks) {
    if (host_of.at(t.tid) != from || !Eligible(t, lim, now)) continue;
    const double cost = static_cast<double>(lim.move_overhead) +
                        static_cast<double>(t.image_bytes) / lim.bandwidth * 1e9;
    if (static_cast<double>(now - t.started) * gain <= cost) continue;
    int64_t affinity = 0;
    for (const auto& [peer, bytes] : t.bytes_with) {
      auto at = host_of.find(peer);
      if (at == host_of.end()) continue;
      affinity += at->second == to ? static_cast<int64_t>(bytes) : 0;
      affinity -= at->second == from ? static_cast<int64_t>(bytes) : 0;
    }
    if (best.task == nullptr || affinity > best.affinity ||
        (affinity == best.affinity && t.image_bytes < best.task->image_bytes))
      best = {&t, affinity};
  }
  return best;
}

}  // namespace

double TimePerWork(const HostLoad& h, double n) {
  const double cores = std::max(1, h.cores);
  return std::max(1.0, n / cores) / std::max(1, h.speed);
}

std::vector<MoveOrder> Decide(const ClusterLoad& load, const Limits& lim, Time now) {
  std::vector<MoveOrder> out;
  std::map<int, double> work;
  for (const HostLoad& h : load.hosts) work[h.host] = load.Work(h.host);
  std::map<int, int> host_of;
  for (const TaskLoad& t : load.tasks) host_of[t.tid] = t.host;
  std::map<int, bool> exhausted;  // sources with nothing left worth moving
  for (int budget = lim.max_in_flight - lim.moves_in_flight; budget > 0; --budget) {
    const HostLoad *src = nullptr, *dst = nullptr;
    for (const HostLoad& h : load.hosts) {
      if (!exhausted[h.host] && work[h.host] >= 1 &&
          (src == nullptr || TimePerWork(h, work[h.host]) > TimePerWork(*src, work[src->host])))
        src = &h;
      if (dst == nullptr ||
          TimePerWork(h, work[h.host] + 1) < TimePerWork(*dst, work[dst->host] + 1))
        dst = &h;
    }
    if (src == nullptr || dst == nullptr || src == dst) break;
    const double t_src = TimePerWork(*src, work[src->host]);
    const double t_dst = TimePerWork(*dst, work[dst->host] + 1);
    if (t_dst >= t_src * (1 - lim.margin)) break;
    const double gain = 1 - t_dst / t_src;
    Pick p = Choose(load, host_of, src->host, dst->host, gain, lim, now);
    if (p.task == nullptr) {
      exhausted[src->host] = true;
      ++budget;  // try the next most loaded host
      continue;
    }
    out.push_back(
        {p.task->tid, src->host, dst->host,
         fmt::format("{:.1f} tasks at speed {} there, {:.1f} at {} here: "
                     "{:.0f}% less time per task",
                     work[src->host], src->speed, work[dst->host], dst->speed, gain * 100)});
    work[src->host] -= 1;
    work[dst->host] += 1;
    host_of[p.task->tid] = dst->host;
  }
  return out;
}

}  // namespace mpvm::balancer
