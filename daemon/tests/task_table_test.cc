// Unit tests of the task and connection tables.
#include "core/task_table.h"

#include <gtest/gtest.h>

namespace mpvm {
namespace {

Task Make(Tid t, int pid = 10) {
  Task task;
  task.tid = t;
  task.pid = pid;
  task.spawned = true;
  return task;
}

TEST(TaskTable, AllocatesTidsOfItsHostSkippingThoseInUse) {
  TaskTable tasks;
  const Tid first = tasks.AllocTid(HostIndex{2});
  EXPECT_EQ(first.host().value, 2);
  tasks.Add(Make(first));
  const Tid second = tasks.AllocTid(HostIndex{2});
  EXPECT_NE(second, first);
  EXPECT_FALSE(tasks.contains(second));
}

TEST(TaskTable, ARestoringCopyOrATaskThatLeftIsNotHere) {
  TaskTable tasks;
  Task restoring = Make(Tid::Make(HostIndex{1}, 1));
  restoring.restoring = true;
  Task left = Make(Tid::Make(HostIndex{1}, 2));
  left.state = TaskState::kLeft;
  Task running = Make(Tid::Make(HostIndex{1}, 3));
  tasks.Add(restoring);
  tasks.Add(left);
  tasks.Add(running);
  EXPECT_EQ(tasks.Here(restoring.tid), nullptr);
  EXPECT_EQ(tasks.Here(left.tid), nullptr);
  ASSERT_NE(tasks.Here(running.tid), nullptr);
  EXPECT_EQ(tasks.Here(running.tid)->pid, 10);
}

TEST(TaskTable, CountsTasksButNotToolsOrTasksThatLeft) {
  TaskTable tasks;
  Task tool = Make(Tid::Make(HostIndex{1}, 1));
  tool.is_tool = true;
  Task left = Make(Tid::Make(HostIndex{1}, 2));
  left.state = TaskState::kLeft;
  tasks.Add(tool);
  tasks.Add(left);
  tasks.Add(Make(Tid::Make(HostIndex{1}, 3)));
  EXPECT_EQ(tasks.Count(), 1);
}

TEST(TaskTable, PidsAreThoseOfSpawnedTasksStillRunning) {
  TaskTable tasks;
  Task ended = Make(Tid::Make(HostIndex{1}, 1), 11);
  ended.exited = true;
  Task by_hand = Make(Tid::Make(HostIndex{1}, 2), 12);
  by_hand.spawned = false;
  tasks.Add(ended);
  tasks.Add(by_hand);
  tasks.Add(Make(Tid::Make(HostIndex{1}, 3), 13));
  EXPECT_EQ(tasks.Pids(), std::vector<int>{13});
}

TEST(TaskTable, ListingHidesUncommittedCopiesAndFiltersByWhere) {
  TaskTable tasks;
  const Tid host = Tid::DaemonOf(HostIndex{1});
  Task copy = Make(Tid::Make(HostIndex{2}, 1));
  copy.restoring = true;
  Task committed = Make(Tid::Make(HostIndex{2}, 2));
  committed.restoring = committed.committed = true;
  const Tid mine = Tid::Make(HostIndex{1}, 3);
  tasks.Add(copy);
  tasks.Add(committed);
  tasks.Add(Make(mine));
  ctl::TasksReply all;
  EXPECT_TRUE(tasks.List(0, host, &all));
  EXPECT_EQ(all.tasks_size(), 2);
  ctl::TasksReply one;
  EXPECT_TRUE(tasks.List(mine.raw(), host, &one));
  ASSERT_EQ(one.tasks_size(), 1);
  EXPECT_EQ(one.tasks(0).tid(), mine.raw());
  ctl::TasksReply none;
  EXPECT_FALSE(tasks.List(copy.tid.raw(), host, &none));
}

TEST(ConnTable, ARemoteTaskKeepsOneVirtualConnectionUntilDropped) {
  ConnTable conns;
  const Tid t = Tid::Make(HostIndex{3}, 7);
  const ConnId c = conns.RemoteConn(t);
  EXPECT_EQ(conns.RemoteConn(t), c);
  ASSERT_NE(conns.Find(c), nullptr);
  EXPECT_TRUE(conns.Find(c)->remote);
  EXPECT_EQ(conns.RemoteTasks(), std::vector<int>{t.raw()});
  EXPECT_EQ(conns.DropRemote(t.raw()), c);
  EXPECT_EQ(conns.Find(c), nullptr);
  EXPECT_EQ(conns.DropRemote(t.raw()), 0u);
}

}  // namespace
}  // namespace mpvm
