// The group server alone: requests in, replies out, no sockets.
#include "core/groups.h"

#include <gtest/gtest.h>

namespace mpvm {
namespace {

const Tid kA(0x40001), kB(0x40002), kC(0x80001);

class GroupsTest : public ::testing::Test {
 protected:
  // Sends op on connection `conn` (one per task here); returns the replies.
  std::vector<ReplyOut> Op(ConnId conn, Tid who, ctl::GroupRequest::Op op, int arg = 0,
                           const std::string& group = "g") {
    ctl::GroupRequest g;
    g.set_op(op);
    g.set_group(group);
    g.set_arg(arg);
    groups_.Handle(conn, ++rid_, who, g);
    return groups_.Replies().Take();
  }
  int Code(ConnId conn, Tid who, ctl::GroupRequest::Op op, int arg = 0) {
    auto out = Op(conn, who, op, arg);
    EXPECT_EQ(out.size(), 1u);
    return out.empty() ? 1 : out.front().env.group_reply().code();
  }

  GroupServer groups_;
  uint64_t rid_ = 0;
};

TEST_F(GroupsTest, JoinGivesInstancesAndLeaversLeaveHolesTheNextJoinerFills) {
  EXPECT_EQ(Code(1, kA, ctl::GroupRequest::JOIN), 0);
  EXPECT_EQ(Code(2, kB, ctl::GroupRequest::JOIN), 1);
  EXPECT_EQ(Code(2, kB, ctl::GroupRequest::JOIN), -18);  // PvmDupGroup
  EXPECT_EQ(Code(1, kA, ctl::GroupRequest::GETTID, 1), kB.raw());
  EXPECT_EQ(Code(1, kA, ctl::GroupRequest::GETINST, kA.raw()), 0);
  EXPECT_EQ(Code(1, kA, ctl::GroupRequest::GETTID, 5), -21);  // PvmNoInst
  EXPECT_EQ(Code(1, kA, ctl::GroupRequest::LEAVE), 0);
  EXPECT_EQ(Code(1, kA, ctl::GroupRequest::LEAVE), -20);  // PvmNotInGroup
  EXPECT_EQ(Code(2, kB, ctl::GroupRequest::SIZE), 1);
  EXPECT_EQ(Code(3, kC, ctl::GroupRequest::JOIN), 0);  // the hole at 0
}

TEST_F(GroupsTest, ABarrierAnswersEveryoneWhenTheLastArrives) {
  Code(1, kA, ctl::GroupRequest::JOIN);
  Code(2, kB, ctl::GroupRequest::JOIN);
  EXPECT_TRUE(Op(1, kA, ctl::GroupRequest::BARRIER, -1).empty());  // waits for b
  auto out = Op(2, kB, ctl::GroupRequest::BARRIER, -1);
  ASSERT_EQ(out.size(), 2u);
  EXPECT_EQ(out[0].conn, 1u);
  EXPECT_EQ(out[1].conn, 2u);
  EXPECT_EQ(out[0].env.group_reply().code(), 0);
}

TEST_F(GroupsTest, ABarrierOfANonMemberOrAnUnknownGroupFailsAtOnce) {
  Code(1, kA, ctl::GroupRequest::JOIN);
  EXPECT_EQ(Code(2, kB, ctl::GroupRequest::BARRIER, -1), -20);  // PvmNotInGroup
  auto out = Op(2, kB, ctl::GroupRequest::BARRIER, -1, "nope");
  ASSERT_EQ(out.size(), 1u);
  EXPECT_EQ(out[0].env.group_reply().code(), -19);  // PvmNoGroup
}

TEST_F(GroupsTest, AFrozenGroupTakesNoNewMembers) {
  Code(1, kA, ctl::GroupRequest::JOIN);
  EXPECT_EQ(Code(1, kA, ctl::GroupRequest::FREEZE, 1), 1);    // the size
  EXPECT_EQ(Code(2, kB, ctl::GroupRequest::JOIN), -20);       // PvmNotInGroup, as PVM
  EXPECT_EQ(Code(1, kA, ctl::GroupRequest::FREEZE, 1), -18);  // PvmDupGroup
}

// gexample: the first member freezes at once for the n it spawned, which
// join after; PVM's freeze waits for them (it used to freeze a group of one).
TEST_F(GroupsTest, AFreezeWaitsUntilSizeMembersHaveCalledItAndJoinsGoOnMeanwhile) {
  Code(1, kA, ctl::GroupRequest::JOIN);
  EXPECT_TRUE(Op(1, kA, ctl::GroupRequest::FREEZE, 2).empty());  // waits
  EXPECT_EQ(Code(2, kB, ctl::GroupRequest::JOIN), 1);            // not frozen yet
  EXPECT_EQ(Code(3, kC, ctl::GroupRequest::FREEZE, 2), -20);     // PvmNotInGroup
  auto out = Op(2, kB, ctl::GroupRequest::FREEZE, 2);
  ASSERT_EQ(out.size(), 2u);
  EXPECT_EQ(out[0].conn, 1u);
  EXPECT_EQ(out[1].conn, 2u);
  EXPECT_EQ(out[0].env.group_reply().code(), 2);
  EXPECT_EQ(out[1].env.group_reply().code(), 2);
  // Each answer carries the table as frozen, which the members keep: a
  // member that leaves at once is still in the others' copies.
  for (const auto& o : out) {
    EXPECT_TRUE(o.env.group_reply().frozen());
    EXPECT_EQ(
        std::vector<int>(o.env.group_reply().tids().begin(), o.env.group_reply().tids().end()),
        (std::vector<int>{kA.raw(), kB.raw()}));
  }
  EXPECT_EQ(Code(3, kC, ctl::GroupRequest::JOIN), -20);  // frozen now
}

TEST_F(GroupsTest, AFreezeOfAllWaitsForEveryMemberAndAClosedWaiterIsDropped) {
  Code(1, kA, ctl::GroupRequest::JOIN);
  Code(2, kB, ctl::GroupRequest::JOIN);
  EXPECT_TRUE(Op(1, kA, ctl::GroupRequest::FREEZE, -1).empty());
  groups_.DropWaitersOf(1);
  EXPECT_TRUE(Op(2, kB, ctl::GroupRequest::FREEZE, -1).empty());  // a's wait is gone
  auto out = Op(1, kA, ctl::GroupRequest::FREEZE, -1);
  ASSERT_EQ(out.size(), 2u);
  EXPECT_EQ(out[0].env.group_reply().code(), 2);
}

TEST_F(GroupsTest, MembersListsTidsByInstanceWithHoles) {
  Code(1, kA, ctl::GroupRequest::JOIN);
  Code(2, kB, ctl::GroupRequest::JOIN);
  Code(3, kC, ctl::GroupRequest::JOIN);
  Code(2, kB, ctl::GroupRequest::LEAVE);
  auto out = Op(1, kA, ctl::GroupRequest::MEMBERS);
  ASSERT_EQ(out.size(), 1u);
  const auto& tids = out[0].env.group_reply().tids();
  EXPECT_EQ(std::vector<int>(tids.begin(), tids.end()), (std::vector<int>{kA.raw(), 0, kC.raw()}));
}

TEST_F(GroupsTest, ALeavingTaskLeavesEveryGroupAndClosedWaitersAreDropped) {
  Code(1, kA, ctl::GroupRequest::JOIN);
  Code(2, kB, ctl::GroupRequest::JOIN);
  EXPECT_TRUE(Op(1, kA, ctl::GroupRequest::BARRIER, 2).empty());
  groups_.DropWaitersOf(1);
  groups_.ForgetMember(kA.raw());
  EXPECT_EQ(groups_.Members(), (std::vector<int>{0x40002}));
  // b alone at a barrier of 1: a's dropped wait does not count.
  auto out = Op(2, kB, ctl::GroupRequest::BARRIER, 1);
  ASSERT_EQ(out.size(), 1u);
  EXPECT_EQ(out[0].conn, 2u);
  EXPECT_EQ(Code(2, kB, ctl::GroupRequest::GETINST, kA.raw()), -20);
}

TEST_F(GroupsTest, AnUnknownOperationIsABadParameter) {
  Code(1, kA, ctl::GroupRequest::JOIN);
  EXPECT_EQ(Code(1, kA, static_cast<ctl::GroupRequest::Op>(99)), -2);  // PvmBadParam
}

}  // namespace
}  // namespace mpvm
