// The load service alone: reports in, a snapshot out.
#include "core/load_service.h"

#include <gtest/gtest.h>

#include "load_reports.h"

namespace mpvm {
namespace {

constexpr int64_t kS = 1'000'000'000;

ctl::LoadReport Report(int speed, std::vector<int> tids, int64_t age = 5 * kS) {
  return RunnableReport(speed, tids, age);
}

TEST(LoadService, ASnapshotHoldsEveryHostsLatestReportOnTheMastersClock) {
  LoadService s;
  s.OnReport(1, 1000, Report(1000, {0x40001, 0x40002}), 100 * kS);
  s.OnReport(2, 2000, Report(2000, {0x80001}), 100 * kS);
  s.OnReport(3, 500, Report(0, {}), 100 * kS);  // no speed in it: the host table's
  s.OnReport(2, 2000, Report(2000, {0x80001, 0x80002}, 1 * kS), 101 * kS);  // a newer one
  auto load = s.Snapshot();
  ASSERT_EQ(load.hosts.size(), 3u);
  EXPECT_EQ(load.Host(1)->runnable, 2);
  EXPECT_EQ(load.Host(2)->runnable, 2);
  EXPECT_EQ(load.Host(2)->speed, 2000);
  EXPECT_EQ(load.Host(3)->speed, 500);
  EXPECT_EQ(load.Host(3)->runnable, 0);
  ASSERT_EQ(load.tasks.size(), 4u);
  for (const auto& t : load.tasks) {
    if (t.host == 2) {
      EXPECT_EQ(t.started, 100 * kS);  // age 1 s at 101 s
    }
  }
}

TEST(LoadService, AHostThatLeavesTakesItsTasksOutOfTheSnapshot) {
  LoadService s;
  s.OnReport(1, 1000, Report(1000, {0x40001}), kS);
  s.OnReport(2, 1000, Report(1000, {0x80001}), kS);
  s.OnHostGone(2);
  auto load = s.Snapshot();
  ASSERT_EQ(load.hosts.size(), 1u);
  ASSERT_EQ(load.tasks.size(), 1u);
  EXPECT_EQ(load.tasks[0].tid, 0x40001);
}

TEST(LoadService, MeasuredMovesSetTheCostModel) {
  LoadService s;
  for (int i = 0; i < 30; ++i) s.OnMoveDone(64u << 20, kS / 4);  // 64 MiB in 0.25 s
  EXPECT_NEAR(s.bandwidth(), 64.0 * (1 << 20) * 4, 0.01 * 64.0 * (1 << 20) * 4);
  for (int i = 0; i < 30; ++i) s.OnMoveDone(4096, 3'000'000);  // small moves: 3 ms each
  EXPECT_NEAR(static_cast<double>(s.move_overhead_ns()), 3e6, 0.05e6);
}

TEST(LoadService, CountsFailedMovesByDestinationUntilItLeaves) {
  LoadService s;
  s.OnMoveFailed(0x40001, 3, 5 * kS);
  s.OnMoveFailed(0x40002, 3, 7 * kS);
  EXPECT_EQ(s.failures_to(3), 2);
  EXPECT_EQ(s.last_failure_ns(3), 7 * kS);
  EXPECT_EQ(s.failures_to(2), 0);
  s.OnHostGone(3);
  EXPECT_EQ(s.failures_to(3), 0);
}

TEST(MakeLoadReport, AgesAndMovesAreDurationsOnThisHostsClock) {
  auto r = MakeLoadReport(1500, 2, {{0x40001, 2 * kS, 0, false}, {0x40002, 1 * kS, 3 * kS, true}},
                          4 * kS);
  EXPECT_EQ(r.speed(), 1500);
  EXPECT_EQ(r.cores(), 2);
  ASSERT_EQ(r.tasks_size(), 2);
  EXPECT_EQ(r.tasks(0).age_ns(), 2 * kS);
  EXPECT_EQ(r.tasks(0).since_move_ns(), 0);  // never moved
  EXPECT_EQ(r.tasks(1).since_move_ns(), 1 * kS);
  EXPECT_TRUE(r.tasks(1).pinned());
}

}  // namespace
}  // namespace mpvm
