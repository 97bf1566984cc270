#include "placement.h"

#include <gtest/gtest.h>

namespace mpvm::balancer {
namespace {

TEST(RoundRobin, CyclesThroughHostsAcrossCalls) {
  std::vector<HostLoad> hosts = {{1, 1.0, 0}, {2, 1.0, 0}, {3, 1.0, 0}};
  int cursor = -1;
  EXPECT_EQ(RoundRobin(hosts, 4, &cursor), (std::vector<int>{1, 2, 3, 1}));
  EXPECT_EQ(RoundRobin(hosts, 2, &cursor), (std::vector<int>{2, 3}));
}

TEST(RoundRobin, EmptyInputsGiveNothing) {
  int cursor = 0;
  EXPECT_TRUE(RoundRobin({}, 3, &cursor).empty());
  EXPECT_TRUE(RoundRobin({{1, 1, 0}}, 0, &cursor).empty());
}

TEST(SpeedAware, FastHostGetsProportionallyMore) {
  // Host 2 is three times faster: of 8 tasks it should take 6.
  auto out = SpeedAware({{1, 1.0, 0}, {2, 3.0, 0}}, 8);
  int on_fast = 0;
  for (int h : out) on_fast += h == 2;
  EXPECT_EQ(on_fast, 6);
}

TEST(SpeedAware, AccountsForExistingLoad) {
  auto out = SpeedAware({{1, 1.0, 0}, {2, 1.0, 5}}, 3);
  EXPECT_EQ(out, (std::vector<int>{1, 1, 1}));
}

}  // namespace
}  // namespace mpvm::balancer
