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
    for (const auto& t : tasks) h.runnable += t.host == h.host ? t.ready : 0;
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

// A ring's tasks wait for their neighbours, and which host's tasks wait
// more moves from host to host. Counted as whole tasks (ready more than
// half the time or not), 4 tasks at 0.6 on one host against 4 at 0.4 on
// another looked like 4 against 0, and drew moves that made the ring
// slower. Counted as the CPU they ask for, 2.4 against 1.6, the hosts are
// even.
TEST(Decide, TasksThatWaitForMessagesCountForTheTimeTheyCompute) {
  std::vector<TaskLoad> tasks;
  for (int i = 0; i < 4; ++i) {
    tasks.push_back(Task(0x40001 + i, 1));
    tasks.back().ready = 0.6;
    tasks.back().bytes_with[0x80001 + i] = 4096;  // a ring: each talks to its neighbour
    tasks.push_back(Task(0x80001 + i, 2));
    tasks.back().ready = 0.4;
    tasks.back().bytes_with[0x40001 + (i + 1) % 4] = 4096;
  }
  const std::vector<HostLoad> hosts = {{.host = 1, .speed = 400}, {.host = 2, .speed = 400}};
  auto load = Load(hosts, tasks);
  EXPECT_DOUBLE_EQ(load.Work(1), 2.4);
  EXPECT_TRUE(Decide(load, {}, kNow).empty());
  // Even 3.6 against 1.2 is no reason: with the task, the other host would
  // have 5 tasks where this one has 4.
  for (auto& t : tasks) t.ready = t.host == 1 ? 0.9 : 0.3;
  EXPECT_TRUE(Decide(Load(hosts, tasks), {}, kNow).empty());
  // Whole tasks still move: 4 computing against 4 that almost never run.
  for (auto& t : tasks) t.ready = t.host == 1 ? 1.0 : 0.05;
  EXPECT_FALSE(Decide(Load(hosts, tasks), {}, kNow).empty());
}

