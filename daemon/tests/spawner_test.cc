// Unit tests of the spawner on a master's core context: no sockets, no processes.
#include "core/spawner.h"

#include <gtest/gtest.h>
#include <signal.h>

#include "fake_env.h"

namespace mpvm {
namespace {

constexpr int kTaskHost = 1, kTaskArch = 2, kHostCompl = 32;

ctl::SpawnRequest Request(const std::string& file, int n, int flags = 0,
                          const std::string& where = "") {
  ctl::SpawnRequest s;
  s.set_file(file);
  s.set_ntask(n);
  s.set_flags(flags);
  s.set_where(where);
  return s;
}

ctl::Envelope SpawnEnvelope(const ctl::SpawnRequest& s) {
  ctl::Envelope e = NewEnvelope();
  e.set_rid(5);
  *e.mutable_spawn() = s;
  return e;
}

class SpawnerTest : public ::testing::Test {
 protected:
  MasterContext m_;
  Spawner spawner_{m_.cx};
};

TEST_F(SpawnerTest, ChildEnvironmentPutsMpvmsVariablesOverTheSpawners) {
  m_.cx.cfg.base_env = {"HOME=/root", "MPVM_RANK=9"};
  m_.cx.cfg.libdir = "/opt/mpvm/lib";
  auto s = Request("a", 4);
  s.add_env("LD_LIBRARY_PATH=/mine");
  s.add_local_env("ONLY_HERE=1");
  s.set_rank_env(true);
  const Tid t = Tid::Make(HostIndex{1}, 5);
  auto env = spawner_.ChildEnv(s, t, 2, /*spawner_here=*/true);
  auto has = [&](const std::string& kv) { return std::ranges::find(env, kv) != env.end(); };
  EXPECT_TRUE(has("HOME=/root"));
  EXPECT_TRUE(has("ONLY_HERE=1"));
  EXPECT_TRUE(has("LD_LIBRARY_PATH=/opt/mpvm/lib:/mine"));
  EXPECT_TRUE(has("MPVM_RANK=2"));
  EXPECT_TRUE(has("MPVM_SIZE=4"));
  EXPECT_TRUE(has("MPVM_TID=" + std::to_string(t.raw())));
  auto elsewhere = spawner_.ChildEnv(s, t, 2, /*spawner_here=*/false);
  EXPECT_EQ(std::ranges::find(elsewhere, "ONLY_HERE=1"), elsewhere.end());
}

TEST_F(SpawnerTest, CandidatesFollowPvmsHostFlags) {
  m_.Admit(7, "node2");
  m_.Admit(8, "node3");
  EXPECT_EQ(*spawner_.SpawnCandidates(Request("a", 1)), (std::vector<int>{1, 2, 3}));
  EXPECT_EQ(*spawner_.SpawnCandidates(Request("a", 1, kTaskHost, "node3")), std::vector<int>{3});
  EXPECT_EQ(*spawner_.SpawnCandidates(Request("a", 1, kTaskHost | kHostCompl, "node2")),
            (std::vector<int>{1, 3}));
  auto none = spawner_.SpawnCandidates(Request("a", 1, kTaskHost, "nowhere"));
  ASSERT_FALSE(none.has_value());
  EXPECT_NE(none.error().find("no host 'nowhere'"), std::string::npos);
  EXPECT_FALSE(spawner_.SpawnCandidates(Request("a", 1, kTaskArch, "SPARC")).has_value());
}

TEST_F(SpawnerTest, ASpawnHereStartsEachRankAndAnswersWithTheirTids) {
  m_.cx.conns[3] = Conn{};
  spawner_.DoSpawn(3, Tid(), SpawnEnvelope(Request("worker", 3)));
  ASSERT_EQ(m_.env.spawned.size(), 3u);
  auto reply = m_.env.Controls(3);
  ASSERT_EQ(reply.size(), 1u);
  ASSERT_EQ(reply[0].spawn_reply().tids_size(), 3);
  for (int t : reply[0].spawn_reply().tids()) {
    ASSERT_GT(t, 0);
    EXPECT_TRUE(m_.cx.tasks.contains(Tid(t)));
    EXPECT_EQ(m_.cx.tasks.find(Tid(t))->second.siblings.size(), 3u);
  }
}

TEST_F(SpawnerTest, AHostThatDiesFailsTheRanksItWasAskedFor) {
  m_.Admit(7, "node2");
  m_.cx.conns[3] = Conn{};
  spawner_.DoSpawn(3, Tid(), SpawnEnvelope(Request("worker", 2)));  // round-robin: one each
  EXPECT_TRUE(m_.env.Controls(3).empty());                          // waits for node2's answer
  spawner_.HostGone(2);
  auto reply = m_.env.Controls(3);
  ASSERT_EQ(reply.size(), 1u);
  ASSERT_EQ(reply[0].spawn_reply().tids_size(), 2);
  EXPECT_GT(reply[0].spawn_reply().tids(0), 0);
  EXPECT_EQ(reply[0].spawn_reply().tids(1), PvmCode(Err::kHostFail));
}

TEST_F(SpawnerTest, AChildWaitingForItsSiblingsFromAHostThatDiesIsAnswered) {
  m_.Admit(7, "node2");
  ctl::RemoteSpawn rs;
  *rs.mutable_request() = Request("worker", 1);
  rs.set_spawner(Tid::Make(HostIndex{2}, 1).raw());
  rs.set_spawn_id(1);
  rs.add_ranks(0);
  spawner_.OnRemoteSpawn(Tid::DaemonOf(HostIndex{2}), rs);
  ASSERT_EQ(m_.cx.tasks.size(), 1u);
  Task& child = m_.cx.tasks.begin()->second;
  child.state = TaskState::kEnrolled;
  child.enrol_conn = 4;  // its pvm_mytid waits for the siblings
  child.enrol_rid = 9;
  spawner_.HostGone(2);
  EXPECT_FALSE(child.awaiting_siblings);
  auto replies = m_.env.Controls(4);
  ASSERT_EQ(replies.size(), 1u);
  EXPECT_EQ(replies[0].enrol_reply().siblings_size(), 1);  // only itself
}

TEST_F(SpawnerTest, AJobEndsWithItsSpawner) {
  const Tid prun = Tid::Make(HostIndex{1}, 99);
  Task spawner_task;
  spawner_task.tid = prun;
  spawner_task.state = TaskState::kEnrolled;
  m_.cx.tasks.Add(spawner_task);
  m_.cx.conns[3].tid = prun;
  auto s = Request("worker", 2);
  s.set_end_with_spawner(true);
  spawner_.DoSpawn(3, prun, SpawnEnvelope(s));
  ASSERT_EQ(m_.env.spawned.size(), 2u);
  spawner_.ForgetJobTask(m_.env.Controls(3)[0].spawn_reply().tids(0));  // one ended by itself
  spawner_.EndJob(prun);
  ASSERT_EQ(m_.env.signals.size(), 1u);
  EXPECT_EQ(m_.env.signals[0].second, SIGTERM);
}

}  // namespace
}  // namespace mpvm
