// Unit tests of host membership: joining, heartbeats, failures, host events.
#include "core/membership.h"

#include <gtest/gtest.h>

#include "fake_env.h"

namespace mpvm {
namespace {

ctl::Envelope Join(const std::string& name) {
  ctl::Envelope e = NewEnvelope();
  e.mutable_join()->set_name(name);
  e.mutable_join()->set_arch("LINUX64");
  e.mutable_join()->set_speed(2000);
  e.mutable_join()->set_cores(4);
  return e;
}

constexpr int64_t kSecond = 1'000'000'000;

class MembershipTest : public ::testing::Test {
 protected:
  void Tick(int64_t now) {
    members_.ClockCheck(now);
    m_.cx.now_ns = now;
    members_.Beat(now);
  }
  MasterContext m_;
  Membership members_{m_.cx};
};

TEST_F(MembershipTest, AJoiningHostGetsAnIndexAndTheTable) {
  Tick(kSecond);
  members_.OnMemberControl(7, Join("node2"));
  auto replies = m_.env.PeerControls(7);
  ASSERT_EQ(replies.size(), 1u);
  EXPECT_EQ(replies[0].join_reply().code(), 0);
  EXPECT_EQ(replies[0].join_reply().host(), 2);
  EXPECT_EQ(replies[0].join_reply().table().hosts_size(), 2);
  EXPECT_TRUE(m_.cx.hosts.contains(2));
  EXPECT_EQ(m_.cx.hosts.at(2).cores, 4);
}

TEST_F(MembershipTest, ASecondHostOfTheSameNameIsRefused) {
  Tick(kSecond);
  members_.OnMemberControl(7, Join("node2"));
  members_.OnMemberControl(8, Join("node2"));
  auto replies = m_.env.PeerControls(8);
  ASSERT_EQ(replies.size(), 1u);
  EXPECT_EQ(replies[0].join_reply().code(), PvmCode(Err::kDupHost));
}

TEST_F(MembershipTest, ASilentHostIsRemovedAndOthersHearOfIt) {
  Tick(kSecond);
  members_.OnMemberControl(7, Join("node2"));
  const int64_t dead_after = m_.cx.cfg.dead_after_ns;
  int64_t removed_at = 0;
  for (int64_t t = kSecond; t <= kSecond + 2 * dead_after && removed_at == 0; t += dead_after / 4) {
    Tick(t);
    if (!m_.events.hosts_gone.empty()) removed_at = t;
  }
  EXPECT_GT(removed_at - kSecond, dead_after);  // not before it was silent that long
  EXPECT_EQ(m_.events.hosts_gone, std::vector<int>{2});
  EXPECT_FALSE(m_.cx.hosts.contains(2));
  EXPECT_EQ(m_.env.dropped, std::vector<PeerId>{7});
}

TEST_F(MembershipTest, AHostThatSpeaksIsNotSilent) {
  Tick(kSecond);
  members_.OnMemberControl(7, Join("node2"));
  for (int64_t t = kSecond; t < kSecond + 3 * m_.cx.cfg.dead_after_ns; t += kSecond / 4) {
    Tick(t);
    members_.SawPeer(7);
  }
  EXPECT_TRUE(m_.events.hosts_gone.empty());
}

TEST_F(MembershipTest, ADaemonThatDidNotRunDoesNotDeclareOthersDead) {
  Tick(kSecond);
  members_.OnMemberControl(7, Join("node2"));
  Tick(kSecond + 10 * m_.cx.cfg.dead_after_ns);  // this daemon was stopped meanwhile
  EXPECT_TRUE(m_.events.hosts_gone.empty());
}

TEST_F(MembershipTest, ALinkThatClosesRemovesItsHost) {
  Tick(kSecond);
  members_.OnMemberControl(7, Join("node2"));
  members_.OnPeerGone(7);
  EXPECT_EQ(m_.events.hosts_gone, std::vector<int>{2});
}

// A member's core context over a FakeEnv, with FakeEvents.
struct MemberSide {
  static DaemonConfig MemberConfig() {
    DaemonConfig c;
    c.member = true;
    return c;
  }
  FakeEnv env;
  FakeEvents events;
  DaemonConfig c = MemberConfig();
  CoreContext cx{c, &env};
  Membership member{cx};
  MemberSide() { cx.events = &events; }
};

TEST_F(MembershipTest, AMemberHaltsWhenTheMasterFallsSilent) {
  MemberSide side;
  auto& events = side.events;
  auto& c = side.c;
  auto& cx = side.cx;
  auto& member = side.member;
  member.StartJoin(kSecond);
  ctl::Envelope reply = NewEnvelope();
  reply.mutable_join_reply()->set_host(2);
  member.OnMasterControl(reply);
  EXPECT_TRUE(cx.joined);
  EXPECT_EQ(cx.host.value, 2);
  int64_t halted_at = 0;
  for (int64_t t = kSecond; t <= kSecond + 2 * c.dead_after_ns && halted_at == 0;
       t += c.dead_after_ns / 4) {
    member.ClockCheck(t);
    cx.now_ns = t;
    member.Beat(t);
    if (events.halts > 0) halted_at = t;
  }
  EXPECT_GT(halted_at - kSecond, c.dead_after_ns);  // not before the master was silent that long
  EXPECT_EQ(events.halts, 1);
  EXPECT_EQ(events.fences, 1);  // its tasks count as lost: killed at once
}

Frame ControlFrame(const ctl::Envelope& e) {
  Frame f;
  f.header.kind = FrameKind::kControl;
  f.payload = EncodeControl(e);
  return f;
}

TEST_F(MembershipTest, AHostDeclaredGoneThatSpeaksAgainIsToldOnceToKillItsTasksAndLeave) {
  Tick(kSecond);
  members_.OnMemberControl(7, Join("node2"));
  members_.OnPeerGone(7);  // declared gone
  ctl::Envelope beat = NewEnvelope();
  beat.mutable_heartbeat()->set_host(2);
  members_.FromStranger(9, ControlFrame(beat));  // its link, seen afresh after the drop
  members_.FromStranger(9, ControlFrame(beat));
  auto told = m_.env.PeerControls(9);
  ASSERT_EQ(told.size(), 1u);  // once
  EXPECT_TRUE(told[0].host_leave().fenced());
  EXPECT_FALSE(m_.cx.hosts.contains(2));  // and it does not come back by speaking
}

TEST_F(MembershipTest, ADeletedHostIsHeardUntilItsLinkClosesAndNotFenced) {
  Tick(kSecond);
  members_.OnMemberControl(7, Join("node2"));
  ASSERT_TRUE(members_.DeleteHost("node2", "deleted by the user"));
  EXPECT_TRUE(members_.Departing(7));  // its tasks' ends and last output still count
  EXPECT_TRUE(m_.env.dropped.empty());
  members_.OnPeerGone(7);
  EXPECT_FALSE(members_.Departing(7));
  EXPECT_EQ(m_.env.dropped, std::vector<PeerId>{7});
  int leaves = 0;
  for (const auto& e : m_.env.PeerControls(7))
    if (e.has_host_leave()) {
      ++leaves;
      EXPECT_FALSE(e.host_leave().fenced());  // the delete's, not a fence
    }
  EXPECT_EQ(leaves, 1);
}

TEST_F(MembershipTest, AStrangersJoinIsAdmitted) {
  Tick(kSecond);
  members_.FromStranger(7, ControlFrame(Join("node2")));
  auto replies = m_.env.PeerControls(7);
  ASSERT_EQ(replies.size(), 1u);
  EXPECT_EQ(replies[0].join_reply().code(), 0);
}

TEST_F(MembershipTest, AMemberToldItIsFencedKillsItsTasksAndHalts) {
  MemberSide side;
  auto& events = side.events;
  auto& member = side.member;
  ctl::Envelope leave = NewEnvelope();
  leave.mutable_host_leave()->set_reason("declared gone");
  leave.mutable_host_leave()->set_fenced(true);
  member.OnMasterControl(leave);
  EXPECT_EQ(events.fences, 1);
  leave.mutable_host_leave()->set_fenced(false);  // a plain `mpvm delete`: its tasks end cleanly
  member.OnMasterControl(leave);
  EXPECT_EQ(events.halts, 2);
  EXPECT_EQ(events.fences, 1);
}

}  // namespace
}  // namespace mpvm
