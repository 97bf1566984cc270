// Unit tests of the location registry: where moved tasks are, moves in
// transit, and tasks in limbo after their source host died.
#include "core/location_registry.h"

#include <gtest/gtest.h>

namespace mpvm {
namespace {

TEST(LocationRegistry, RemembersWhereAMovedTaskIsUntilForgotten) {
  LocationRegistry where;
  EXPECT_FALSE(where.At(100).has_value());
  where.Set(100, 3);
  EXPECT_EQ(where.At(100), 3);
  where.Forget(100);
  EXPECT_FALSE(where.contains(100));
}

TEST(LocationRegistry, ATaskMovingAwayFromADeadHostWaitsInLimboThenIsLost) {
  LocationRegistry where;
  where.BeginTransit(100, /*from=*/2, /*to=*/3, /*now=*/0);
  std::set<int> lost = {100, 200};
  where.HostGone(2, &lost, /*now=*/1'000);
  EXPECT_EQ(lost, std::set<int>{200});  // 100 may yet arrive at host 3
  EXPECT_TRUE(where.Expired(1'000 + LocationRegistry::kLimboNs).empty());
  EXPECT_EQ(where.Expired(1'001 + LocationRegistry::kLimboNs), std::vector<int>{100});
  EXPECT_TRUE(where.Expired(2'000 + LocationRegistry::kLimboNs).empty());  // reported once
}

TEST(LocationRegistry, ATaskThatArrivesLeavesLimbo) {
  LocationRegistry where;
  where.BeginTransit(100, 2, 3, 0);
  std::set<int> lost = {100};
  where.HostGone(2, &lost, 0);
  where.Set(100, 3);
  where.Settle(100);
  EXPECT_TRUE(where.Expired(LocationRegistry::kLimboNs + 1).empty());
}

TEST(LocationRegistry, AMoveToADeadHostEndsAndItsTaskIsNotHeldBack) {
  LocationRegistry where;
  where.BeginTransit(100, 2, 3, 0);
  std::set<int> lost = {100};
  where.HostGone(3, &lost, 0);
  EXPECT_EQ(lost, std::set<int>{100});  // it ran on at host 2, which is not gone
  std::set<int> later = {100};
  where.HostGone(2, &later, 0);
  EXPECT_EQ(later, std::set<int>{100});  // the transit ended: lost at once
}

TEST(LocationRegistry, EntriesPointingAtADeadHostAreForgotten) {
  LocationRegistry where;
  where.Set(100, 2);
  where.Set(101, 3);
  where.ForgetHost(2);
  EXPECT_FALSE(where.contains(100));
  EXPECT_TRUE(where.contains(101));
}

TEST(LocationRegistry, KeepsABoundedMemoryOfTasksKnownGone) {
  LocationRegistry where;
  where.NoteGone(1);
  EXPECT_TRUE(where.KnownGone(1));
  for (int t = 2; t <= 65537; ++t) where.NoteGone(t);
  EXPECT_FALSE(where.KnownGone(1));  // the oldest went first
  EXPECT_TRUE(where.KnownGone(65537));
}

}  // namespace
}  // namespace mpvm