// A task that talks to no one and rests by itself (E4's background: it
// computes and sleeps in turns) leaves the rest of its time to others: a
// host with one at 0.67 has room that a host with two computing tasks has
// not. Were it waiting for messages, it would count whole.
TEST(Decide, ATaskThatRestsByItselfLeavesRoomForAnother) {
  auto rests = Task(0x80001, 2);
  rests.ready = 0.67;
  rests.pinned = true;
  const std::vector<HostLoad> hosts = {{.host = 1}, {.host = 2}};
  auto orders = Decide(Load(hosts, {Task(0x40001, 1), Task(0x40002, 1), rests}), {}, kNow);
  ASSERT_EQ(orders.size(), 1u);
  EXPECT_EQ(orders[0].to, 2);
  rests.bytes_with[0x40001] = 4096;  // it talks: its waits may be for its peers
  EXPECT_TRUE(Decide(Load(hosts, {Task(0x40001, 1), Task(0x40002, 1), rests}), {}, kNow).empty());
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
  blocked.ready = 0.2;
  auto failed = Task(0x40005, 1);
  failed.last_failure = kNow - kSecond;  // a failed move waits out the residency too
  auto load = Load({{.host = 1}, {.host = 2}}, {pinned, young, moved, blocked, failed});
  EXPECT_TRUE(Decide(load, {}, kNow).empty());
  load.tasks.back().last_failure = kNow - 3 * kSecond;
  auto orders = Decide(load, {}, kNow);
  ASSERT_EQ(orders.size(), 1u);
  EXPECT_EQ(orders[0].tid, 0x40005);
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

// E12: two chatty pairs, each split across two equal hosts (round-robin
// put 1 and 3 on host 1, 2 and 4 on host 2; the pairs are 1-2 and 3-4).
// A move alone would leave 3 tasks against 1; trading places brings both
// pairs together and keeps 2 and 2.
std::vector<TaskLoad> SplitPairs(double ready, uint64_t rate) {
  std::vector<TaskLoad> t = {Task(0x40001, 1), Task(0x80001, 2), Task(0x40002, 1),
                             Task(0x80002, 2)};
  for (auto& x : t) x.ready = ready;
  t[0].bytes_with[0x80001] = rate;  // what each sends: the policy adds both ways
  t[1].bytes_with[0x40001] = rate;
  t[2].bytes_with[0x80002] = rate;
  t[3].bytes_with[0x40002] = rate;
  return t;
}

TEST(Decide, SplitChattyPairsTradePlacesAndComeTogether) {
  auto tasks = SplitPairs(1.0, 4 << 20);
  auto orders = Decide(Load({{.host = 1}, {.host = 2}}, tasks), {}, kNow);
  ASSERT_EQ(orders.size(), 2u);
  std::map<int, int> host;
  for (const auto& t : tasks) host[t.tid] = t.host;
  for (const auto& o : orders) {
    EXPECT_EQ(host[o.tid], o.from);
    host[o.tid] = o.to;
    EXPECT_NE(o.reason.find("trades places"), std::string::npos) << o.reason;
  }
  EXPECT_EQ(host[0x40001], host[0x80001]);
  EXPECT_EQ(host[0x40002], host[0x80002]);
  EXPECT_NE(host[0x40001], host[0x40002]);  // and the CPU stays 2 and 2
  // Once together, they stay.
  for (auto& t : tasks) t.host = host[t.tid];
  EXPECT_TRUE(Decide(Load({{.host = 1}, {.host = 2}}, tasks), {}, kNow).empty());
}

// A trade must not make the busier host busier: a task that computes all
// the time does not trade places with one that mostly waits onto a host
// that is full already.
TEST(Decide, ATradeThatWouldLoadTheBusierHostIsNotMade) {
  auto tasks = SplitPairs(1.0, 4 << 20);
  tasks[1].ready = 0.55;  // 0x80001 and 0x80002 on host 2 mostly wait
  tasks[3].ready = 0.55;
  tasks.push_back(Task(0x80003, 2));  // and host 2 is full with a third task
  tasks.back().pinned = true;
  auto orders = Decide(Load({{.host = 1}, {.host = 2}}, tasks), {}, kNow);
  for (const auto& o : orders) EXPECT_EQ(o.reason.find("trades places"), std::string::npos);
}

TEST(Decide, QuietPairsAndATooSmallBudgetLeaveTasksWhereTheyAre) {
  const std::vector<HostLoad> hosts = {{.host = 1}, {.host = 2}};
  EXPECT_TRUE(Decide(Load(hosts, SplitPairs(1.0, 1000)), {}, kNow).empty());  // 2 KB/s
  EXPECT_TRUE(Decide(Load(hosts, SplitPairs(1.0, 4 << 20)), {.max_in_flight = 1}, kNow).empty());
}

// When the CPU allows (the tasks mostly wait for each other, or the other
// host has room), a chatty task joins its peer alone.
TEST(Decide, AChattyTaskJoinsItsPeerWhereTheCpuHasRoom) {
  auto tasks = SplitPairs(0.3, 4 << 20);
  tasks.erase(tasks.begin() + 2, tasks.end());  // one pair, split
  auto orders = Decide(Load({{.host = 1}, {.host = 2}}, tasks), {}, kNow);
  ASSERT_EQ(orders.size(), 1u);
  EXPECT_NE(orders[0].reason.find("talks"), std::string::npos) << orders[0].reason;
  // Not onto a host whose CPU is full: of a pair split across a host with 2
  // computing tasks and one with 1, the task on the full one moves.
  tasks = SplitPairs(1.0, 4 << 20);
  tasks[2].host = 2;
  tasks[2].bytes_with.clear();
  auto load = Load({{.host = 1}, {.host = 2}}, {tasks[0], tasks[1], tasks[2]});
  orders = Decide(load, {}, kNow);
  ASSERT_EQ(orders.size(), 1u);
  EXPECT_EQ(orders[0].tid, 0x80001);
  EXPECT_EQ(orders[0].to, 1);
}

// E10: with every host at 4 or more runnable tasks per core, balancing
// backs off: one move per decision, and only for twice the margin.
TEST(Decide, AnOverloadedClusterBacksOff) {
  const auto cluster = [](int on_first, int on_second) {
    std::vector<TaskLoad> tasks;
    for (int i = 0; i < on_first; ++i) tasks.push_back(Task(0x40001 + i, 1));
    for (int i = 0; i < on_second; ++i) tasks.push_back(Task(0x80001 + i, 2));
    return Load({{.host = 1}, {.host = 2}}, tasks);
  };
  const Limits lim;
  // 12 against 2: not overloaded (host 2 has 2 per core), two moves.
  EXPECT_EQ(Decide(cluster(12, 2), lim, kNow).size(), 2u);
  // 16 against 4, overloaded: one move, and the reason says why.
  auto orders = Decide(cluster(16, 4), lim, kNow);
  ASSERT_EQ(orders.size(), 1u);
  EXPECT_NE(orders[0].reason.find("overloaded"), std::string::npos);
  // 6 against 4 (T 6 and 5) gains 17%: enough for the margin, not for
  // twice it. Below the threshold the same difference moves a task.
  EXPECT_TRUE(Decide(cluster(6, 4), lim, kNow).empty());
  Limits higher = lim;
  higher.overload = 5;
  EXPECT_EQ(Decide(cluster(6, 4), higher, kNow).size(), 1u);
}

}  // namespace
}  // namespace mpvm::balancer
