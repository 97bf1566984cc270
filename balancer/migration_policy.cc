#include "migration_policy.h"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <map>

namespace mpvm::balancer {
namespace {

// A task ready to run at least this much of the time is computing, and a
// candidate for a move for CPU; one that waits more (for messages) would
// gain little.
constexpr double kComputing = 0.5;
// A task ready at least this much of the time is active: it counts in the
// whole-task test. One that waits almost always (a master, a server) does
// not.
constexpr double kActive = 0.2;
// Two tasks whose ready fractions differ by at most this much ask for about
// the same CPU: swapping their hosts leaves the CPU balance as it was.
constexpr double kSwapReadyGap = 0.5;

// What the policy tracks of each host as it applies its own orders.
struct Tally {
  double demand = 0;  // ClusterLoad::Work
  double active = 0;  // active tasks (Planner::Whole), pending ones and background
};

// Bytes/s between each pair of tasks, both directions summed: a task's
// report counts what it sends.
class Traffic {
 public:
  explicit Traffic(const ClusterLoad& load) {
    for (const TaskLoad& t : load.tasks)
      for (const auto& [peer, bytes] : t.bytes_with) {
        with_[t.tid][peer] += static_cast<double>(bytes);
        with_[peer][t.tid] += static_cast<double>(bytes);
      }
  }
  // Between task `tid` and the tasks on `host` (hosts from `host_of`).
  double Pull(int tid, int host, const std::map<int, int>& host_of) const {
    auto it = with_.find(tid);
    if (it == with_.end()) return 0;
    double sum = 0;
    for (const auto& [peer, rate] : it->second)
      if (auto at = host_of.find(peer); at != host_of.end() && at->second == host) sum += rate;
    return sum;
  }
  // Whether task `tid` exchanges messages with any other task lately.
  bool Talks(int tid) const {
    auto it = with_.find(tid);
    return it != with_.end() && !it->second.empty();
  }
  double Between(int a, int b) const {
    auto it = with_.find(a);
    if (it == with_.end()) return 0;
    auto p = it->second.find(b);
    return p == it->second.end() ? 0 : p->second;
  }

 private:
  std::map<int, std::map<int, double>> with_;
};

bool Movable(const TaskLoad& t, const Limits& lim, Time now) {
  const Time since = t.last_move != 0 ? t.last_move : t.started;
  return !t.pinned && now - t.started >= lim.min_age && now - since >= lim.min_residency &&
         (t.last_failure == 0 || now - t.last_failure >= lim.min_residency);
}

// One decision: the snapshot, with the orders applied to it as they are made.
class Planner {
 public:
  Planner(const ClusterLoad& load, const Limits& lim, Time now)
      : load_(load), lim_(lim), now_(now), traffic_(load) {
    for (const HostLoad& h : load.hosts)
      tally_[h.host] = {load.Work(h.host), h.pending + h.background};
    for (const TaskLoad& t : load.tasks) {
      host_of_[t.tid] = t.host;
      if (tally_.contains(t.host)) tally_[t.host].active += Whole(t);
    }
    budget_ = lim.max_in_flight - lim.moves_in_flight;
    overloaded_ = Overloaded();
    if (overloaded_) budget_ = std::min(budget_, 1);
    margin_ = overloaded_ ? 2 * lim.margin : lim.margin;
  }

  // Moves for CPU, from the slowest host to the fastest, while they pay.
  void ForCpu();
  // Then, if the CPU rule moved nothing: one move or swap that brings a
  // chatty task to its peers, when the CPU allows.
  void ForCommunication();
  std::vector<MoveOrder> Orders() { return std::move(out_); }

 private:
  double Demand(int host) { return tally_[host].demand; }
  // What task `t` counts for in the whole-task test. One that exchanges
  // messages counts whole once active: its waits are for its peers, and
  // would not make room for another task (a ring's move their waits from
  // host to host). One that talks to no one rests by itself (a sleep, or
  // another user's work it stands for): it leaves the rest of its time to
  // others, and counts for the time it is ready.
  double Whole(const TaskLoad& t) const {
    if (t.ready < kActive) return 0;
    return traffic_.Talks(t.tid) ? 1 : t.ready;
  }
  bool Overloaded() {
    for (const HostLoad& h : load_.hosts)
      if (Demand(h.host) < lim_.overload * std::max(1, h.cores)) return false;
    return !load_.hosts.empty();
  }
  bool NextCpuPair(const std::map<int, bool>& exhausted, const HostLoad** src,
                   const HostLoad** dst);
  const TaskLoad* ChooseForCpu(int from, int to, double gain) const;
  // The host that task `t` talks to most, other than its own, and by how
  // much more than to its own (bytes/s).
  std::pair<const HostLoad*, double> Pulled(const TaskLoad& t) const;
  bool CpuAllowsMove(const TaskLoad& t, const HostLoad& to);
  const TaskLoad* SwapPartner(const TaskLoad& t, int from, int to, double* gain) const;
  bool TradeKeepsCpu(const TaskLoad& t, const TaskLoad& u, const HostLoad& from,
                     const HostLoad& to) const;
  void Order(const TaskLoad& t, int to, std::string reason);

