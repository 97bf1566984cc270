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
  s.OnMoveFailed(0x40001, 3, false, 5 * kS);
  s.OnMoveFailed(0x40002, 3, false, 7 * kS);
  EXPECT_EQ(s.failures_to(3), 2);
  EXPECT_EQ(s.last_failure_ns(3), 7 * kS);
  EXPECT_EQ(s.failures_to(2), 0);
  s.OnHostGone(3);
  EXPECT_EQ(s.failures_to(3), 0);
}

// A refusal reaches the master before the source's next report says the
// task is pinned: meanwhile the balancer asked again at every decision.
TEST(LoadService, AFailedMoveShowsAtOnceAndALastingOnePinsTheTask) {
  LoadService s;
  s.OnReport(1, 1000, Report(1000, {0x40001, 0x40002}), 10 * kS);
  s.OnMoveFailed(0x40001, 2, /*pinned=*/true, 11 * kS);
  s.OnMoveFailed(0x40002, 2, /*pinned=*/false, 12 * kS);
  const auto check = [&] {
    for (const auto& t : s.Snapshot().tasks) {
      EXPECT_EQ(t.pinned, t.tid == 0x40001);
      EXPECT_EQ(t.last_failure, t.tid == 0x40001 ? 11 * kS : 12 * kS);
    }
  };
  check();
  s.OnReport(1, 1000, Report(1000, {0x40001, 0x40002}), 13 * kS);  // written before the news
  check();
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

ctl::TaskTraffic Note(std::vector<std::pair<int, uint64_t>> peers, int64_t over_ns) {
  ctl::TaskTraffic n;
  n.set_over_ns(over_ns);
  for (const auto& [tid, bytes] : peers) {
    auto* p = n.add_peers();
    p->set_tid(tid);
    p->set_bytes(bytes);
  }
  return n;
}

// A task's notes become rates per peer, which its host's report carries;
// a peer it stopped talking to fades, and a task that sends no more notes
// has no rates at all.
TEST(TrafficMeter, TurnsATasksNotesIntoRatesThatFade) {
  TrafficMeter m;
  EXPECT_TRUE(m.Rates(0x40001, 0).empty());
  m.Add(0x40001, Note({{0x80001, 2'000'000}, {0x80002, 500}}, 2 * kS), 2 * kS);
  auto r = m.Rates(0x40001, 2 * kS);
  ASSERT_EQ(r.size(), 2u);
  EXPECT_EQ(r[0], (std::pair<int, uint64_t>{0x80001, 1'000'000}));  // 2 MB over 2 s
  EXPECT_EQ(r[1], (std::pair<int, uint64_t>{0x80002, 250}));
  for (int i = 0; i < 12; ++i) m.Add(0x40001, Note({{0x80001, 1'000'000}}, kS), (3 + i) * kS);
  r = m.Rates(0x40001, 14 * kS);
  ASSERT_EQ(r.size(), 1u);  // 0x80002: no longer
  EXPECT_EQ(r[0].second, 1'000'000u);
  auto report = MakeLoadReport(1000, 1, {{.tid = 0x40001, .peers = r}}, 14 * kS);
  ASSERT_EQ(report.tasks(0).peers_size(), 1);
  EXPECT_EQ(report.tasks(0).peers(0).tid(), 0x80001);
  EXPECT_EQ(report.tasks(0).peers(0).bytes(), 1'000'000u);
  EXPECT_TRUE(m.Rates(0x40001, 14 * kS + TrafficMeter::kQuietNs + 1).empty());
  m.Prune(15 * kS);
  EXPECT_TRUE(m.Rates(0x40001, 14 * kS).empty());
}

// What no task of ours writes is dropped: a note over a moment (absurd
// rates), one with more peers than a task names, and a task's own tid.
TEST(TrafficMeter, DropsNotesNoTaskOfOursWrites) {
  TrafficMeter m;
  m.Add(0x40001, Note({{0x80001, 1'000'000}}, 1), kS);  // over 1 ns
  EXPECT_TRUE(m.Rates(0x40001, kS).empty());
  std::vector<std::pair<int, uint64_t>> many;
  for (int i = 0; i <= TrafficMeter::kMaxPeers; ++i) many.push_back({0x80001 + i, 100});
  m.Add(0x40001, Note(many, kS), kS);
  EXPECT_TRUE(m.Rates(0x40001, kS).empty());
  m.Add(0x40001, Note({{0x40001, 5000}, {0x80001, UINT64_MAX}}, kS), kS);
  auto r = m.Rates(0x40001, kS);
  ASSERT_EQ(r.size(), 1u);  // not itself
  EXPECT_EQ(r[0].first, 0x80001);
  EXPECT_LE(static_cast<double>(r[0].second), TrafficMeter::kMaxRate);  // clamped
}

// A task that moved here goes on with the readiness it had, not as a new
// task (which starts as ready).
TEST(LoadSampler, AMovedTaskGoesOnWithItsReadiness) {
  LoadSampler s;
  s.Seed(0x40001, 0.25, kS);
  EXPECT_DOUBLE_EQ(s.Get(0x40001).runnable, 0.25);
  s.Add(0x40001, {.ok = true, .runnable = true, .cpu_ns = 1, .rss_bytes = 1}, 2 * kS);
  EXPECT_GT(s.Get(0x40001).runnable, 0.25);
  EXPECT_LT(s.Get(0x40001).runnable, 0.3);
  s.Prune(kS + 1);
  EXPECT_EQ(s.Get(0x40001).at_ns, 2 * kS);  // kept: sampled since
}

}  // namespace
}  // namespace mpvm
