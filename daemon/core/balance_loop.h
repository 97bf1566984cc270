// balance_loop.h — the master's balancer: once a period, the migration
// policy (balancer::Decide) reads the cluster's load snapshot and orders
// moves; the daemon carries them out as moves the balancer asked for
// (MoveOrigin::kBalancer). Off unless switched on (--balance, `mpvm
// balance on`, prun --balance on). docs/design/balancer.md has the policy.
//
// It remembers the moves it ordered until they land or fail, so that a task
// in flight is neither ordered again nor counted twice, and the number in
// flight stays within the policy's cap.
#pragma once

#include <deque>
#include <map>
#include <vector>

#include "core/core_context.h"
#include "migration_policy.h"

namespace mpvm {

class BalanceLoop {
 public:
  explicit BalanceLoop(CoreContext& cx) : cx_(cx), on_(cx.cfg.balance) {}

  bool on() const { return on_; }
  void Switch(bool on) { on_ = on; }
  // The moves due now: none when off, on a member, or before the period.
  std::vector<balancer::MoveOrder> Tick();
  int in_flight() const { return static_cast<int>(ordered_.size()); }
  // Orders given so far, for the console's status line.
  int ordered_total() const { return ordered_total_; }
  // `mpvm top`: the hosts' load and the latest decisions.
  ctl::LoadView View() const;

 private:
  balancer::Limits LimitsNow() const;
  // Forgets the orders that have landed, failed or expired.
  void Settle();

  CoreContext& cx_;
  bool on_;
  int64_t next_ns_ = 0;
  int64_t last_ns_ = 0;  // the last decision
  struct Ordered {
    int64_t at_ns = 0;
    int to = 0;
  };
  std::map<int, Ordered> ordered_;  // by tid
  int ordered_total_ = 0;
  std::deque<balancer::MoveOrder> recent_;  // the latest orders, newest first
  std::deque<int64_t> recent_at_;           // when each was given
};

}  // namespace mpvm
