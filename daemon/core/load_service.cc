#include "load_service.h"

#include <algorithm>

namespace mpvm {
namespace {

// How long after a move a report from elsewhere that lists the task is
// taken to predate it (a few heartbeats).
constexpr int64_t kStaleNs = 2'000'000'000;
constexpr int64_t kPlacedForgetNs = 5'000'000'000;

}  // namespace

void LoadService::OnReport(int host, int speed, const ctl::LoadReport& r, int64_t now) {
  balancer::HostLoad& h = hosts_[host];
  h.host = host;
  h.speed = r.speed() > 0 ? r.speed() : speed;
  h.cores = std::max(1, r.cores());
  h.background = r.background();
  h.reported = now;
  h.runnable = 0;
  auto& tasks = tasks_[host];
  tasks.clear();
  CountPlaced(host, r, now);
  for (const auto& t : r.tasks()) {
    // A report written before a move it crossed still shows the task here.
    if (auto m = task_moves_.find(t.tid());
        m != task_moves_.end() && m->second.to != host && now - m->second.moved_ns < kStaleNs)
      continue;
    balancer::TaskLoad l;
    l.tid = t.tid();
    l.host = host;
    l.started = now - t.age_ns();
    l.last_move = t.since_move_ns() > 0 ? now - t.since_move_ns() : 0;
    l.cpu_ns = t.cpu_ns();
    l.image_bytes = t.image_bytes();
    l.ready = t.ready();
    l.pinned = t.pinned();
    if (auto m = task_moves_.find(t.tid()); m != task_moves_.end()) Apply(m->second, l);
    for (const auto& p : t.peers()) l.bytes_with[p.tid()] = p.bytes();
    h.runnable += l.ready;
    tasks.push_back(std::move(l));
  }
}

void LoadService::OnPlaced(int host, int n, int64_t now) {
  Placed& p = placed_[host];
  p.count += n;
  p.at_ns = now;
}

void LoadService::CountPlaced(int host, const ctl::LoadReport& r, int64_t now) {
  std::set<int> listed;
  int fresh = 0;
  for (const auto& t : r.tasks()) {
    listed.insert(t.tid());
    fresh += !reported_[host].contains(t.tid());
  }
  reported_[host] = std::move(listed);
  auto p = placed_.find(host);
  if (p == placed_.end()) return;
  p->second.count -= fresh;
  // Spawns that never showed up (they failed) are forgotten after a while.
  if (p->second.count <= 0 || now - p->second.at_ns > kPlacedForgetNs) placed_.erase(p);
}

void LoadService::OnMoveFailed(int tid, int to, bool pinned, int64_t now) {
  Failures& f = failures_[to];
  ++f.count;
  f.last_ns = now;
  TaskMoves& m = task_moves_[tid];
  m.failed_ns = now;
  m.pinned = m.pinned || pinned;
  for (auto& [host, tasks] : tasks_)
    for (balancer::TaskLoad& t : tasks)
      if (t.tid == tid) Apply(m, t);
}

void LoadService::Apply(const TaskMoves& m, balancer::TaskLoad& t) {
  t.last_failure = m.failed_ns;
  t.pinned = t.pinned || m.pinned;
}

void LoadService::OnMoved(int tid, int to, int64_t now) {
  task_moves_[tid].moved_ns = now;
  task_moves_[tid].to = to;
  // Until `to` reports again, the snapshot shows the task there already.
  for (auto& [host, tasks] : tasks_)
    for (auto it = tasks.begin(); it != tasks.end(); ++it)
      if (it->tid == tid && host != to) {
        balancer::TaskLoad moved = *it;
        tasks.erase(it);
        moved.host = to;
        moved.last_move = now;
        if (hosts_.contains(host)) hosts_[host].runnable -= moved.ready;
        reported_[to].insert(tid);  // its next report lists it: not a spawn
        if (hosts_.contains(to)) {
          hosts_[to].runnable += moved.ready;
          tasks_[to].push_back(std::move(moved));
        }
        return;
      }
}

int64_t LoadService::moved_at(int tid) const {
  auto it = task_moves_.find(tid);
  return it == task_moves_.end() ? 0 : it->second.moved_ns;
}

int64_t LoadService::failed_at(int tid) const {
  auto it = task_moves_.find(tid);
  return it == task_moves_.end() ? 0 : it->second.failed_ns;
}

int LoadService::failures_to(int host) const {
  auto it = failures_.find(host);
  return it == failures_.end() ? 0 : it->second.count;
}

int64_t LoadService::last_failure_ns(int host) const {
  auto it = failures_.find(host);
  return it == failures_.end() ? 0 : it->second.last_ns;
}

void LoadService::OnHostGone(int host) {
  hosts_.erase(host);
  placed_.erase(host);
  reported_.erase(host);
  tasks_.erase(host);
  failures_.erase(host);
}

void LoadService::OnMoveDone(uint64_t bytes, int64_t blackout_ns) {
  if (blackout_ns <= 0) return;
  // A running mean of what moves cost: the fixed part from small moves, the
  // bandwidth from large ones (1 MiB or more).
  if (bytes >= (1u << 20)) {
    const double bw = static_cast<double>(bytes) / (static_cast<double>(blackout_ns) / 1e9);
    bandwidth_ = 0.8 * bandwidth_ + 0.2 * bw;
  } else {
    overhead_ns_ = (overhead_ns_ * 4 + blackout_ns) / 5;
  }
}

balancer::ClusterLoad LoadService::Snapshot() const {
  balancer::ClusterLoad out;
  for (const auto& [index, h] : hosts_) {
    out.hosts.push_back(h);
    if (auto p = placed_.find(index); p != placed_.end())
      out.hosts.back().pending = p->second.count;
  }
  for (const auto& [index, tasks] : tasks_)
    out.tasks.insert(out.tasks.end(), tasks.begin(), tasks.end());
  return out;
}

ctl::LoadReport MakeLoadReport(int speed, int cores, const std::vector<LocalTaskInfo>& tasks,
                               int64_t now) {
  ctl::LoadReport r;
  r.set_speed(speed);
  r.set_cores(cores);
  for (const auto& t : tasks) {
    auto* l = r.add_tasks();
    l->set_tid(t.tid);
    l->set_age_ns(std::max<int64_t>(0, now - t.spawned_ns));
    if (t.moved_ns > 0) l->set_since_move_ns(std::max<int64_t>(1, now - t.moved_ns));
    l->set_ready(t.ready);
    l->set_pinned(t.pinned);
    l->set_cpu_ns(t.cpu_ns);
    l->set_image_bytes(t.image_bytes);
    for (const auto& [peer, rate] : t.peers) {
      auto* p = l->add_peers();
      p->set_tid(peer);
      p->set_bytes(rate);
    }
  }
  return r;
}

void LoadSampler::Add(int tid, const ProcessSample& s, int64_t now) {
  if (!s.ok) return;
  auto [it, fresh] = by_tid_.try_emplace(tid);
  Sampled& m = it->second;
  // A new task starts as ready to run: its first samples often find it
  // blocked in its first PVM calls, and it would count for nothing for a
  // few seconds.
  ReadyAverage ready(fresh ? 1.0 : m.runnable);
  if (!fresh) ready.Add(s.runnable ? 1.0 : 0.0);
  m.runnable = ready.value();
  m.cpu_ns = s.cpu_ns;
  m.rss_bytes = s.rss_bytes;
  m.at_ns = now;
}

void LoadSampler::Seed(int tid, double ready, int64_t now) {
  Sampled& m = by_tid_[tid];
  m.runnable = std::clamp(ready, 0.0, 1.0);
  m.at_ns = now;
}

void LoadSampler::Prune(int64_t before) {
  std::erase_if(by_tid_, [before](const auto& kv) { return kv.second.at_ns < before; });
}

LoadSampler::Sampled LoadSampler::Get(int tid) const {
  auto it = by_tid_.find(tid);
  return it == by_tid_.end() ? Sampled{} : it->second;
}

void TrafficMeter::Add(int tid, const ctl::TaskTraffic& note, int64_t now) {
  // A note over less than kMinSpanNs, or with more than kMaxPeers peers, is
  // none a task of ours writes (traffic.h): dropped, so that a bad one
  // cannot make rates absurd or the daemon's maps large.
  if (note.over_ns() < kMinSpanNs || note.peers_size() > kMaxPeers) return;
  auto [it, fresh] = by_tid_.try_emplace(tid);
  PerPeer& r = it->second;
  const double span_s = static_cast<double>(note.over_ns()) / 1e9;
  // Half the weight to the latest note (all of it to the first): a pair
  // that stops talking fades within a few notes.
  const double w = fresh ? 1.0 : 0.5;
  for (auto& [peer, rate] : r.by_peer) rate *= 1 - w;
  for (const auto& p : note.peers())
    if (p.tid() != tid)
      r.by_peer[p.tid()] += w * std::min(kMaxRate, static_cast<double>(p.bytes()) / span_s);
  std::erase_if(r.by_peer, [](const auto& kv) { return kv.second < 1; });
  // Peers of older notes fade out, but a task that changes peers at every
  // note could pile them up: the largest kMaxPeers stay.
  while (r.by_peer.size() > static_cast<size_t>(kMaxPeers))
    r.by_peer.erase(
        std::min_element(r.by_peer.begin(), r.by_peer.end(),
                         [](const auto& a, const auto& b) { return a.second < b.second; }));
  r.at_ns = now;
}

std::vector<std::pair<int, uint64_t>> TrafficMeter::Rates(int tid, int64_t now) const {
  std::vector<std::pair<int, uint64_t>> out;
  auto it = by_tid_.find(tid);
  if (it == by_tid_.end() || now - it->second.at_ns > kQuietNs) return out;
  for (const auto& [peer, rate] : it->second.by_peer)
    out.emplace_back(peer, static_cast<uint64_t>(rate));
  return out;
}

void TrafficMeter::Prune(int64_t before) {
  std::erase_if(by_tid_, [before](const auto& kv) { return kv.second.at_ns < before; });
}

}  // namespace mpvm
