// Unit tests of a move's destination and of the master's registry.
#include "core/move_destination.h"

#include <gtest/gtest.h>

#include "fake_env.h"

namespace mpvm {
namespace {

ctl::MigrateOffer Offer(Tid t, uint64_t id) {
  ctl::MigrateOffer o;
  o.set_tid(t.raw());
  o.set_id(id);
  o.set_path("worker");
  o.add_argv("worker");
  o.set_cwd("/");
  return o;
}

class MoveDestinationTest : public ::testing::Test {
 protected:
  MoveDestinationTest() { m_.Admit(7, "node2"); }
  // An offer from host 2 for its task; returns the accept sent back.
  ctl::MigrateAccept Offered(Tid t, uint64_t id) {
    FrameHeader h = ControlHeader(Tid::DaemonOf(HostIndex{2}).raw(), m_.cx.host_tid().raw());
    dest_.OnOffer(h, Offer(t, id));
    auto sent = m_.env.PeerControls(7);
    EXPECT_FALSE(sent.empty());
    return sent.empty() ? ctl::MigrateAccept() : sent.back().migrate_accept();
  }
  MasterContext m_;
  MoveDestination dest_{m_.cx};
  const Tid task_ = Tid::Make(HostIndex{2}, 4);
};

TEST_F(MoveDestinationTest, AnOfferStartsARestoreAndAnswersWithItsPortAndToken) {
  auto a = Offered(task_, 0x20000000001);
  EXPECT_EQ(a.code(), 0);
  EXPECT_EQ(a.port(), 40000);
  EXPECT_EQ(a.token().size(), 32u);
  ASSERT_EQ(m_.env.restores.size(), 1u);
  EXPECT_FALSE(m_.cx.LocalTask(task_));  // not the task until the commit
}

// The source freezes its task on the accept: with a restore process that
// says when it waits for the image, the accept waits for that, so that the
// process's start (exec, dynamic linking) is not part of the blackout.
TEST_F(MoveDestinationTest, TheAcceptWaitsUntilTheRestoreProcessIsReady) {
  m_.env.restore_says_ready = true;
  FrameHeader h = ControlHeader(Tid::DaemonOf(HostIndex{2}).raw(), m_.cx.host_tid().raw());
  dest_.OnOffer(h, Offer(task_, 0x20000000001));
  ASSERT_EQ(m_.env.restores.size(), 1u);
  EXPECT_TRUE(m_.env.PeerControls(7).empty());
  dest_.OnRestoreReady(task_);
  auto sent = m_.env.PeerControls(7);
  ASSERT_EQ(sent.size(), 1u);
  EXPECT_EQ(sent[0].migrate_accept().code(), 0);
  EXPECT_EQ(sent[0].migrate_accept().id(), 0x20000000001u);
  EXPECT_EQ(sent[0].migrate_accept().port(), 40000);
  EXPECT_EQ(sent[0].migrate_accept().token().size(), 32u);
  dest_.OnRestoreReady(task_);  // once only
  EXPECT_EQ(m_.env.PeerControls(7).size(), 1u);
}

TEST_F(MoveDestinationTest, ARestoreThatEndsBeforeItIsReadyRefusesTheMove) {
  m_.env.restore_says_ready = true;
  FrameHeader h = ControlHeader(Tid::DaemonOf(HostIndex{2}).raw(), m_.cx.host_tid().raw());
  dest_.OnOffer(h, Offer(task_, 0x20000000001));
  Task& copy = m_.cx.tasks.find(task_)->second;
  copy.exited = true;
  copy.exit_code = 127;
  dest_.OnRestoreEnded(task_);
  auto sent = m_.env.PeerControls(7);
  ASSERT_EQ(sent.size(), 1u);
  EXPECT_LT(sent[0].migrate_accept().code(), 0);
  EXPECT_NE(sent[0].migrate_accept().detail().find("ended before it was ready"), std::string::npos);
  EXPECT_EQ(copy.move_id, 0u);  // nothing left to wait for: the copy can be forgotten
  dest_.OnRestoreReady(task_);  // too late: nothing more is sent
  EXPECT_EQ(m_.env.PeerControls(7).size(), 1u);
}

TEST_F(MoveDestinationTest, ACommitMakesTheCopyTheTaskAndItsHeldOutputFollows) {
  Offered(task_, 0x20000000001);
  m_.cx.tasks.find(task_)->second.held_output = "before\n";
  ctl::TaskMoved moved;
  moved.set_tid(task_.raw());
  moved.set_host(1);
  moved.set_from(2);
  dest_.OnTaskMoved(moved);
  EXPECT_TRUE(m_.cx.LocalTask(task_));
  EXPECT_EQ(m_.events.output, "before\n");
  EXPECT_EQ(m_.events.ready, std::vector<Tid>{task_});
}

TEST_F(MoveDestinationTest, TheRegistryReportsATaskCommittedToADeadHostLost) {
  ctl::TaskMoved moved;
  moved.set_tid(task_.raw());
  moved.set_host(9);  // not in the VM
  dest_.OnTaskMoved(moved);
  EXPECT_EQ(m_.events.lost, std::vector<int>{task_.raw()});
  EXPECT_FALSE(m_.cx.where.contains(task_.raw()));
}

TEST_F(MoveDestinationTest, AnAbandonedRestoreIsKilled) {
  Offered(task_, 0x20000000001);
  ctl::MigrateAbort abort;
  abort.set_tid(task_.raw());
  abort.set_id(0x20000000001);
  abort.set_why("the source gave up");
  dest_.OnAbort(abort);
  ASSERT_EQ(m_.env.signals.size(), 1u);
  EXPECT_EQ(m_.env.signals[0].second, SIGKILL);
}

TEST_F(MoveDestinationTest, ARestoreNeverCommittedIsDroppedAtItsDeadline) {
  Offered(task_, 0x20000000001);
  m_.cx.now_ns += 29'000'000'000;
  dest_.CheckRestores();
  EXPECT_TRUE(m_.env.signals.empty());
  m_.cx.now_ns += 2'000'000'000;
  dest_.CheckRestores();
  EXPECT_EQ(m_.env.signals.size(), 1u);
}

TEST_F(MoveDestinationTest, ATaskMovingFromADeadHostIsLostIfItDoesNotArrive) {
  m_.cx.where.BeginTransit(task_.raw(), 2, 3, 0);
  std::set<int> lost = {task_.raw()};
  m_.cx.where.HostGone(2, &lost, 0);
  EXPECT_TRUE(lost.empty());
  m_.cx.now_ns = LocationRegistry::kLimboNs + 1;
  dest_.CheckLimbo();
  EXPECT_EQ(m_.events.lost, std::vector<int>{task_.raw()});
}

}  // namespace
}  // namespace mpvm
