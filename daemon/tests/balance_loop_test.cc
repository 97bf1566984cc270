// The master's balancer loop: orders from the load snapshot, once a period,
// each task at most once until its move lands or fails, within the cap.
#include "core/balance_loop.h"

#include <gtest/gtest.h>

#include "fake_env.h"
#include "load_reports.h"

namespace mpvm {
namespace {

constexpr int64_t kS = 1'000'000'000;

ctl::LoadReport Busy(int speed, std::vector<int> tids) {
  return RunnableReport(speed, tids, 10 * kS);
}

class BalanceLoopTest : public ::testing::Test {
 protected:
  BalanceLoopTest() {
    m.cx.cfg.balance = true;
    m.cx.cfg.balance_max_in_flight = 2;
    two = m.Admit(2, "node2");
    three = m.Admit(3, "node3");
    m.cx.now_ns = 100 * kS;
    // node2 runs three CPU-bound tasks, node1 (the master) and node3 none.
    m.cx.load.OnReport(two, 1000, Busy(1000, {0x80001, 0x80002, 0x80003}), m.cx.now_ns);
    m.cx.load.OnReport(three, 1000, Busy(1000, {}), m.cx.now_ns);
  }
  MasterContext m;
  int two = 0, three = 0;
};

TEST_F(BalanceLoopTest, SpreadsAnOverloadedHostsTasksToTheIdleHosts) {
  BalanceLoop loop(m.cx);
  auto orders = loop.Tick();
  ASSERT_EQ(orders.size(), 2u);  // two moves in flight at most
  std::set<int> to;
  for (const auto& o : orders) {
    EXPECT_EQ(o.from, two);
    to.insert(o.to);
    EXPECT_FALSE(o.reason.empty());
  }
  EXPECT_EQ(to, (std::set<int>{1, three}));
  EXPECT_EQ(loop.in_flight(), 2);
}

TEST_F(BalanceLoopTest, DecidesOncePerPeriodAndNeverReordersATaskInFlight) {
  m.cx.cfg.balance_max_in_flight = 4;
  BalanceLoop loop(m.cx);
  auto first = loop.Tick();
  ASSERT_EQ(first.size(), 2u);
  EXPECT_TRUE(loop.Tick().empty());  // not due yet
  m.cx.now_ns += 2 * kS;
  // node2's next report still lists every task (the moves have not landed).
  m.cx.load.OnReport(two, 1000, Busy(1000, {0x80001, 0x80002, 0x80003}), m.cx.now_ns);
  for (const auto& o : loop.Tick())
    for (const auto& f : first) EXPECT_NE(o.tid, f.tid);
}

TEST_F(BalanceLoopTest, AMoveInFlightCountsAtItsDestination) {
  m.cx.cfg.balance_max_in_flight = 4;
  m.cx.load.OnReport(two, 1000, Busy(1000, {0x80001, 0x80002}), m.cx.now_ns);
  m.cx.load.OnReport(three, 1000, Busy(1000, {0x80003}), m.cx.now_ns);
  BalanceLoop loop(m.cx);
  ASSERT_EQ(loop.Tick().size(), 1u);  // node2's second task to node1, the idle master
  m.cx.now_ns += 2 * kS;
  // The reports still show it on node2: it is not moved again, nor another.
  m.cx.load.OnReport(two, 1000, Busy(1000, {0x80001, 0x80002}), m.cx.now_ns);
  EXPECT_TRUE(loop.Tick().empty());
}

TEST_F(BalanceLoopTest, ABalancedClusterIsLeftAloneOnceTheMovesLand) {
  BalanceLoop loop(m.cx);
  for (const auto& o : loop.Tick()) m.cx.load.OnMoved(o.tid, o.to, m.cx.now_ns);
  m.cx.now_ns += 5 * kS;
  EXPECT_TRUE(loop.Tick().empty());
  EXPECT_EQ(loop.in_flight(), 0);
}

TEST_F(BalanceLoopTest, AFailedMoveFreesItsPlaceAndTheTaskMayBeOrderedAgain) {
  m.cx.cfg.balance_max_in_flight = 1;
  BalanceLoop loop(m.cx);
  auto first = loop.Tick();
  ASSERT_EQ(first.size(), 1u);
  m.cx.now_ns += 2 * kS;
  EXPECT_TRUE(loop.Tick().empty());  // the one move allowed is in flight
  m.cx.load.OnMoveFailed(first[0].tid, first[0].to, false, m.cx.now_ns);
  m.cx.now_ns += 2 * kS;
  EXPECT_EQ(loop.Tick().size(), 1u);
}

TEST_F(BalanceLoopTest, OffOrOnAMemberItOrdersNothing) {
  m.cx.cfg.balance = false;
  BalanceLoop off(m.cx);
  EXPECT_TRUE(off.Tick().empty());
  off.Switch(true);
  EXPECT_FALSE(off.Tick().empty());
  m.cx.cfg.balance = true;
  m.cx.cfg.member = true;
  BalanceLoop member(m.cx);
  EXPECT_TRUE(member.Tick().empty());
}

TEST(LoadSampler, AveragesReadinessOverTheLastSamples) {
  LoadSampler s;
  EXPECT_EQ(s.Get(0x40001).runnable, 1);  // nothing known: counted runnable
  // A new task starts as ready: its first samples often find it blocked in
  // its first PVM calls. It counts as blocked after about 22 samples of 32.
  s.Add(0x40001, {.ok = true, .runnable = false, .cpu_ns = 5, .rss_bytes = 4096}, 1);
  EXPECT_EQ(s.Get(0x40001).runnable, 1);
  for (int i = 0; i < 15; ++i) s.Add(0x40001, {true, false, 5, 4096}, 2 + i);
  EXPECT_GT(s.Get(0x40001).runnable, 0.5);  // waits for under 2 s: still half busy
  for (int i = 0; i < 15; ++i) s.Add(0x40001, {true, false, 5, 4096}, 2 + i);
  EXPECT_LT(s.Get(0x40001).runnable, 0.5);
  for (int i = 0; i < 100; ++i) s.Add(0x40001, {true, true, 10, 4096}, 10 + i);
  EXPECT_GT(s.Get(0x40001).runnable, 0.9);
  // A task that waits for messages half of the time counts a half, however
  // its last few samples fell.
  for (int i = 0; i < 200; ++i) s.Add(0x40001, {true, i % 2 == 0, 10, 4096}, 110 + i);
  EXPECT_NEAR(s.Get(0x40001).runnable, 0.5, 0.05);
  for (int i = 0; i < 4; ++i) s.Add(0x40001, {true, false, 10, 4096}, 310 + i);
  EXPECT_GT(s.Get(0x40001).runnable, 0.4);
  s.Add(0x40001, {true, false, 10, 4096}, 30);
  EXPECT_EQ(s.Get(0x40001).cpu_ns, 10);
  s.Add(0x40002, {}, 31);  // a process that is gone: nothing recorded
  s.Prune(30);
  EXPECT_EQ(s.Get(0x40001).at_ns, 30);
  EXPECT_EQ(s.Get(0x40002).at_ns, 0);
}

TEST(LoadService, AReportWrittenBeforeAMoveDoesNotBringTheTaskBack) {
  LoadService s;
  s.OnReport(2, 1000, Busy(1000, {0x80001, 0x80002}), 10 * kS);
  s.OnReport(3, 1000, Busy(1000, {}), 10 * kS);
  s.OnMoved(0x80001, 3, 11 * kS);
  EXPECT_EQ(s.Snapshot().Host(3)->runnable, 1);
  s.OnReport(2, 1000, Busy(1000, {0x80001, 0x80002}), 11 * kS + 1);  // crossed the move
  auto load = s.Snapshot();
  EXPECT_EQ(load.Host(2)->runnable, 1);
  EXPECT_EQ(load.Host(3)->runnable, 1);
  EXPECT_EQ(load.tasks.size(), 2u);
}

TEST(LoadService, SpawnedTasksCountWhereTheyGoUntilTheHostReportsThem) {
  LoadService s;
  s.OnReport(2, 1000, Busy(1000, {}), 10 * kS);
  s.OnPlaced(2, 2, 10 * kS);
  EXPECT_EQ(s.Snapshot().Work(2), 2);
  s.OnReport(2, 1000, Busy(1000, {}), 10 * kS + 1);  // written before they started
  EXPECT_EQ(s.Snapshot().Work(2), 2);
  s.OnReport(2, 1000, Busy(1000, {0x80001}), 11 * kS);
  EXPECT_EQ(s.Snapshot().Work(2), 2);  // one reported, one still pending
  s.OnReport(2, 1000, Busy(1000, {0x80001, 0x80002}), 12 * kS);
  EXPECT_EQ(s.Snapshot().Work(2), 2);
  EXPECT_EQ(s.Snapshot().Host(2)->pending, 0);
  s.OnPlaced(2, 1, 13 * kS);  // a spawn that never shows up is forgotten
  s.OnReport(2, 1000, Busy(1000, {0x80001, 0x80002}), 19 * kS);
  EXPECT_EQ(s.Snapshot().Host(2)->pending, 0);
}

}  // namespace
}  // namespace mpvm
