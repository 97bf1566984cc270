#include "core/balance_loop.h"

#include <fmt/format.h>

#include <algorithm>
#include <string>

namespace mpvm {
namespace {

// An order neither landed nor failed after this long is forgotten (the
// move's own timeouts end it well before).
constexpr int64_t kOrderExpiryNs = 60'000'000'000;
constexpr size_t kRecent = 10;  // decisions `mpvm top` shows

}  // namespace

std::vector<balancer::MoveOrder> BalanceLoop::Tick() {
  const int64_t now = cx_.now_ns;
  // Due once a period, or sooner after a host reported a change of its load
  // (a task ended or arrived), though not more often than 5 times a period.
  const bool news = cx_.load_news && now >= last_ns_ + cx_.cfg.balance_period_ns / 5;
  if (!on_ || cx_.cfg.member || (now < next_ns_ && !news)) return {};
  cx_.load_news = false;
  last_ns_ = now;
  next_ns_ = now + cx_.cfg.balance_period_ns;
  Settle();
  balancer::ClusterLoad load = cx_.LoadSnapshot();
  // A task in flight counts where it goes, and does not move again.
  for (auto& t : load.tasks)
    if (auto o = ordered_.find(t.tid); o != ordered_.end()) {
      t.pinned = true;
      t.host = o->second.to;
    }
  load.Recount();
  auto orders = balancer::Decide(load, LimitsNow(), now);
  if (!orders.empty()) {
    std::string seen;  // what the decision saw, host by host: demand+pending
    for (const auto& h : load.hosts)
      seen += fmt::format(" {}:{:.2f}+{}", h.host, h.runnable, h.pending);
    cx_.env->Debug("balancer: load" + seen);
  }
  for (const auto& o : orders) {
    ordered_[o.tid] = {now, o.to};
    ++ordered_total_;
    recent_.push_front(o);
    recent_at_.push_front(now);
    if (recent_.size() > kRecent) {
      recent_.pop_back();
      recent_at_.pop_back();
    }
  }
  return orders;
}

balancer::Limits BalanceLoop::LimitsNow() const {
  balancer::Limits lim;
  lim.min_age = cx_.cfg.balance_min_age_ns;
  lim.min_residency = cx_.cfg.balance_min_residency_ns;
  // Each move occupies two hosts: by default as many at once as half the
  // hosts (MOSIX balances pairwise, each pair on its own), at least 2.
  lim.max_in_flight = cx_.cfg.balance_max_in_flight > 0
                          ? cx_.cfg.balance_max_in_flight
                          : std::max(2, static_cast<int>(cx_.hosts.size()) / 2);
  lim.moves_in_flight = in_flight();
  lim.bandwidth = cx_.load.bandwidth();
  lim.move_overhead = cx_.load.move_overhead_ns();
  return lim;
}

ctl::LoadView BalanceLoop::View() const {
  ctl::LoadView v;
  v.set_balancing(on_);
  const auto name = [this](int h) {
    return cx_.hosts.contains(h) ? cx_.hosts.at(h).name : std::to_string(h);
  };
  const balancer::ClusterLoad load = cx_.load.Snapshot();
  for (const auto& [index, rec] : cx_.hosts) {  // a host not reported yet shows idle
    const balancer::HostLoad* h = load.Host(index);
    auto* out = v.add_hosts();
    out->set_name(rec.name);
    out->set_speed(h != nullptr ? h->speed : rec.speed);
    out->set_cores(h != nullptr ? h->cores : 1);
    out->set_runnable(load.Work(index));
    for (const auto& t : load.tasks) out->set_tasks(out->tasks() + (t.host == index));
  }
  for (size_t i = 0; i < recent_.size(); ++i) {
    const auto& o = recent_[i];
    const int64_t at = recent_at_[i];
    auto* m = v.add_moves();
    m->set_tid(o.tid);
    m->set_from(name(o.from));
    m->set_to(name(o.to));
    m->set_reason(o.reason);
    m->set_state(cx_.load.moved_at(o.tid) >= at    ? "done"
                 : cx_.load.failed_at(o.tid) >= at ? "failed"
                                                   : "in flight");
    m->set_age_ms((cx_.now_ns - at) / 1'000'000);
  }
  return v;
}

void BalanceLoop::Settle() {
  const int64_t now = cx_.now_ns;
  std::erase_if(ordered_, [&](const auto& kv) {
    const auto& [tid, o] = kv;
    return cx_.load.moved_at(tid) >= o.at_ns || cx_.load.failed_at(tid) >= o.at_ns ||
           now - o.at_ns > kOrderExpiryNs;
  });
}

}  // namespace mpvm
