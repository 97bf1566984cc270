// Unit tests of a move at its source: the offer, the answers, the time-outs,
// the commit — on a master's core context, no sockets.
#include "core/move_source.h"

#include <gtest/gtest.h>

#include "fake_env.h"

namespace mpvm {
namespace {

constexpr PeerId kNode2 = 7;

class MoveSourceTest : public ::testing::Test {
 protected:
  MoveSourceTest() {
    m_.Admit(kNode2, "node2");
    Task t;
    t.tid = task_;
    t.pid = 4242;
    t.spawned = true;
    t.state = TaskState::kEnrolled;
    t.conn = 3;
    m_.cx.tasks.Add(t);
    m_.cx.conns[3].tid = task_;
  }
  // The last control message sent to node2.
  ctl::Envelope ToNode2() {
    auto all = m_.env.PeerControls(kNode2);
    EXPECT_FALSE(all.empty());
    return all.empty() ? ctl::Envelope() : all.back();
  }
  uint64_t Offered() {
    source_.RequestBalancerMove(task_, 2);
    return ToNode2().migrate_offer().id();
  }
  void Accept(uint64_t id, int code = 0) {
    ctl::MigrateAccept a;
    a.set_id(id);
    a.set_tid(task_.raw());
    a.set_code(code);
    a.set_port(40000);
    a.set_token(std::string(32, 'k'));
    source_.OnAccept(a);
  }
  MasterContext m_;
  Forwarder forwarder_{m_.cx};
  MoveSource source_{m_.cx, forwarder_};
  const Tid task_ = Tid::Make(HostIndex{1}, 5);
};

TEST_F(MoveSourceTest, AMoveStartsWithAnOfferOfWhatTheDestinationNeeds) {
  m_.cx.tasks.find(task_)->second.spec.path = "/bin/worker";
  source_.RequestBalancerMove(task_, 2);
  auto offer = ToNode2().migrate_offer();
  EXPECT_EQ(offer.tid(), task_.raw());
  EXPECT_EQ(offer.path(), "/bin/worker");
  EXPECT_NE(m_.cx.tasks.find(task_)->second.move_id, 0u);
}

TEST_F(MoveSourceTest, AnAcceptedOfferAsksTheTaskToStop) {
  Accept(Offered());
  ASSERT_EQ(m_.env.begun.size(), 1u);
  EXPECT_EQ(m_.env.begun[0].first, task_);
  EXPECT_EQ(m_.env.begun[0].second, "127.0.0.1:40000");  // node2 joined with no address
}

TEST_F(MoveSourceTest, ARefusedOfferEndsTheMoveAndTheTaskMayMoveAgain) {
  Accept(Offered(), PvmCode(Err::kNoFile));
  EXPECT_TRUE(m_.env.begun.empty());
  EXPECT_EQ(m_.cx.tasks.find(task_)->second.move_id, 0u);
  const uint64_t again = Offered();
  EXPECT_NE(again, 0u);
}

TEST_F(MoveSourceTest, AMoveThatDoesNotHappenReachesTheLoadService) {
  Accept(Offered(), PvmCode(Err::kNoFile));
  EXPECT_EQ(m_.cx.load.failures_to(2), 1);
  EXPECT_EQ(m_.cx.load.failures_to(1), 0);
}

TEST_F(MoveSourceTest, AnOfferUnansweredInTimeFailsAndTheDestinationIsToldToDropIt) {
  Offered();
  m_.cx.now_ns += 10'000'000'001;
  source_.CheckMoveTimeouts();
  EXPECT_EQ(m_.env.cancelled, std::vector<Tid>{task_});
  EXPECT_TRUE(ToNode2().has_migrate_abort());
  EXPECT_EQ(m_.cx.tasks.find(task_)->second.move_id, 0u);
}

TEST_F(MoveSourceTest, ACommitTellsTheRegistryAndStartsForwarding) {
  Accept(Offered());
  source_.OnMoveFrozen(task_);
  ASSERT_TRUE(source_.MayCommit(task_));
  const ConnId c = source_.OnMoveCommitted(task_, MoveTimes{1 << 20, 1000, 2000, 3000, false});
  EXPECT_EQ(c, 3u);
  ASSERT_EQ(m_.events.committed.size(), 1u);
  EXPECT_EQ(m_.events.committed[0].host(), 2);
  EXPECT_EQ(m_.events.committed[0].bytes(), 1u << 20);
  EXPECT_FALSE(m_.cx.tasks.contains(task_));
  EXPECT_EQ(m_.cx.where.At(task_.raw()), 2);
  EXPECT_EQ(forwarder_.size(), 1u);
}

TEST_F(MoveSourceTest, NoCommitToADestinationThatLeft) {
  Accept(Offered());
  source_.OnMoveFrozen(task_);
  m_.cx.hosts.Remove(2);
  EXPECT_FALSE(source_.MayCommit(task_));
}

TEST_F(MoveSourceTest, ATaskThatEndsBeforeItStopsFailsItsMove) {
  Accept(Offered());
  source_.TaskEnded(task_);
  EXPECT_EQ(m_.env.cancelled, std::vector<Tid>{task_});
  EXPECT_EQ(m_.cx.tasks.find(task_)->second.move_id, 0u);
}

TEST_F(MoveSourceTest, ATaskStartedByHandCannotMove) {
  m_.cx.tasks.find(task_)->second.spawned = false;
  source_.RequestBalancerMove(task_, 2);
  EXPECT_TRUE(m_.env.PeerControls(kNode2).empty() ||
              !m_.env.PeerControls(kNode2).back().has_migrate_offer());
  EXPECT_EQ(m_.cx.tasks.find(task_)->second.move_id, 0u);
}

// A balancer's order refused for a passing reason fails that order only;
// the task stays a candidate. Pinned for it, a task whose spawn was not
// complete at the first decision stayed on a slow host to the end.
TEST_F(MoveSourceTest, ABalancerMoveRefusedForAPassingReasonDoesNotPinTheTask) {
  Task& task = m_.cx.tasks.find(task_)->second;
  task.awaiting_siblings = true;
  source_.RequestBalancerMove(task_, 2);
  EXPECT_EQ(task.move_id, 0u);
  EXPECT_TRUE(task.pinned_why.empty());
  EXPECT_EQ(m_.cx.load.failures_to(2), 1);  // the balancer hears it
  task.awaiting_siblings = false;
  EXPECT_NE(Offered(), 0u);  // and may order it again
}

TEST_F(MoveSourceTest, ABalancerMoveRefusedForALastingReasonPinsTheTask) {
  Task& task = m_.cx.tasks.find(task_)->second;
  task.spec.stdin_path = "/proc/1/fd/0";
  source_.RequestBalancerMove(task_, 2);
  EXPECT_EQ(task.move_id, 0u);
  EXPECT_NE(task.pinned_why.find("standard input"), std::string::npos);
}

}  // namespace
}  // namespace mpvm
