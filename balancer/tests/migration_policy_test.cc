#include "migration_policy.h"

#include <gtest/gtest.h>

namespace mpvm::balancer {
namespace {

constexpr Time kNow = 100 * kSecond;

TaskLoad Task(int tid, int host, Time age = 10 * kSecond) {
  TaskLoad t;
  t.tid = tid;
  t.host = host;
  t.started = kNow - age;
  t.image_bytes = 1 << 20;
  return t;
}

// Hosts with their runnable counts taken from the tasks on them.
ClusterLoad Load(std::vector<HostLoad> hosts, std::vector<TaskLoad> tasks) {
  for (auto& h : hosts)
    for (const auto& t : tasks) h.runnable += t.host == h.host && t.runnable;
  return {std::move(hosts), std::move(tasks)};
}

TEST(TimePerWork, OneTaskPerCoreRunsAtFullSpeedMoreShareIt) {
  HostLoad h{.host = 1, .speed = 1000, .cores = 2};
  EXPECT_DOUBLE_EQ(TimePerWork(h, 1), 1.0 / 1000);
  EXPECT_DOUBLE_EQ(TimePerWork(h, 2), 1.0 / 1000);
  EXPECT_DOUBLE_EQ(TimePerWork(h, 4), 2.0 / 1000);
}

TEST(Decide, ATaskMovesFromABusyHostToAnIdleOne) {
  auto load = Load({{.host = 1}, {.host = 2}}, {Task(0x40001, 1), Task(0x40002, 1)});
  auto orders = Decide(load, {}, kNow);
  ASSERT_EQ(orders.size(), 1u);
  EXPECT_EQ(orders[0].from, 1);
  EXPECT_EQ(orders[0].to, 2);
  EXPECT_FALSE(orders[0].reason.empty());
}

TEST(Decide, ABalancedClusterStaysPut) {
  auto load = Load({{.host = 1}, {.host = 2}}, {Task(0x40001, 1), Task(0x80001, 2)});
  EXPECT_TRUE(Decide(load, {}, kNow).empty());
}

TEST(Decide, NoMoveToASlowerHostThatWouldBeWorse) {
  // 2 tasks on a fast host (T = 2/3000) beat 1 on a 3x slower one (1/1000).
  auto load = Load({{.host = 1, .speed = 3000}, {.host = 2, .speed = 1000}},
                   {Task(0x40001, 1), Task(0x40002, 1)});
  EXPECT_TRUE(Decide(load, {}, kNow).empty());
}

TEST(Decide, TasksGoToTheFastHostFirst) {
  auto load =
      Load({{.host = 1, .speed = 1000}, {.host = 2, .speed = 1000}, {.host = 3, .speed = 4000}},
           {Task(0x40001, 1), Task(0x40002, 1), Task(0x80001, 2), Task(0x80002, 2)});
  auto orders = Decide(load, {.max_in_flight = 4}, kNow);
  ASSERT_GE(orders.size(), 2u);
  EXPECT_EQ(orders[0].to, 3);
  EXPECT_EQ(orders[1].to, 3);
  EXPECT_NE(orders[0].from, orders[1].from);  // applied as made: each host gives one
}

TEST(Decide, PinnedYoungBlockedAndJustMovedTasksStay) {
  auto pinned = Task(0x40001, 1);
  pinned.pinned = true;
  auto young = Task(0x40002, 1, kSecond / 2);
  auto moved = Task(0x40003, 1);
  moved.last_move = kNow - kSecond;  // under the 2 s residency
  auto blocked = Task(0x40004, 1);
  blocked.runnable = false;
  auto load = Load({{.host = 1}, {.host = 2}}, {pinned, young, moved, blocked});
  EXPECT_TRUE(Decide(load, {}, kNow).empty());
}

TEST(Decide, AMoveMustPayForItsCost) {
  auto big = Task(0x40001, 1, 2 * kSecond);
  big.image_bytes = 4'000'000'000;  // 4 s at 1 GB/s, for 2 s of age
  auto other = big;
  other.tid = 0x40002;
  auto load = Load({{.host = 1}, {.host = 2}}, {big, other});
  EXPECT_TRUE(Decide(load, {}, kNow).empty());
}

TEST(Decide, TheCapOnMovesInFlightHolds) {
  std::vector<TaskLoad> tasks;
  for (int i = 1; i <= 6; ++i) tasks.push_back(Task(0x40000 + i, 1));
  auto load = Load({{.host = 1}, {.host = 2}, {.host = 3}, {.host = 4}}, tasks);
  EXPECT_EQ(Decide(load, {.max_in_flight = 2}, kNow).size(), 2u);
  EXPECT_EQ(Decide(load, {.max_in_flight = 2, .moves_in_flight = 1}, kNow).size(), 1u);
  EXPECT_TRUE(Decide(load, {.max_in_flight = 2, .moves_in_flight = 2}, kNow).empty());
}

TEST(Decide, OfTwoCandidatesTheOneTalkingToTheDestinationGoes) {
  auto quiet = Task(0x40001, 1);
  auto chatty = Task(0x40002, 1);
  chatty.bytes_with[0x80001] = 1 << 30;  // its peer runs on host 2
  auto load = Load({{.host = 1}, {.host = 2}}, {quiet, chatty, Task(0x40003, 1), Task(0x80001, 2)});
  auto orders = Decide(load, {.max_in_flight = 1}, kNow);
  ASSERT_EQ(orders.size(), 1u);
  EXPECT_EQ(orders[0].tid, 0x40002);
}

TEST(Decide, BackgroundLoadCountsAgainstAHost) {
  // Host 2 is busy with others' work: our second task stays on host 1.
  auto load =
      Load({{.host = 1}, {.host = 2, .background = 3}}, {Task(0x40001, 1), Task(0x40002, 1)});
  EXPECT_TRUE(Decide(load, {}, kNow).empty());
}

}  // namespace
}  // namespace mpvm::balancer
