// The host table alone: joins, silence, removal and the member's copy.
#include "core/host_table.h"

#include <gtest/gtest.h>

#include "mpvm/tid.h"

namespace mpvm {
namespace {

ctl::JoinRequest Join(const std::string& name, int speed = 0) {
  ctl::JoinRequest j;
  j.set_name(name);
  j.set_arch("LINUX64");
  j.set_speed(speed);
  return j;
}

TEST(HostTable, MembersJoinWithTheNextIndexAndANameOnlyOnce) {
  HostTable t;
  t.AddSelf(1, HostRec{"alpha", "LINUX64", 1000, 0, 0, 0, "", 2});
  EXPECT_EQ(t.Admit(100, Join("beta", 2000), 5).value(), 2);
  EXPECT_EQ(t.Admit(101, Join("gamma"), 5).value(), 3);
  EXPECT_EQ(t.at(3).speed, 1000);  // PVM's default when none is given
  auto dup = t.Admit(102, Join("beta"), 5);
  ASSERT_FALSE(dup.has_value());
  EXPECT_NE(dup.error().find("already in the virtual machine"), std::string::npos);
  EXPECT_FALSE(t.Admit(103, Join(""), 5).has_value());
  EXPECT_EQ(t.size(), 3u);
  EXPECT_EQ(t.IndexOf("gamma"), 3);
}

TEST(HostTable, SilentMembersAreTheOnesNotHeardFromWithinTheTimeout) {
  HostTable t;
  t.AddSelf(1, HostRec{"alpha", "LINUX64", 1000, 0, 0, 0, "", 2});
  t.Admit(100, Join("beta"), 0);
  t.Admit(101, Join("gamma"), 0);
  EXPECT_EQ(t.SawPeer(101, 2'000), 3);
  EXPECT_FALSE(t.SawPeer(999, 2'000).has_value());
  EXPECT_EQ(t.Silent(3'500, 3'000), std::vector<int>{2});  // the master itself never
  t.RestartClocks(10'000);
  EXPECT_TRUE(t.Silent(12'000, 3'000).empty());
}

TEST(HostTable, RemovalGivesTheRecordOnce) {
  HostTable t;
  t.Admit(100, Join("beta"), 0);
  auto rec = t.Remove(2);
  ASSERT_TRUE(rec.has_value());
  EXPECT_EQ(rec->peer, 100u);
  EXPECT_FALSE(t.Remove(2).has_value());
}

TEST(HostTable, AMemberAppliesTheMastersTableAndLearnsWhatChanged) {
  HostTable master;
  master.AddSelf(1, HostRec{"alpha", "LINUX64", 1000, 0, 0, 0, "", 2});
  master.Admit(100, Join("beta"), 0);
  master.Admit(101, Join("gamma"), 0);
  master.SetTaskCount(3, 4);
  HostTable member;
  auto c = member.Apply(master.ToProto(1, 7, 0x408c41), /*self=*/2);
  EXPECT_EQ(c.added, (std::vector<int>{1, 3}));  // not itself
  EXPECT_TRUE(c.gone.empty());
  EXPECT_EQ(member.at(1).ntasks, 7);
  EXPECT_EQ(member.at(3).ntasks, 4);
  master.Remove(3);
  c = member.Apply(master.ToProto(1, 7, 0x408c41), 2);
  EXPECT_EQ(c.gone, std::vector<int>{3});
  EXPECT_TRUE(c.added.empty());
  EXPECT_EQ(master.ToProto(1, 0, 0x408c41).hosts(0).tid(), Tid::DaemonOf(HostIndex{1}).raw());
}

}  // namespace
}  // namespace mpvm