  const ClusterLoad& load_;
  const Limits& lim_;
  const Time now_;
  const Traffic traffic_;
  std::map<int, Tally> tally_;
  std::map<int, int> host_of_;
  int budget_ = 0;
  bool overloaded_ = false;
  double margin_ = 0;  // lim_.margin, doubled under overload
  std::vector<MoveOrder> out_;
};

void Planner::Order(const TaskLoad& t, int to, std::string reason) {
  const int from = host_of_[t.tid];
  out_.push_back({t.tid, from, to, std::move(reason)});
  tally_[from].demand -= t.ready;
  tally_[to].demand += t.ready;
  tally_[from].active -= Whole(t);
  tally_[to].active += Whole(t);
  host_of_[t.tid] = to;
  --budget_;
}

bool Planner::NextCpuPair(const std::map<int, bool>& exhausted, const HostLoad** src,
                          const HostLoad** dst) {
  *src = *dst = nullptr;
  for (const HostLoad& h : load_.hosts) {
    auto ex = exhausted.find(h.host);
    if ((ex == exhausted.end() || !ex->second) && Demand(h.host) >= 1 &&
        (*src == nullptr ||
         TimePerWork(h, Demand(h.host)) > TimePerWork(**src, Demand((*src)->host))))
      *src = &h;
    if (*dst == nullptr ||
        TimePerWork(h, Demand(h.host) + 1) < TimePerWork(**dst, Demand((*dst)->host) + 1))
      *dst = &h;
  }
  return *src != nullptr && *dst != nullptr && *src != *dst;
}

void Planner::ForCpu() {
  std::map<int, bool> exhausted;  // sources with nothing left worth moving
  const HostLoad *src, *dst;
  while (budget_ > 0 && NextCpuPair(exhausted, &src, &dst)) {
    const double t_src = TimePerWork(*src, Demand(src->host));
    const double t_dst = TimePerWork(*dst, Demand(dst->host) + 1);
    if (t_dst >= t_src * (1 - margin_)) break;
    // Whole tasks: the destination, with the task, must have fewer active
    // tasks for its speed than the source has. Without it, tasks that wait
    // for each other (a ring) drew moves on a difference of waits alone.
    const bool whole = TimePerWork(*dst, tally_[dst->host].active + 1) <
                       TimePerWork(*src, tally_[src->host].active);
    const double gain = 1 - t_dst / t_src;
    const TaskLoad* t = whole ? ChooseForCpu(src->host, dst->host, gain) : nullptr;
    if (t == nullptr) {
      exhausted[src->host] = true;  // try the next most loaded host
      continue;
    }
    Order(*t, dst->host,
          fmt::format("{:.1f} tasks at speed {} there, {:.1f} at {} here: "
                      "{:.0f}% less time per task{}",
                      Demand(src->host), src->speed, Demand(dst->host), dst->speed, gain * 100,
                      overloaded_ ? " (cluster overloaded: one move at a time)" : ""));
  }
}

// The task to move from `from` to `to` for CPU, or none: computing,
// movable, worth its cost at relative gain `gain`; the one that talks most
// to `to` (and least to `from`) first, then the smallest.
const TaskLoad* Planner::ChooseForCpu(int from, int to, double gain) const {
  const TaskLoad* best = nullptr;
  double best_affinity = 0;
  for (const TaskLoad& t : load_.tasks) {
    if (host_of_.at(t.tid) != from || t.ready < kComputing || !Movable(t, lim_, now_)) continue;
    const double cost = static_cast<double>(lim_.move_overhead) +
                        static_cast<double>(t.image_bytes) / lim_.bandwidth * 1e9;
    if (static_cast<double>(now_ - t.started) * gain <= cost) continue;
    const double affinity =
        traffic_.Pull(t.tid, to, host_of_) - traffic_.Pull(t.tid, from, host_of_);
    if (best == nullptr || affinity > best_affinity ||
        (affinity == best_affinity && t.image_bytes < best->image_bytes)) {
      best = &t;
      best_affinity = affinity;
    }
  }
  return best;
}

std::pair<const HostLoad*, double> Planner::Pulled(const TaskLoad& t) const {
  const int home = host_of_.at(t.tid);
  const double here = traffic_.Pull(t.tid, home, host_of_);
  std::pair<const HostLoad*, double> best{nullptr, 0};
  for (const HostLoad& h : load_.hosts) {
    if (h.host == home) continue;
    const double more = traffic_.Pull(t.tid, h.host, host_of_) - here;
    if (more > best.second) best = {&h, more};
  }
  return best;
}

// The CPU allows `t` to join `to` alone when `to`, with it, is no slower
// than its own host is now: it has room (T(n) = max(1, n / cores) / speed
// counts no slowdown below a task per core), or is less loaded.
bool Planner::CpuAllowsMove(const TaskLoad& t, const HostLoad& to) {
  const HostLoad* from = load_.Host(host_of_[t.tid]);
  return from != nullptr &&
         TimePerWork(to, Demand(to.host) + t.ready) <= TimePerWork(*from, Demand(from->host));
}

// Whether `t` (on `from`) and `u` (on `to`) trading places leaves the
// busier of the two hosts no busier, but for the margin.
bool Planner::TradeKeepsCpu(const TaskLoad& t, const TaskLoad& u, const HostLoad& from,
                            const HostLoad& to) const {
  const double shift = t.ready - u.ready;  // demand going from `from` to `to`
  const double d_from = tally_.at(from.host).demand, d_to = tally_.at(to.host).demand;
  const double before = std::max(TimePerWork(from, d_from), TimePerWork(to, d_to));
  const double after = std::max(TimePerWork(from, d_from - shift), TimePerWork(to, d_to + shift));
  return after <= before * (1 + lim_.margin);
}

// A task on `to` to trade places with `t` (on `from`): movable, asking for
// about the same CPU, on a host of the same speed, and the pair of moves
// brings the most traffic together. `gain`: that traffic, in bytes/s.
const TaskLoad* Planner::SwapPartner(const TaskLoad& t, int from, int to, double* gain) const {
  const HostLoad *hf = load_.Host(from), *ht = load_.Host(to);
  if (hf == nullptr || ht == nullptr || hf->speed != ht->speed) return nullptr;
  const double t_gain = traffic_.Pull(t.tid, to, host_of_) - traffic_.Pull(t.tid, from, host_of_);
  const TaskLoad* best = nullptr;
  *gain = 0;
  for (const TaskLoad& u : load_.tasks) {
    if (host_of_.at(u.tid) != to || !Movable(u, lim_, now_) ||
        std::abs(u.ready - t.ready) > kSwapReadyGap || !TradeKeepsCpu(t, u, *hf, *ht))
      continue;
    // u's own pull, less what it exchanges with t, which stays across.
    const double u_gain = traffic_.Pull(u.tid, from, host_of_) -
                          traffic_.Pull(u.tid, to, host_of_) - 2 * traffic_.Between(t.tid, u.tid);
    if (u_gain >= 0 && t_gain + u_gain > *gain) {
      best = &u;
      *gain = t_gain + u_gain;
    }
  }
  return best;
}

void Planner::ForCommunication() {
  if (!out_.empty() || budget_ <= 0) return;
  // Tasks drawn to another host's tasks, the most drawn first.
  std::vector<std::pair<const TaskLoad*, std::pair<const HostLoad*, double>>> drawn;
  for (const TaskLoad& t : load_.tasks)
    if (auto pull = Pulled(t);
        pull.first != nullptr && Movable(t, lim_, now_) && pull.second >= lim_.chatty)
      drawn.push_back({&t, pull});
  std::stable_sort(drawn.begin(), drawn.end(),
                   [](const auto& a, const auto& b) { return a.second.second > b.second.second; });
  for (const auto& [t, pull] : drawn)
    if (CpuAllowsMove(*t, *pull.first)) {
      Order(*t, pull.first->host,
            fmt::format("talks {:.0f} KiB/s more with the tasks there than here, and the CPU "
                        "there has room",
                        pull.second / 1024));
      return;
    }
  for (const auto& [t, pull] : drawn) {
    const int from = host_of_[t->tid];
    double gain = 0;
    const TaskLoad* u = budget_ >= 2 ? SwapPartner(*t, from, pull.first->host, &gain) : nullptr;
    if (u == nullptr || gain < lim_.chatty) continue;
    const auto why = [gain](int other) {
      return fmt::format("trades places with t{:x}: {:.0f} KiB/s of traffic brought together",
                         other, gain / 1024);
    };
    const TaskLoad& partner = *u;
    Order(*t, pull.first->host, why(partner.tid));
    Order(partner, from, why(t->tid));
    return;
  }
}

}  // namespace

double TimePerWork(const HostLoad& h, double n) {
  const double cores = std::max(1, h.cores);
  return std::max(1.0, n / cores) / std::max(1, h.speed);
}

std::vector<MoveOrder> Decide(const ClusterLoad& load, const Limits& lim, Time now) {
  Planner p(load, lim, now);
  p.ForCpu();
  p.ForCommunication();
  return p.Orders();
}

}  // namespace mpvm::balancer
