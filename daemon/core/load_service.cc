#include "load_service.h"

#include <algorithm>

namespace mpvm {

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
  for (const auto& t : r.tasks()) {
    balancer::TaskLoad l;
    l.tid = t.tid();
    l.host = host;
    l.started = now - t.age_ns();
    l.last_move = t.since_move_ns() > 0 ? now - t.since_move_ns() : 0;
    l.cpu_ns = t.cpu_ns();
    l.image_bytes = t.image_bytes();
    l.runnable = t.runnable();
    l.pinned = t.pinned();
    for (const auto& p : t.peers()) l.bytes_with[p.tid()] = p.bytes();
    h.runnable += l.runnable;
    tasks.push_back(std::move(l));
  }
}

void LoadService::OnMoveFailed(int to, int64_t now) {
  Failures& f = failures_[to];
  ++f.count;
  f.last_ns = now;
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
  for (const auto& [index, h] : hosts_) out.hosts.push_back(h);
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
    l->set_runnable(true);  // what the daemon cannot see it counts as runnable
    l->set_pinned(t.pinned);
  }
  return r;
}

}  // namespace mpvm
