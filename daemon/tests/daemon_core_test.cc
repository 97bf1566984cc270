// Unit tests of the daemon's logic: no sockets, no processes, no sleeps.
#include "daemon_core.h"

#include <gtest/gtest.h>
#include <signal.h>

#include "fake_env.h"
#include "mpvm/control.h"

namespace mpvm {
namespace {

class DaemonCoreTest : public ::testing::Test {
 protected:
  DaemonCoreTest() : core_(Config(), &env_) {}
  static DaemonConfig Config() {
    DaemonConfig c;
    c.hostname = "node1";
    c.rundir = "/run/x";
    c.libdir = "/opt/mpvm/lib";
    c.base_env = {"HOME=/root", "LD_LIBRARY_PATH=/usr/lib/other"};
    return c;
  }

  void Control(ConnId c, ctl::Envelope e, uint64_t rid = 1) {
    e.set_version(kControlVersion);
    e.set_rid(rid);
    Frame f;
    f.header = ControlHeader(0, 0);
    f.payload = EncodeControl(e);
    core_.OnFrame(c, std::move(f));
  }
  ctl::Envelope Last(ConnId c) {
    auto all = env_.Controls(c);
    EXPECT_FALSE(all.empty());
    return all.empty() ? ctl::Envelope() : all.back();
  }
  // Connects and enrols a task; returns its tid.
  Tid Enrol(ConnId c, int tid = 0, int pid = 1, bool tool = false) {
    core_.OnAccept(c);
    ctl::Envelope e;
    e.mutable_enrol()->set_tid(tid);
    e.mutable_enrol()->set_pid(pid);
    e.mutable_enrol()->set_is_tool(tool);
    Control(c, e);
    return Tid(Last(c).enrol_reply().tid());
  }
  std::vector<int> Spawn(ConnId c, const std::string& file, int n, int flags = 0,
                         const std::string& where = "") {
    ctl::Envelope e;
    auto* s = e.mutable_spawn();
    s->set_file(file);
    s->set_ntask(n);
    s->set_flags(flags);
    s->set_where(where);
    s->set_report_exit(true);
    Control(c, e);
    auto r = Last(c);
    return {r.spawn_reply().tids().begin(), r.spawn_reply().tids().end()};
  }
  Frame DataFrame(Tid src, Tid dst, int tag, uint64_t seq) {
    Frame f;
    f.header.kind = FrameKind::kData;
    f.header.src = src.raw();
    f.header.dst = dst.raw();
    f.header.tag = tag;
    f.header.seq = seq;
    f.payload = {1, 2, 3, 4};
    f.header.length = 4;
    return f;
  }
  // Ends a spawned task: process exit plus both output pipes closed.
  void End(Tid t, int code = 0, int sig = 0) {
    core_.OnProcessExit(t, code, sig);
    core_.OnOutputClosed(t);
    core_.OnOutputClosed(t);
  }

  // Moves task `t` to member b (peer 100) through the whole protocol, asked
  // from connection 1 (rid 7); the destination's side is faked.
  void MoveToB(Tid t);
  // Member b (peer 100) says task `tid` ended there.
  void TaskGoneAtB(int tid);

