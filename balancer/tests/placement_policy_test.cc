#include "placement_policy.h"

#include <gtest/gtest.h>

#include <algorithm>

namespace mpvm::balancer {
namespace {

ClusterLoad Hosts(std::vector<HostLoad> hosts) { return ClusterLoad{std::move(hosts), {}}; }

TEST(RoundRobinPlacement, RanksGoToTheCandidatesInTurnFromTheFirst) {
  RoundRobinPlacement rr;
  EXPECT_EQ(rr.Place({}, {1, 2, 3}, 4), (std::vector<int>{1, 2, 3, 1}));
  EXPECT_EQ(rr.Place({}, {2, 1}, 3), (std::vector<int>{2, 1, 2}));  // the spawner's host first
}

TEST(RoundRobinPlacement, EmptyInputsGiveNothing) {
  RoundRobinPlacement rr;
  EXPECT_TRUE(rr.Place({}, {}, 3).empty());
  EXPECT_TRUE(rr.Place({}, {1}, 0).empty());
}

TEST(SpeedAwarePlacement, AFastHostGetsProportionallyMore) {
  // Host 2 is three times faster: of 8 tasks it takes 6.
  auto load = Hosts({{.host = 1, .speed = 1000}, {.host = 2, .speed = 3000}});
  auto out = SpeedAwarePlacement().Place(load, {1, 2}, 8);
  EXPECT_EQ(std::count(out.begin(), out.end(), 2), 6);
}

TEST(SpeedAwarePlacement, ExistingAndBackgroundLoadCount) {
  auto load = Hosts(
      {{.host = 1, .speed = 1000}, {.host = 2, .speed = 1000, .runnable = 3, .background = 2}});
  EXPECT_EQ(SpeedAwarePlacement().Place(load, {1, 2}, 3), (std::vector<int>{1, 1, 1}));
}

TEST(SpeedAwarePlacement, ABurstSpreadsInsteadOfSwampingTheIdlestHost) {
  auto load =
      Hosts({{.host = 1, .speed = 1000}, {.host = 2, .speed = 1000}, {.host = 3, .speed = 1000}});
  EXPECT_EQ(SpeedAwarePlacement().Place(load, {1, 2, 3}, 6), (std::vector<int>{1, 2, 3, 1, 2, 3}));
}

TEST(SpeedAwarePlacement, OnlyCandidatesAreUsed) {
  auto load = Hosts({{.host = 1, .speed = 1000, .runnable = 9}, {.host = 2, .speed = 9000}});
  EXPECT_EQ(SpeedAwarePlacement().Place(load, {1}, 2), (std::vector<int>{1, 1}));
}

TEST(MakePlacementPolicy, KnowsItsNamesAndNothingElse) {
  EXPECT_NE(MakePlacementPolicy("round-robin"), nullptr);
  EXPECT_NE(MakePlacementPolicy("speed-aware"), nullptr);
  EXPECT_EQ(MakePlacementPolicy("fastest"), nullptr);
}

}  // namespace
}  // namespace mpvm::balancer
