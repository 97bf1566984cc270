#include "core/balance_loop.h"

namespace mpvm {
namespace {

// An order neither landed nor failed after this long is forgotten (the
// move's own timeouts end it well before).
constexpr int64_t kOrderExpiryNs = 60'000'000'000;

}  // namespace

std::vector<balancer::MoveOrder> BalanceLoop::Tick() {
  const int64_t now = cx_.now_ns;
  if (!on_ || cx_.cfg.member || now < next_ns_) return {};
  next_ns_ = now + cx_.cfg.balance_period_ns;
  Settle();
  balancer::ClusterLoad load = cx_.LoadSnapshot();
  for (auto& t : load.tasks)
    if (ordered_.contains(t.tid)) t.pinned = true;  // in flight
  auto orders = balancer::Decide(load, LimitsNow(), now);
  for (const auto& o : orders) {
    ordered_[o.tid] = {now, o.to};
    ++ordered_total_;
  }
  return orders;
}

balancer::Limits BalanceLoop::LimitsNow() const {
  balancer::Limits lim;
  lim.min_age = cx_.cfg.balance_min_age_ns;
  lim.min_residency = cx_.cfg.balance_min_residency_ns;
  lim.max_in_flight = cx_.cfg.balance_max_in_flight;
  lim.moves_in_flight = in_flight();
  lim.bandwidth = cx_.load.bandwidth();
  lim.move_overhead = cx_.load.move_overhead_ns();
  return lim;
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