  FakeEnv env_;
  DaemonCore core_;
};

TEST_F(DaemonCoreTest, HandStartedTaskGetsATidAndNoParent) {
  Tid t = Enrol(1);
  EXPECT_EQ(t, Tid::Make(HostIndex{1}, 1));
  auto r = Last(1).enrol_reply();
  EXPECT_EQ(r.code(), 0);
  EXPECT_EQ(r.ptid(), 0);
  EXPECT_EQ(r.host_tid(), 0x40000);
  EXPECT_EQ(r.host_name(), "node1");
}

// A daemon ticks at every wake-up; relaying frames wakes it thousands of
// times a second. Reading /proc for every task each time cost a moving ring
// more CPU than the moves: tasks are sampled every 0.1 s, however often the
// daemon ticks.
TEST_F(DaemonCoreTest, TasksAreSampledEveryTenthOfASecondHoweverOftenTheDaemonTicks) {
  Enrol(1, 0, /*pid=*/4242);
  for (int64_t t = 1'000'000; t <= 1'000'000 + 1'000'000'000; t += 1'000'000) core_.OnTick(t);
  EXPECT_GE(env_.sampled[4242], 10);  // every 0.1 s of the 1 s ticked through
  EXPECT_LE(env_.sampled[4242], 11);  // not at each of its 1001 ticks
}

// A starting task is often found blocked in its first PVM calls; counted as
// nothing, its host drew moves in that had to go out again once it ran.
TEST_F(DaemonCoreTest, AStartingTaskCountsAsLoadUntilItIsOlderThanTheMinimumAge) {
  Tid parent = Enrol(1);
  auto kids = Spawn(1, "worker", 1);
  ASSERT_EQ(kids.size(), 1u);
  const int pid = 1000 + static_cast<int>(env_.spawned.size());  // FakeEnv::Spawn's pid
  env_.samples[pid] = {.ok = true, .runnable = false, .cpu_ns = 0, .rss_bytes = 4096};
  const auto ready = [&]() -> double {
    for (const auto& t : core_.LoadSnapshot().tasks)
      if (t.tid == kids[0]) return t.ready;
    return -1;
  };
  for (int64_t t = 100'000'000; t <= 900'000'000; t += 100'000'000) core_.OnTick(t);
  EXPECT_EQ(ready(), 1);  // younger than the minimum age (1 s): starting
  for (int64_t t = 1'000'000'000; t <= 4'000'000'000; t += 100'000'000) core_.OnTick(t);
  EXPECT_LT(ready(), 0.5);  // blocked ever since
  (void)parent;
}

// In virtual-work mode a task sleeps while it works: it is ready while it
// is inside mpvm_work. One that works and rests in turns (E4's background
// tasks) counts for the share of time it works, not for its phase of the
// moment: counted by its phase, a host whose task rested for a tenth of a
// second looked idle and drew a move that had to go out again.
TEST(DaemonCoreVirtualWork, ATaskThatWorksAndRestsInTurnsCountsForTheTimeItWorks) {
  DaemonConfig cfg;
  cfg.hostname = "node1";
  cfg.rundir = "/run/x";
  cfg.virtual_work = true;
  FakeEnv env;
  DaemonCore core(cfg, &env);
  core.OnAccept(1);
  ctl::Envelope e;
  e.set_version(kControlVersion);
  e.mutable_enrol()->set_pid(77);
  Frame f{.header = ControlHeader(0, 0), .payload = EncodeControl(e)};
  core.OnFrame(1, std::move(f));
  const auto work = [&](bool on) {
    ctl::Envelope w;
    w.set_version(kControlVersion);
    w.mutable_work()->set_working(on);
    core.OnFrame(1, Frame{.header = ControlHeader(0, 0), .payload = EncodeControl(w)});
  };
  env.samples[77] = {.ok = true, .runnable = false};  // asleep, as virtual work is
  int64_t now = 2'000'000'000;                        // older than the minimum age
  for (int cycle = 0; cycle < 40; ++cycle) {          // 0.3 s working, 0.3 s resting
    for (bool on : {true, false}) {
      work(on);
      for (int i = 0; i < 3; ++i) core.OnTick(now += 100'000'000);
    }
  }
  for (bool on : {true, false}) {  // whatever its phase, about a half
    work(on);
    core.OnTick(now += 100'000'000);
    const auto snap = core.LoadSnapshot();
    ASSERT_EQ(snap.tasks.size(), 1u);
    EXPECT_NEAR(snap.tasks[0].ready, 0.5, 0.15);
  }
}

// Work that is not ours (another user's processes) counts against the host
// in the balancer's snapshot, averaged like the tasks' readiness.
TEST_F(DaemonCoreTest, BackgroundLoadIsAveragedIntoTheHostsReport) {
  Enrol(1, 0, 1, /*tool=*/true);
  env_.background = 2;
  for (int64_t t = 100'000'000; t <= 10'000'000'000; t += 100'000'000) core_.OnTick(t);
  const auto snap = core_.LoadSnapshot();
  ASSERT_EQ(snap.hosts.size(), 1u);
  EXPECT_NEAR(snap.hosts[0].background, 2, 0.1);
  EXPECT_NEAR(snap.Work(snap.hosts[0].host), 2, 0.1);  // the enrolled task is a tool: no load
  env_.background = 0;
  for (int64_t t = 10'100'000'000; t <= 11'000'000'000; t += 100'000'000) core_.OnTick(t);
  const double fading = core_.LoadSnapshot().hosts[0].background;
  EXPECT_GT(fading, 1);  // one second of quiet does not make an idle host
  EXPECT_LT(fading, 2);
}

TEST_F(DaemonCoreTest, SpawnStartsNTasksThatKnowParentAndSiblings) {
  Tid parent = Enrol(1);
  auto tids = Spawn(1, "worker", 3);
  ASSERT_EQ(tids.size(), 3u);
  ASSERT_EQ(env_.spawned.size(), 3u);
  const SpawnSpec& s = env_.spawned[1];
  EXPECT_EQ(s.path, "/bin/worker");
  EXPECT_EQ(s.argv[0], "worker");
  auto has = [&](const std::string& kv) {
    return std::find(s.env.begin(), s.env.end(), kv) != s.env.end();
  };
  EXPECT_TRUE(has("MPVM_TID=" + std::to_string(tids[1])));
  EXPECT_TRUE(has("MPVM_RUNDIR=/run/x"));
  EXPECT_TRUE(has("LD_LIBRARY_PATH=/opt/mpvm/lib:/usr/lib/other"));  // ours first
  // The child enrols with its tid and pid.
  Tid child = Enrol(2, tids[1], 1002);
  EXPECT_EQ(child.raw(), tids[1]);
  auto r = Last(2).enrol_reply();
  EXPECT_EQ(r.ptid(), parent.raw());
  EXPECT_EQ(std::vector<int>(r.siblings().begin(), r.siblings().end()), tids);
}

TEST_F(DaemonCoreTest, SpawnErrorsArePerSlotCodes) {
  Enrol(1);
  EXPECT_EQ(Spawn(1, "missing", 2), (std::vector<int>{-7, -7}));  // PvmNoFile
  EXPECT_EQ(Spawn(1, "w", 1, /*PvmTaskHost*/ 1, "elsewhere"), (std::vector<int>{-6}));
  EXPECT_EQ(Spawn(1, "w", 1, /*PvmTaskArch*/ 2, "SUN4"), (std::vector<int>{-6}));
  env_.fail_spawn = true;
  EXPECT_EQ(Spawn(1, "w", 2), (std::vector<int>{-27, -27}));
  ctl::Envelope bad;
  bad.mutable_spawn()->set_file("w");
  bad.mutable_spawn()->set_ntask(0);
  Control(1, bad);
  EXPECT_EQ(Last(1).status().code(), -2);
}

TEST_F(DaemonCoreTest, RelayHoldsFramesUntilTheTaskEnrols) {
  Tid a = Enrol(1);
  auto tids = Spawn(1, "w", 1);
  core_.OnFrame(1, DataFrame(a, Tid(tids[0]), 7, 1));
  core_.OnFrame(1, DataFrame(a, Tid(tids[0]), 8, 2));
  Enrol(2, tids[0], 1001);
  auto data = env_.Data(2);
  ASSERT_EQ(data.size(), 2u);
  EXPECT_EQ(data[0].h.tag, 7);
  EXPECT_EQ(data[1].h.tag, 8);
  EXPECT_TRUE(data[0].h.flags & kFrameFlagRelayed);
}

TEST_F(DaemonCoreTest, ForgedSourceIsDroppedAndCounted) {
  Tid a = Enrol(1);
  Tid b = Enrol(2);
  core_.OnFrame(1, DataFrame(Tid(0x40099), b, 1, 1));
  EXPECT_TRUE(env_.Data(2).empty());
  EXPECT_EQ(core_.bad_frames(), 1u);
  (void)a;
}

TEST_F(DaemonCoreTest, GarbageControlIsLoggedAndTheConnectionSurvives) {
  Enrol(1);
  Frame f;
  f.header = ControlHeader(0, 0);
  f.payload = {0xff, 0xff, 0xff};
  core_.OnFrame(1, std::move(f));
  EXPECT_EQ(core_.bad_frames(), 1u);
  EXPECT_TRUE(env_.closed.empty());
  ctl::Envelope e;
  e.mutable_config();
  Control(1, e, 9);
  EXPECT_EQ(Last(1).config_reply().hosts_size(), 1);
}

TEST_F(DaemonCoreTest, TaskExitNotifiesWatchersAndSpawner) {
  Tid a = Enrol(1);
  auto tids = Spawn(1, "w", 1);
  Enrol(2, tids[0], 1001);
  ctl::Envelope n;
  n.mutable_notify()->set_what(1);
  n.mutable_notify()->set_tag(99);
  n.mutable_notify()->add_tids(tids[0]);
  Control(1, n);
  EXPECT_EQ(Last(1).status().code(), 0);
  End(Tid(tids[0]), 3);
  auto data = env_.Data(1);
  ASSERT_EQ(data.size(), 1u);
  EXPECT_EQ(data[0].h.tag, 99);
  Message m = Message::FromWire(0, data[0].payload, data[0].h.aux_length);
  int who = 0;
  ASSERT_TRUE(m.Unpack(DataType::kInt, &who, 1, 1));
  EXPECT_EQ(who, tids[0]);
  auto ended = Last(1);
  ASSERT_TRUE(ended.has_task_ended());
  EXPECT_EQ(ended.task_ended().exit_code(), 3);
  EXPECT_EQ(env_.removed.back(), Tid(tids[0]));
  EXPECT_EQ(core_.task_count(), 1u);
  (void)a;
}

TEST_F(DaemonCoreTest, NotifyOnAGoneTaskFiresAtOnce) {
  Enrol(1);
  ctl::Envelope n;
  n.mutable_notify()->set_what(1);
  n.mutable_notify()->set_tag(5);
  n.mutable_notify()->add_tids(0x40077);
  Control(1, n);
  ASSERT_EQ(env_.Data(1).size(), 1u);
}

TEST_F(DaemonCoreTest, OutputWaitsForBothPipesBeforeTheTaskEnds) {
  Enrol(1);
  ctl::Envelope e;
  auto* s = e.mutable_spawn();
  s->set_file("w");
  s->set_ntask(1);
  s->set_output_tid(0x40001);
  s->set_output_code(11);
  s->set_report_exit(true);
  Control(1, e);
  Tid t(Last(1).spawn_reply().tids(0));
  core_.OnProcessExit(t, 0, 0);
  core_.OnOutput(t, "last words\n");  // arrives after the exit: still delivered
  core_.OnOutputClosed(t);
  EXPECT_FALSE(Last(1).has_task_ended());
  core_.OnOutputClosed(t);
  EXPECT_TRUE(Last(1).has_task_ended());
  auto data = env_.Data(1);
  ASSERT_EQ(data.size(), 3u);  // start (-1), the line, EOF (0)
  int head[2];
  Message last = Message::FromWire(0, data[2].payload, data[2].h.aux_length);
  ASSERT_TRUE(last.Unpack(DataType::kInt, head, 2, 1));
  EXPECT_EQ(head[1], 0);
}

TEST_F(DaemonCoreTest, MailboxSemantics) {
  Tid a = Enrol(1);
  Enrol(2);
  auto put = [&](ConnId c, const std::string& name, int flags) {
    ctl::Envelope e;
    e.mutable_mbox_put()->set_name(name);
    e.mutable_mbox_put()->set_flags(flags);
    e.mutable_mbox_put()->set_data("x");
    Control(c, e);
    return Last(c).status().code();
  };
  auto get = [&](ConnId c, const std::string& name, int index, int flags) {
    ctl::Envelope e;
    e.mutable_mbox_get()->set_name(name);
    e.mutable_mbox_get()->set_index(index);
    e.mutable_mbox_get()->set_flags(flags);
    Control(c, e);
    return Last(c).mbox_get_reply().code();
  };
  EXPECT_EQ(put(1, "svc", 0), 0);
  EXPECT_EQ(put(2, "svc", 0), -33);  // PvmExists
  EXPECT_EQ(put(1, "multi", 2), 0);  // PvmMboxMultiInstance
  EXPECT_EQ(put(2, "multi", 2), 1);
  EXPECT_EQ(get(2, "svc", 0, 0), 0);
  EXPECT_EQ(get(2, "nope", 0, 0), -32);  // PvmNotFound
  EXPECT_EQ(get(2, "multi", 1, 8), 1);   // first available from 1
  EXPECT_EQ(get(2, "svc", 0, 16), -8);   // read-and-delete of a locked entry: PvmDenied
  // The owner leaves: its non-persistent entries go.
  core_.OnClose(1);
  EXPECT_EQ(get(2, "svc", 0, 0), -32);
  (void)a;
}

TEST_F(DaemonCoreTest, WaitForInfoRepliesWhenTheEntryAppears) {
  Enrol(1);
  Enrol(2);
  ctl::Envelope g;
  g.mutable_mbox_get()->set_name("late");
  g.mutable_mbox_get()->set_flags(32);
  Control(2, g, 77);
  EXPECT_TRUE(env_.Controls(2).size() == 1);  // only the enrol reply so far
  ctl::Envelope p;
  p.mutable_mbox_put()->set_name("late");
  p.mutable_mbox_put()->set_data("v");
  Control(1, p);
  auto r = Last(2);
  EXPECT_EQ(r.rid(), 77u);
  EXPECT_EQ(r.mbox_get_reply().data(), "v");
}

TEST_F(DaemonCoreTest, GroupsAndBarrier) {
  Tid a = Enrol(1);
  Tid b = Enrol(2);
  auto op = [&](ConnId c, ctl::GroupRequest::Op o, int arg = 0, uint64_t rid = 1) {
    ctl::Envelope e;
    e.mutable_group()->set_op(o);
    e.mutable_group()->set_group("g");
    e.mutable_group()->set_arg(arg);
    Control(c, e, rid);
  };
  op(1, ctl::GroupRequest::JOIN);
  EXPECT_EQ(Last(1).group_reply().code(), 0);
  op(2, ctl::GroupRequest::JOIN);
  EXPECT_EQ(Last(2).group_reply().code(), 1);
  op(2, ctl::GroupRequest::JOIN);
  EXPECT_EQ(Last(2).group_reply().code(), -18);  // PvmDupGroup
  op(1, ctl::GroupRequest::GETTID, 1);
  EXPECT_EQ(Last(1).group_reply().code(), b.raw());
  op(1, ctl::GroupRequest::GETINST, a.raw());
  EXPECT_EQ(Last(1).group_reply().code(), 0);
  op(1, ctl::GroupRequest::GETTID, 5);
  EXPECT_EQ(Last(1).group_reply().code(), -21);  // PvmNoInst
  size_t before = env_.Controls(1).size();
  op(1, ctl::GroupRequest::BARRIER, -1, 50);
  EXPECT_EQ(env_.Controls(1).size(), before);  // waits for b
  op(2, ctl::GroupRequest::BARRIER, -1, 51);
  EXPECT_EQ(Last(1).rid(), 50u);
  EXPECT_EQ(Last(2).rid(), 51u);
  op(1, ctl::GroupRequest::LEAVE);
  op(2, ctl::GroupRequest::SIZE);
  EXPECT_EQ(Last(2).group_reply().code(), 1);
}

TEST_F(DaemonCoreTest, AJobEndsWhenItsSpawnerDisconnectsWithoutWaiting) {
  Enrol(1, 0, 500, /*tool=*/true);  // prun, on a shared VM
  ctl::Envelope e;
  auto* sp = e.mutable_spawn();
  sp->set_file("w");
  sp->set_ntask(2);
  sp->set_end_with_spawner(true);
  Control(1, e);
  const auto r = Last(1).spawn_reply();
  ASSERT_EQ(r.tids_size(), 2);
  Enrol(2, r.tids(0), 1001);
  Enrol(3, r.tids(1), 1002);
  End(Tid(r.tids(1)));  // one ended already: it is not signalled
  core_.OnClose(1);     // prun was killed outright
  std::vector<std::pair<int, int>> want = {{1001, SIGTERM}};
  EXPECT_EQ(env_.signals, want);
}

TEST_F(DaemonCoreTest, AJobSpawnedWithoutEndWithSpawnerOutlivesItsSpawner) {
  Enrol(1, 0, 500, /*tool=*/true);
  auto tids = Spawn(1, "w", 1);
  Enrol(2, tids[0], 1001);
  core_.OnClose(1);
  EXPECT_TRUE(env_.signals.empty());
}

TEST_F(DaemonCoreTest, HaltSignalsTasksButNotTools) {
  Enrol(1, 0, 500, /*tool=*/true);
  auto tids = Spawn(1, "w", 2);
  ctl::Envelope h;
  h.mutable_halt();
  Control(1, h);
  EXPECT_TRUE(env_.shutdown);
  EXPECT_EQ(env_.signals.size(), 2u);
  for (auto [pid, sig] : env_.signals) {
    EXPECT_NE(pid, 500);
    EXPECT_EQ(sig, SIGTERM);
  }
}

TEST_F(DaemonCoreTest, EmbeddedOwnerLeavingHaltsTheVm) {
  DaemonConfig c = Config();
  c.embedded = true;
  FakeEnv env;
  DaemonCore core(c, &env);
  core.OnAccept(1);
  ctl::Envelope e;
  e.set_version(kControlVersion);
  e.mutable_enrol()->set_claim_owner(true);
  Frame f;
  f.header = ControlHeader(0, 0);
  f.payload = EncodeControl(e);
  core.OnFrame(1, std::move(f));
  core.OnClose(1);
  EXPECT_TRUE(env.shutdown);
}

TEST_F(DaemonCoreTest, KillAndPstatOfUnknownTasks) {
  Enrol(1);
  ctl::Envelope k;
  k.mutable_kill()->set_tid(0x40055);
  Control(1, k);
  EXPECT_EQ(Last(1).status().code(), -31);
  ctl::Envelope p;
  p.mutable_pstat()->set_tid(0x40001);
  Control(1, p);
  EXPECT_EQ(Last(1).status().code(), 0);
}

// ---- Multi-host: join, table, heartbeats, failures (no sockets) -------------

Frame PeerControl(ctl::Envelope e) {
  e.set_version(kControlVersion);
  Frame f;
  f.header = ControlHeader(0, 0);
  f.payload = EncodeControl(e);
  return f;
}

ctl::Envelope JoinAs(const std::string& name, int speed = 1000) {
  ctl::Envelope e;
  e.mutable_join()->set_name(name);
  e.mutable_join()->set_arch("LINUX64");
  e.mutable_join()->set_speed(speed);
  return e;
}

TEST_F(DaemonCoreTest, MasterAdmitsMembersAndSharesTheTable) {
  core_.OnTick(0);
  core_.OnPeerFrame(100, PeerControl(JoinAs("b", 2000)));
  auto r = env_.PeerControls(100).back();
  ASSERT_TRUE(r.has_join_reply());
  EXPECT_EQ(r.join_reply().host(), 2);
  EXPECT_EQ(r.join_reply().table().hosts_size(), 2);
  core_.OnPeerFrame(101, PeerControl(JoinAs("c")));
  // The first member hears about the second.
  auto t = env_.PeerControls(100).back();
  ASSERT_TRUE(t.has_host_table());
  EXPECT_EQ(t.host_table().hosts_size(), 3);
  // pvm_config shows all three, with their speeds.
  Enrol(1);
  ctl::Envelope cfg;
  cfg.mutable_config();
  Control(1, cfg);
  auto hosts = Last(1).config_reply().hosts();
  ASSERT_EQ(hosts.size(), 3);
  EXPECT_EQ(hosts[1].name(), "b");
  EXPECT_EQ(hosts[1].tid(), 0x80000);
  EXPECT_EQ(hosts[1].speed(), 2000);
  EXPECT_EQ(hosts[2].tid(), 0xc0000);
}

// Member `index`'s heartbeat, carrying a LoadReport of `tasks` runnable tasks.
Frame HeartbeatWithLoad(int index, int speed, std::vector<int> tasks) {
  ctl::Envelope e;
  e.mutable_heartbeat()->set_host(index);
  auto* load = e.mutable_heartbeat()->mutable_load();
  load->set_speed(speed);
  load->set_cores(1);
  for (int t : tasks) {
    auto* l = load->add_tasks();
    l->set_tid(t);
    l->set_age_ns(2'000'000'000);
    l->set_ready(1);
  }
  return PeerControl(e);
}

TEST_F(DaemonCoreTest, LoadReportsOfThreeHostsMakeTheMastersSnapshot) {
  core_.OnTick(10'000'000'000);
  core_.OnPeerFrame(100, PeerControl(JoinAs("b", 2000)));
  core_.OnPeerFrame(101, PeerControl(JoinAs("c", 500)));
  Enrol(1, 0, 500, /*tool=*/true);            // a tool (prun) is no load
  auto mine = Spawn(1, "/bin/w", 1, 1, ".");  // PvmTaskHost: here
  core_.OnPeerFrame(100, HeartbeatWithLoad(2, 2000, {0x80001, 0x80002}));
  core_.OnPeerFrame(101, HeartbeatWithLoad(3, 500, {0xc0001}));
  auto load = core_.LoadSnapshot();
  ASSERT_EQ(load.hosts.size(), 3u);
  EXPECT_EQ(load.Host(1)->runnable, 1);  // its own, from its task table
  EXPECT_EQ(load.Host(2)->runnable, 2);
  EXPECT_EQ(load.Host(2)->speed, 2000);
  EXPECT_EQ(load.Host(3)->runnable, 1);
  EXPECT_EQ(load.Host(3)->speed, 500);
  ASSERT_EQ(load.tasks.size(), 4u);
  EXPECT_EQ(load.tasks[0].tid, mine[0]);
  EXPECT_EQ(load.tasks[0].started, 10'000'000'000);  // spawned at 10 s
  EXPECT_EQ(load.tasks[1].tid, 0x80001);
  EXPECT_EQ(load.tasks[1].started, 8'000'000'000);  // 2 s old at 10 s
  // pvm_config's task counts come from the same reports.
  ctl::Envelope cfg;
  cfg.mutable_config();
  Control(1, cfg);
  EXPECT_EQ(Last(1).config_reply().hosts(1).ntasks(), 2);
  // A host that leaves takes its load with it.
  core_.DeleteHost("c", "test");
  EXPECT_EQ(core_.LoadSnapshot().hosts.size(), 2u);
}

TEST(DaemonCorePlacement, SpawnsArePlacedByTheConfiguredPolicy) {
  FakeEnv env;
  DaemonConfig cfg;
  cfg.hostname = "node1";
  cfg.placement = "speed-aware";
  DaemonCore core(cfg, &env);
  core.OnTick(0);
  core.OnPeerFrame(100, PeerControl(JoinAs("fast", 3000)));
  core.OnPeerFrame(100, HeartbeatWithLoad(2, 3000, {}));
  core.OnAccept(1);
  ctl::Envelope e;
  e.set_version(kControlVersion);
  e.mutable_enrol()->set_pid(1);
  e.mutable_enrol()->set_is_tool(true);  // prun: no load of its own
  Frame f;
  f.header = ControlHeader(0, 0);
  f.payload = EncodeControl(e);
  core.OnFrame(1, std::move(f));
  ctl::Envelope sp;
  sp.set_version(kControlVersion);
  sp.mutable_spawn()->set_file("/bin/w");
  sp.mutable_spawn()->set_ntask(4);
  Frame g;
  g.header = ControlHeader(0, 0);
  g.payload = EncodeControl(sp);
  core.OnFrame(1, std::move(g));
  // Of 4 tasks, the 3x faster host takes 3 (round-robin would give it 2).
  int remote = 0;
  for (const auto& m : env.PeerControls(100))
    if (m.has_remote_spawn()) remote += m.remote_spawn().ranks_size();
  EXPECT_EQ(remote, 3);
}

TEST_F(DaemonCoreTest, DuplicateHostNamesAreRefused) {
  core_.OnPeerFrame(100, PeerControl(JoinAs("b")));
  core_.OnPeerFrame(101, PeerControl(JoinAs("b")));
  auto r = env_.PeerControls(101).back();
  EXPECT_EQ(r.join_reply().code(), -28);  // PvmDupHost
  EXPECT_EQ(core_.host_count(), 2u);
}

TEST_F(DaemonCoreTest, SilentHostIsDeclaredDeadAndWatchersAreTold) {
  core_.OnTick(0);
  core_.OnPeerFrame(100, PeerControl(JoinAs("b")));
  Enrol(1);
  ctl::Envelope n;
  n.mutable_notify()->set_what(2);  // PvmHostDelete
  n.mutable_notify()->set_tag(66);
  n.mutable_notify()->add_tids(0x80000);
  Control(1, n);
  ctl::Envelope beat;
  beat.mutable_heartbeat()->set_host(2);
  auto tick_until = [&](int64_t from, int64_t to) {  // the loop ticks every 100 ms
    for (int64_t t = from; t <= to; t += 100'000'000) core_.OnTick(t);
  };
  tick_until(0, 2'000'000'000);
  core_.OnPeerFrame(100, PeerControl(beat));  // alive at 2 s
  tick_until(2'100'000'000, 4'900'000'000);
  EXPECT_EQ(core_.host_count(), 2u);  // 2.9 s of silence: still a member
  EXPECT_TRUE(env_.Data(1).empty());
  tick_until(5'000'000'000, 5'100'000'000);  // 3.1 s: dead
  EXPECT_EQ(core_.host_count(), 1u);
  EXPECT_EQ(env_.dropped, std::vector<PeerId>{100});
  auto data = env_.Data(1);
  ASSERT_EQ(data.size(), 1u);
  EXPECT_EQ(data[0].h.tag, 66);
  Message m = Message::FromWire(0, data[0].payload, data[0].h.aux_length);
  int host = 0;
  ASSERT_TRUE(m.Unpack(DataType::kInt, &host, 1, 1));
  EXPECT_EQ(host, 0x80000);
}

// Regression (found by bench/spawn_latency.sh): a remote task can exit, and
// its TaskGone arrive, before the spawner's notify request does.
TEST_F(DaemonCoreTest, NotifyForARemoteTaskAlreadyGoneFiresAtOnce) {
  core_.OnPeerFrame(100, PeerControl(JoinAs("b")));
  ctl::Envelope gone;
  gone.mutable_task_gone()->set_tid(0x80005);
  Frame f = PeerControl(gone);
  f.header.src = 0x80000;
  core_.OnPeerFrame(100, std::move(f));
  Enrol(1);
  ctl::Envelope n;
  n.mutable_notify()->set_what(1);
  n.mutable_notify()->set_tag(68);
  n.mutable_notify()->add_tids(0x80005);
  Control(1, n);
  auto data = env_.Data(1);
  ASSERT_EQ(data.size(), 1u);
  EXPECT_EQ(data[0].h.tag, 68);
}

// Regression (three test VMs started at once): a member that joins before the
// master's first tick must not be declared dead at that tick.
TEST_F(DaemonCoreTest, AHostThatJoinsBeforeTheFirstTickIsNotDeclaredDead) {
  core_.OnPeerFrame(100, PeerControl(JoinAs("b")));
  core_.OnTick(50'000'000'000);  // the loop's clock is monotonic: any value
  EXPECT_EQ(core_.host_count(), 2u);
  EXPECT_TRUE(env_.dropped.empty());
}

// Regression (seen under AddressSanitizer in CI): a daemon whose own loop
// stalled must not declare its peers dead because of that gap.
TEST_F(DaemonCoreTest, AStalledMasterDoesNotDeclareLiveHostsDead) {
  core_.OnTick(100'000'000);
  core_.OnPeerFrame(100, PeerControl(JoinAs("b")));
  core_.OnTick(200'000'000);
  core_.OnTick(4'000'000'000);  // the master itself did not run for 3.8 s
  EXPECT_EQ(core_.host_count(), 2u);
  // Any frame counts as a sign of life, not just heartbeats.
  for (int64_t t = 4'100'000'000; t <= 6'900'000'000; t += 100'000'000) {
    core_.OnTick(t);
    if (t % 1'000'000'000 == 0) {
      ctl::Envelope gone;
      gone.mutable_task_gone()->set_tid(0x80009);
      core_.OnPeerFrame(100, PeerControl(gone));
    }
  }
  EXPECT_EQ(core_.host_count(), 2u);
}

TEST_F(DaemonCoreTest, HostAddNotifiesCountDown) {
  Enrol(1);
  ctl::Envelope n;
  n.mutable_notify()->set_what(3);  // PvmHostAdd, twice
  n.mutable_notify()->set_tag(67);
  n.mutable_notify()->set_count(2);
  Control(1, n);
  for (PeerId p : {100, 101, 102})
    core_.OnPeerFrame(p, PeerControl(JoinAs("h" + std::to_string(p))));
  auto data = env_.Data(1);
  ASSERT_EQ(data.size(), 2u);  // the third join is not reported
  Message m = Message::FromWire(0, data[1].payload, data[1].h.aux_length);
  int v[2];
  ASSERT_TRUE(m.Unpack(DataType::kInt, v, 2, 1));
  EXPECT_EQ(v[0], 1);
  EXPECT_EQ(v[1], 0xc0000);
}

TEST_F(DaemonCoreTest, DeleteHostTellsTheMemberToLeave) {
  core_.OnPeerFrame(100, PeerControl(JoinAs("b")));
  EXPECT_TRUE(core_.DeleteHost("b", "deleted by the user"));
  EXPECT_TRUE(env_.PeerControls(100).back().has_host_leave());
  EXPECT_EQ(core_.host_count(), 1u);
  EXPECT_EQ(core_.DeleteHost("nope", "x").error(), Err::kNoHost);
}

TEST_F(DaemonCoreTest, AddingAnEmulatedHostRepliesWhenItJoins) {
  Enrol(1);
  ctl::Envelope a;
  a.mutable_add_host()->set_line("emu sp=2000 local=1");
  Control(1, a, 40);
  EXPECT_EQ(env_.started_hosts, std::vector<std::string>{"emu"});
  EXPECT_EQ(env_.Controls(1).size(), 1u);  // waits for the join
  core_.OnPeerFrame(100, PeerControl(JoinAs("emu", 2000)));
  auto r = Last(1);
  EXPECT_EQ(r.rid(), 40u);
  EXPECT_EQ(r.status().code(), 0x80000);
  // A failing one is reported to the asker.
  ctl::Envelope b;
  b.mutable_add_host()->set_line("emu2 local=1");
  Control(1, b, 41);
  core_.OnHostStartFailed("emu2", "its daemon exited (status 1)");
  EXPECT_EQ(Last(1).status().code(), -29);  // PvmCantStart
  EXPECT_NE(Last(1).status().detail().find("exited"), std::string::npos);
}

TEST_F(DaemonCoreTest, AddHostErrors) {
  Enrol(1);
  auto add = [&](const std::string& line) {
    ctl::Envelope a;
    a.mutable_add_host()->set_line(line);
    Control(1, a);
    return Last(1).status();
  };
  EXPECT_EQ(add("unreachable.example").code(), -6);  // PvmNoHost, with the reason
  EXPECT_NE(add("unreachable.example").detail().find("cannot resolve"), std::string::npos);
  EXPECT_EQ(add("manual so=ms").code(), -29);  // started by hand: says how
  EXPECT_NE(add("manual so=ms").detail().find("--join"), std::string::npos);
  EXPECT_EQ(add("x sp=fast local=1").code(), -2);
  EXPECT_NE(add("x sp=fast local=1").detail().find("sp="), std::string::npos);
  EXPECT_EQ(add("node1 local=1").code(), -28);  // the master's own name
  ctl::Envelope d;
  d.mutable_del_host()->set_name("nope");
  Control(1, d);
  EXPECT_EQ(Last(1).status().code(), -6);  // PvmNoHost
}

// ---- Migration (docs/design/migration.md) --------------------------------------

// The master's answer to member "b": host 2 of a VM of "a" and "b".
ctl::Envelope JoinReplyAsB() {
  ctl::Envelope r;
  r.mutable_join_reply()->set_host(2);
  for (auto [tid, name] : {std::pair{0x40000, "a"}, std::pair{0x80000, "b"}}) {
    auto* h = r.mutable_join_reply()->mutable_table()->add_hosts();
    h->set_tid(tid);
    h->set_name(name);
  }
  return r;
}

ctl::Envelope MigrateTo(int tid, const std::string& host) {
  ctl::Envelope e;
  e.mutable_migrate()->set_tid(tid);
  e.mutable_migrate()->set_host(host);
  return e;
}

void DaemonCoreTest::TaskGoneAtB(int tid) {
  ctl::Envelope e;
  e.mutable_task_gone()->set_tid(tid);
  Frame f = PeerControl(e);
  f.header.src = 0x80000;
  core_.OnPeerFrame(100, std::move(f));
}

// Member b (peer 100) accepts the last move offer it was sent, for task `tid`.
Frame AcceptLastOffer(FakeEnv& env, int tid) {
  ctl::Envelope a;
  a.mutable_migrate_accept()->set_id(env.PeerControls(100).back().migrate_offer().id());
  a.mutable_migrate_accept()->set_tid(tid);
  a.mutable_migrate_accept()->set_port(40000);
  a.mutable_migrate_accept()->set_token(std::string(32, 't'));
  return PeerControl(a);
}

void DaemonCoreTest::MoveToB(Tid t) {
  Control(1, MigrateTo(t.raw(), "b"), 7);
  core_.OnPeerFrame(100, AcceptLastOffer(env_, t.raw()));
  core_.OnMoveFrozen(t);
  core_.OnMoveCommitted(t, MoveTimes{});
}

TEST_F(DaemonCoreTest, TheBalancerMovesATaskWithNoClientBehindTheRequest) {
  core_.OnTick(1);
  core_.OnPeerFrame(100, PeerControl(JoinAs("b")));
  Enrol(1);
  auto tids = Spawn(1, "w", 1);
  Enrol(2, tids[0], 1001);
  const size_t answers = env_.Controls(1).size();
  core_.RequestBalancerMove(Tid(tids[0]), 2);
  auto offer = env_.PeerControls(100).back();
  ASSERT_TRUE(offer.has_migrate_offer());
  EXPECT_EQ(offer.migrate_offer().tid(), tids[0]);
  core_.OnPeerFrame(100, AcceptLastOffer(env_, tids[0]));
  core_.OnMoveFrozen(Tid(tids[0]));
  MoveTimes times;
  times.bytes = 8 << 20;
  times.freeze_ns = 1'000'000'000;
  times.restored_ns = 1'004'000'000;
  core_.OnMoveCommitted(Tid(tids[0]), times);
  EXPECT_EQ(core_.HostOf(Tid(tids[0])), 2);
  EXPECT_EQ(env_.Controls(1).size(), answers);  // no client was answered
  // The registry (this master) learnt what the move cost.
  EXPECT_NE(core_.load().bandwidth(), 1e9);
}

TEST_F(DaemonCoreTest, ABalancerRequestForATaskThatIsGoneEndsAtTheMember) {
  // A member that gets the balancer's request for a task it does not have
  // ends it there: it never passes it back (that would loop).
  FakeEnv env;
  DaemonConfig cfg;
  cfg.member = true;
  DaemonCore member(cfg, &env);
  ctl::Envelope m;
  m.mutable_migrate()->set_tid(0x40005);
  m.mutable_migrate()->set_host("c");
  m.mutable_migrate()->set_by_balancer(true);
  member.OnPeerFrame(kMasterPeer, PeerControl(m));
  for (const auto& e : env.PeerControls(kMasterPeer)) EXPECT_FALSE(e.has_migrate());
}

class MoveAnswerTest : public DaemonCoreTest {
 protected:
  Tid Ask() {
    core_.OnTick(1'000'000'000);
    core_.OnPeerFrame(100, PeerControl(JoinAs("b")));
    Tid asker = Enrol(1);
    Control(1, MigrateTo(0x80001, "node1"), 9);
    // Passed to b, which runs it; no answer yet.
    EXPECT_TRUE(env_.PeerControls(100).back().has_migrate());
    return asker;
  }
  std::vector<ctl::Envelope> AnswersTo9() {
    std::vector<ctl::Envelope> out;
    for (const auto& e : env_.Controls(1))
      if (e.rid() == 9) out.push_back(e);
    return out;
  }
};

TEST_F(MoveAnswerTest, WhenTheSubjectsHostLeavesTheAskerIsAnsweredWithTheReason) {
  Ask();
  ASSERT_TRUE(core_.DeleteHost("b", "test").has_value());
  auto answers = AnswersTo9();
  ASSERT_EQ(answers.size(), 1u);
  EXPECT_EQ(answers[0].status().code(), -22);  // PvmHostFail
  EXPECT_NE(answers[0].status().detail().find("left the virtual machine"), std::string::npos);
}

TEST_F(MoveAnswerTest, WithNoAnswerWithinTheBoundTheAskerHearsSo) {
  Ask();
  core_.OnPeerFrame(100, HeartbeatWithLoad(2, 1000, {}));  // b lives on, silent about the move
  core_.OnTick(60'000'000'000);
  core_.OnPeerFrame(100, HeartbeatWithLoad(2, 1000, {}));
  EXPECT_TRUE(AnswersTo9().empty());
  core_.OnTick(120'000'000'000);
  core_.OnPeerFrame(100, HeartbeatWithLoad(2, 1000, {}));
  core_.OnTick(122'000'000'000);
  auto answers = AnswersTo9();
  ASSERT_EQ(answers.size(), 1u);
  EXPECT_NE(answers[0].status().detail().find("no answer"), std::string::npos);
}

TEST_F(MoveAnswerTest, TheRealAnswerIsTheOnlyOne) {
  Tid asker = Ask();
  ctl::Envelope a;
  a.set_version(kControlVersion);
  a.set_rid(9);
  a.mutable_status()->set_code(0x40000);
  a.mutable_status()->set_detail("t80001 moved to node1");
  Frame f;
  f.header = ControlHeader(Tid::DaemonOf(HostIndex{2}).raw(), asker.raw());
  f.payload = EncodeControl(a);
  core_.OnPeerFrame(100, std::move(f));
  ASSERT_TRUE(core_.DeleteHost("b", "test").has_value());  // no second answer after
  core_.OnTick(200'000'000'000);
  auto answers = AnswersTo9();
  ASSERT_EQ(answers.size(), 1u);
  EXPECT_EQ(answers[0].status().code(), 0x40000);
}

TEST_F(DaemonCoreTest, AFrozenTaskWhoseDestinationLeftIsNotCommittedThereAndCarriesOn) {
  core_.OnTick(1);
  core_.OnPeerFrame(100, PeerControl(JoinAs("b")));
  Enrol(1);
  auto tids = Spawn(1, "w", 1);
  Enrol(2, tids[0], 1001);
  const Tid t(tids[0]);
  Control(1, MigrateTo(tids[0], "b"), 7);
  core_.OnPeerFrame(100, AcceptLastOffer(env_, tids[0]));
  core_.OnMoveFrozen(t);
  EXPECT_TRUE(core_.MayCommit(t));
  ASSERT_TRUE(core_.DeleteHost("b", "test").has_value());  // the image is still streaming
  EXPECT_FALSE(core_.MayCommit(t));
  // The server then tells the task to carry on here, and says why.
  core_.OnMoveFailed(t, "its destination left the virtual machine before the commit", false,
                     MoveEvent::kDestinationDied);
  auto answer = Last(1);
  EXPECT_EQ(answer.rid(), 7u);
  EXPECT_LT(answer.status().code(), 0);
  EXPECT_NE(answer.status().detail().find("left the virtual machine"), std::string::npos);
  EXPECT_EQ(core_.HostOf(t), 1);  // it runs here still
  EXPECT_EQ(core_.TaskConn(t), 2u);
}

TEST_F(DaemonCoreTest, ATaskCommittedToAHostThatLeftIsReportedLostNotRecordedThere) {
  core_.OnTick(1);
  core_.OnPeerFrame(100, PeerControl(JoinAs("b")));
  core_.OnPeerFrame(101, PeerControl(JoinAs("c")));
  Enrol(1);
  ctl::Envelope n;                  // a watcher of the task, which runs on c
  n.mutable_notify()->set_what(1);  // PvmTaskExit
  n.mutable_notify()->set_tag(55);
  n.mutable_notify()->add_tids(0xc0001);
  Control(1, n);
  ASSERT_TRUE(core_.DeleteHost("b", "test").has_value());
  // c committed a move of the task to b, which the master has just removed.
  ctl::Envelope m;
  m.mutable_task_moved()->set_tid(0xc0001);
  m.mutable_task_moved()->set_host(2);
  m.mutable_task_moved()->set_from(3);
  Frame f = PeerControl(m);
  f.header.src = Tid::DaemonOf(HostIndex{3}).raw();
  f.header.dst = Tid::DaemonOf(HostIndex{1}).raw();
  core_.OnPeerFrame(101, std::move(f));
  EXPECT_NE(core_.HostOf(Tid(0xc0001)), 2);  // not recorded on the dead host
  auto told = env_.Data(1);
  ASSERT_FALSE(told.empty());
  EXPECT_EQ(told.back().h.tag, 55);  // the watcher heard it exited
  bool gone_to_c = false;
  for (const auto& e : env_.PeerControls(101)) gone_to_c |= e.has_task_gone();
  EXPECT_TRUE(gone_to_c);
}

TEST_F(DaemonCoreTest, MoveOfferAcceptAndFreezeTimeOut) {
  core_.OnTick(1);
  core_.OnPeerFrame(100, PeerControl(JoinAs("b")));
  Enrol(1);
  auto tids = Spawn(1, "w", 1);
  Enrol(2, tids[0], 1001);
  Control(1, MigrateTo(tids[0], "b"), 7);
  // The destination is asked first, with what it needs to start the program.
  auto offer = env_.PeerControls(100).back();
  ASSERT_TRUE(offer.has_migrate_offer());
  EXPECT_EQ(offer.migrate_offer().tid(), tids[0]);
  EXPECT_EQ(offer.migrate_offer().path(), "/bin/w");
  // It accepts: the source connects to the restore process and signals the task.
  ctl::Envelope a;
  a.mutable_migrate_accept()->set_id(offer.migrate_offer().id());
  a.mutable_migrate_accept()->set_tid(tids[0]);
  a.mutable_migrate_accept()->set_port(40000);
  a.mutable_migrate_accept()->set_token(std::string(32, 't'));
  core_.OnPeerFrame(100, PeerControl(a));
  ASSERT_EQ(env_.begun.size(), 1u);
  EXPECT_EQ(env_.begun[0].first, Tid(tids[0]));
  EXPECT_EQ(env_.begun[0].second, "127.0.0.1:40000");
  // A second request while it moves is refused with the reason.
  Control(1, MigrateTo(tids[0], "b"), 8);
  EXPECT_NE(Last(1).status().detail().find("moving already"), std::string::npos);
  // The task never stops: after 30 s the move is given up, the destination
  // drops its restore, and the asker hears why. The task stays here.
  core_.OnTick(31'000'000'000);
  ASSERT_EQ(env_.cancelled.size(), 1u);
  int aborts = 0;
  for (const auto& e : env_.PeerControls(100)) aborts += e.has_migrate_abort();
  EXPECT_EQ(aborts, 1);
  auto answer = Last(1);
  EXPECT_EQ(answer.rid(), 7u);
  EXPECT_LT(answer.status().code(), 0);
  EXPECT_NE(answer.status().detail().find("did not stop"), std::string::npos);
  ctl::Envelope where;
  where.mutable_location()->set_tid(tids[0]);
  Control(1, where, 9);
  EXPECT_EQ(Last(1).status().code(), 0x40000);
}

TEST_F(DaemonCoreTest, RefusedOfferIsReportedToTheAsker) {
  core_.OnPeerFrame(100, PeerControl(JoinAs("b")));
  Enrol(1);
  auto tids = Spawn(1, "w", 1);
  Enrol(2, tids[0], 1001);
  Control(1, MigrateTo(tids[0], "b"), 7);
  auto offer = env_.PeerControls(100).back();
  ctl::Envelope a;
  a.mutable_migrate_accept()->set_id(offer.migrate_offer().id());
  a.mutable_migrate_accept()->set_tid(tids[0]);
  a.mutable_migrate_accept()->set_code(-7);
  a.mutable_migrate_accept()->set_detail("/bin/w is not an executable file there");
  core_.OnPeerFrame(100, PeerControl(a));
  EXPECT_TRUE(env_.begun.empty());
  EXPECT_EQ(Last(1).status().code(), -7);
  EXPECT_NE(Last(1).status().detail().find("not an executable file there"), std::string::npos);
}

TEST_F(DaemonCoreTest, DestinationStartsOneRestorePerTid) {
  core_.OnPeerFrame(100, PeerControl(JoinAs("b")));
  ctl::Envelope o;
  auto* mo = o.mutable_migrate_offer();
  mo->set_tid(0x80005);
  mo->set_id(42);
  mo->set_path("w");
  mo->add_argv("w");
  Frame f = PeerControl(o);
  f.header.src = 0x80000;
  core_.OnPeerFrame(100, std::move(f));
  ASSERT_EQ(env_.restores.size(), 1u);
  EXPECT_EQ(env_.restores[0].tid, Tid(0x80005));
  auto a = env_.PeerControls(100).back().migrate_accept();
  EXPECT_EQ(a.code(), 0);
  EXPECT_EQ(a.port(), 40000);
  EXPECT_EQ(a.token().size(), 32u);
  // The same tid again is refused.
  Frame again = PeerControl(o);
  again.header.src = 0x80000;
  core_.OnPeerFrame(100, std::move(again));
  EXPECT_EQ(env_.restores.size(), 1u);
  EXPECT_EQ(env_.PeerControls(100).back().migrate_accept().code(), -33);  // PvmDupEntry
}

TEST_F(DaemonCoreTest, AnAbandonedRestoreIsForgottenWhicheverComesFirst) {
  core_.OnPeerFrame(100, PeerControl(JoinAs("b")));
  for (bool exit_first : {true, false}) {
    ctl::Envelope o;
    o.mutable_migrate_offer()->set_tid(0x80005);
    o.mutable_migrate_offer()->set_id(42);
    o.mutable_migrate_offer()->set_path("w");
    Frame f = PeerControl(o);
    f.header.src = 0x80000;
    core_.OnPeerFrame(100, std::move(f));
    ASSERT_EQ(core_.task_count(), 1u);
    ctl::Envelope a;
    a.mutable_migrate_abort()->set_tid(0x80005);
    a.mutable_migrate_abort()->set_id(42);
    a.mutable_migrate_abort()->set_why("the task died while it was being moved");
    // The restore process ends (its image stopped short) and the source's
    // abort arrives, in either order: no record of the task is left.
    if (exit_first) End(Tid(0x80005), 1);
    core_.OnPeerFrame(100, PeerControl(a));
    if (!exit_first) End(Tid(0x80005), 0, SIGKILL);
    EXPECT_EQ(core_.task_count(), 0u) << (exit_first ? "exit, then abort" : "abort, then exit");
  }
}

// What a task asked pvm_notify to tell it moves with it: its old host would
// otherwise watch for it, and might not live as long as the task.
TEST_F(DaemonCoreTest, NotifyRequestsMoveWithTheTaskThatMadeThem) {
  core_.OnPeerFrame(100, PeerControl(JoinAs("b")));
  Enrol(1);
  auto tids = Spawn(1, "w", 2, 1, "node1");  // both here (PvmTaskHost)
  const Tid t(tids[0]), u(tids[1]);
  Enrol(2, t.raw(), 1001);
  Enrol(3, u.raw(), 1002);
  ctl::Envelope n;
  n.mutable_notify()->set_what(1);  // PvmTaskExit
  n.mutable_notify()->set_tag(77);
  n.mutable_notify()->add_tids(u.raw());
  Control(2, n);
  MoveToB(t);
  ctl::TaskMoved moved;
  for (const auto& e : env_.PeerControls(100))
    if (e.has_task_moved()) moved = e.task_moved();
  ASSERT_EQ(moved.notifies_size(), 1);  // b watches u for t from now on
  EXPECT_EQ(moved.notifies(0).target(), u.raw());
  EXPECT_EQ(moved.notifies(0).tag(), 77);
  const size_t before = env_.peer_sent.size();
  End(u);  // this host no longer sends t the notice itself: b does, on TaskGone
  for (size_t i = before; i < env_.peer_sent.size(); ++i)
    EXPECT_FALSE(env_.peer_sent[i].h.kind == FrameKind::kData && env_.peer_sent[i].h.tag == 77);
}

// pvm_tasks(0) and `mpvm ps` list the whole VM: the master asks every
// member and answers once all have, or after 2 s without a silent one.
TEST_F(DaemonCoreTest, TheTaskListCoversEveryHostAndDoesNotWaitForASilentOne) {
  core_.OnTick(1);
  core_.OnPeerFrame(100, PeerControl(JoinAs("b")));
  const Tid me = Enrol(1);
  ctl::Envelope ask;
  ask.mutable_tasks()->set_where(0);
  Control(1, ask, 5);
  EXPECT_TRUE(env_.Controls(1).size() == 1);  // only the enrol reply: it waits for b
  auto q = env_.PeerControls(100).back();
  ASSERT_TRUE(q.has_tasks());
  EXPECT_EQ(q.tasks().where(), 0x80000);
  ctl::Envelope r;
  r.set_rid(q.rid());
  auto* te = r.mutable_tasks_reply()->add_tasks();
  te->set_tid(0x80001);
  te->set_host(0x80000);
  te->set_a_out("worker");
  Frame f = PeerControl(r);
  f.header.src = 0x80000;
  core_.OnPeerFrame(100, std::move(f));
  auto all = Last(1);
  EXPECT_EQ(all.rid(), 5u);
  ASSERT_EQ(all.tasks_reply().tasks_size(), 2);
  EXPECT_EQ(all.tasks_reply().tasks(0).tid(), me.raw());  // by host, then tid
  EXPECT_EQ(all.tasks_reply().tasks(1).tid(), 0x80001);
  // b says nothing this time: the answer comes after 2 s, with what is known.
  Control(1, ask, 6);
  core_.OnTick(1'000'000'000);
  EXPECT_EQ(Last(1).rid(), 5u);
  core_.OnTick(2'100'000'000);
  EXPECT_EQ(Last(1).rid(), 6u);
  EXPECT_EQ(Last(1).tasks_reply().tasks_size(), 1);
}

// Regression (bwtest under MPVM_TEST_MOVES): a task born on the master that
// moved to a member asks the master for what it serves (groups here). The
// master took the request for a forgery, as the tid is one of its own, and
// the task waited for ever. Its exit, watched from the master, must also
// wait for its new host to report it.
TEST_F(DaemonCoreTest, ATaskBornHereThatMovedAwayIsServedAndWatchedWhereItRuns) {
  core_.OnPeerFrame(100, PeerControl(JoinAs("b")));
  Enrol(1);
  const Tid t(Spawn(1, "w", 1)[0]);
  Enrol(2, t.raw(), 1001);
  MoveToB(t);
  EXPECT_EQ(Last(1).status().code(), 0x80000);  // moved to b

  ctl::Envelope join;
  join.set_rid(11);
  join.mutable_group()->set_op(ctl::GroupRequest::JOIN);
  join.mutable_group()->set_group("g");
  Frame f = PeerControl(join);
  f.header.src = t.raw();
  f.header.dst = 0x40000;
  core_.OnPeerFrame(100, std::move(f));
  const Sent& reply = env_.peer_sent.back();
  EXPECT_EQ(reply.h.dst, t.raw());  // to the task, through b's daemon
  auto r = DecodeControl(reply.payload);
  ASSERT_TRUE(r && r->has_group_reply());
  EXPECT_EQ(r->rid(), 11u);
  EXPECT_EQ(r->group_reply().code(), 0);  // instance 0

  ctl::Envelope n;
  n.mutable_notify()->set_what(1);  // PvmTaskExit
  n.mutable_notify()->set_tag(68);
  n.mutable_notify()->add_tids(t.raw());
  Control(1, n);
  EXPECT_TRUE(env_.Data(1).empty());  // it runs on, at b
  TaskGoneAtB(t.raw());
  auto data = env_.Data(1);
  ASSERT_EQ(data.size(), 1u);
  EXPECT_EQ(data[0].h.tag, 68);
}

// The bound on what a host keeps for the tasks that left it
// (docs/design/migration.md, "Forwarding entries"): a registry entry each
// until the task ends, and a forwarding record only while links it held
// here are open.
TEST_F(DaemonCoreTest, WhatAHostKeepsForTasksThatLeftGoesWithTheirLinksAndTheirEnd) {
  core_.OnPeerFrame(100, PeerControl(JoinAs("b")));
  Enrol(1);
  std::vector<int> tids;
  for (int i = 0; i < 4; ++i) tids.push_back(Spawn(1, "w", 1)[0]);
  ConnId link = 50;
  for (size_t i = 0; i < tids.size(); ++i) {
    const Tid t(tids[i]);
    Enrol(static_cast<ConnId>(2 + i), t.raw(), static_cast<int>(1001 + i));
    MoveToB(t);
    for (size_t k = 0; k < i; ++k) core_.OnForwardLink(link++, t);  // task i held i links
    core_.OnCommitDone(t);
  }
  auto r = core_.RetainedForMoved();
  EXPECT_EQ(r.registry, 4u);
  EXPECT_EQ(r.records, 3u);  // the task with no links needs none after its commit
  EXPECT_EQ(r.held_links, 6u);

  // Task 1's peer closes its link after reading kMoved: its record goes,
  // with one last account of what was forwarded.
  const size_t logs_before = env_.logs.size();
  core_.OnClose(50);
  r = core_.RetainedForMoved();
  EXPECT_EQ(r.records, 2u);
  EXPECT_EQ(r.held_links, 5u);
  ASSERT_EQ(env_.logs.size(), logs_before + 1);
  EXPECT_NE(env_.logs.back().find("forwarding {"), std::string::npos);
  EXPECT_NE(env_.logs.back().find(Tid(tids[1]).str()), std::string::npos);

  // One of task 3's three links closes: its record stays for the others.
  core_.OnClose(53);
  EXPECT_EQ(core_.RetainedForMoved().records, 2u);

  // Task 2 ends at b: its registry entry and record go at once; its links
  // go as their peers close them.
  TaskGoneAtB(tids[2]);
  r = core_.RetainedForMoved();
  EXPECT_EQ(r.registry, 3u);
  EXPECT_EQ(r.records, 1u);
  EXPECT_EQ(r.held_links, 4u);
  core_.OnClose(51);
  core_.OnClose(52);

  // The rest end: nothing is left.
  for (int tid : {tids[0], tids[1], tids[3]}) TaskGoneAtB(tid);
  core_.OnClose(54);
  core_.OnClose(55);
  r = core_.RetainedForMoved();
  EXPECT_EQ(r.registry, 0u);
  EXPECT_EQ(r.records, 0u);
  EXPECT_EQ(r.held_links, 0u);
}

TEST(DaemonCoreMember, AMigrateRequestForATaskThatIsGoneIsAnsweredNotBounced) {
  // The master sends a member a request for a task its registry places there
  // (it ended there a moment ago): the member answers, and does not pass it
  // back to the master, which would pass it back again, for ever.
  DaemonConfig c;
  c.member = true;
  c.hostname = "b";
  FakeEnv env;
  DaemonCore core(c, &env);
  core.StartJoin(0);
  core.OnPeerFrame(kMasterPeer, PeerControl(JoinReplyAsB()));
  ASSERT_TRUE(core.joined());
  for (int tid : {0x80003, 0x40007}) {  // born here, and born at the master
    ctl::Envelope m = MigrateTo(tid, "a");
    m.mutable_migrate()->set_asker(0x40001);
    m.mutable_migrate()->set_asker_rid(5);
    const size_t before = env.peer_sent.size();
    core.OnPeerFrame(kMasterPeer, PeerControl(m));
    ASSERT_EQ(env.peer_sent.size(), before + 1);
    auto answer = env.PeerControls(kMasterPeer).back();
    EXPECT_FALSE(answer.has_migrate());
    EXPECT_EQ(answer.rid(), 5u);
    EXPECT_EQ(answer.status().code(), -31);  // PvmNoTask
  }
}

TEST(DaemonCoreMember, AnArrivingTaskIsToldWhatItAskedToBeToldBeforeItMoved) {
  DaemonConfig c;
  c.member = true;
  c.hostname = "b";
  FakeEnv env;
  DaemonCore core(c, &env);
  core.StartJoin(0);
  core.OnPeerFrame(kMasterPeer, PeerControl(JoinReplyAsB()));
  // t40005 moves here from the master; it had asked to hear of t40009's end.
  ctl::Envelope o;
  o.mutable_migrate_offer()->set_tid(0x40005);
  o.mutable_migrate_offer()->set_id(9);
  o.mutable_migrate_offer()->set_path("w");
  Frame f = PeerControl(o);
  f.header.src = 0x40000;
  core.OnPeerFrame(kMasterPeer, std::move(f));
  ASSERT_EQ(env.restores.size(), 1u);
  core.OnAccept(4);  // the restored copy enrols
  ctl::Envelope e;
  e.set_version(kControlVersion);
  e.mutable_enrol()->set_tid(0x40005);
  e.mutable_enrol()->set_pid(5001);
  e.mutable_enrol()->set_restored(true);
  Frame ef;
  ef.header = ControlHeader(0, 0);
  ef.payload = EncodeControl(e);
  core.OnFrame(4, std::move(ef));
  ctl::Envelope m;
  auto* tm = m.mutable_task_moved();
  tm->set_tid(0x40005);
  tm->set_host(2);
  tm->set_id(9);
  auto* n = tm->add_notifies();
  n->set_what(1);  // PvmTaskExit
  n->set_tag(77);
  n->set_target(0x40009);
  n->set_count(1);
  core.OnPeerFrame(kMasterPeer, PeerControl(m));
  EXPECT_TRUE(env.Data(4).empty());  // t40009 still runs
  ctl::Envelope gone;
  gone.mutable_task_gone()->set_tid(0x40009);
  core.OnPeerFrame(kMasterPeer, PeerControl(gone));
  auto data = env.Data(4);
  ASSERT_EQ(data.size(), 1u);
  EXPECT_EQ(data[0].h.tag, 77);
}

TEST(DaemonCoreMember, JoinsThenHaltsWhenTheMasterFallsSilent) {
  DaemonConfig c;
  c.member = true;
  c.hostname = "b";
  FakeEnv env;
  DaemonCore core(c, &env);
  EXPECT_FALSE(core.joined());
  core.StartJoin(0);
  ASSERT_TRUE(env.PeerControls(kMasterPeer).back().has_join());
  core.OnPeerFrame(kMasterPeer, PeerControl(JoinReplyAsB()));
  EXPECT_TRUE(core.joined());
  EXPECT_EQ(core.host_tid().raw(), 0x80000);
  core.OnTick(600'000'000);
  EXPECT_TRUE(env.PeerControls(kMasterPeer).back().has_heartbeat());
  EXPECT_FALSE(env.shutdown);
  for (int64_t t = 700'000'000; t <= 3'100'000'000; t += 100'000'000) core.OnTick(t);
  EXPECT_TRUE(env.shutdown);  // nothing from the master for 3.1 s
}

TEST(DaemonCoreMember, RefusedJoinIsReported) {
  DaemonConfig c;
  c.member = true;
  FakeEnv env;
  DaemonCore core(c, &env);
  core.StartJoin(0);
  ctl::Envelope r;
  r.mutable_join_reply()->set_code(-28);
  r.mutable_join_reply()->set_detail("a host named 'b' is already in the virtual machine");
  core.OnPeerFrame(kMasterPeer, PeerControl(r));
  EXPECT_FALSE(core.joined());
  EXPECT_NE(core.join_error().find("already"), std::string::npos);
}

}  // namespace
}  // namespace mpvm
