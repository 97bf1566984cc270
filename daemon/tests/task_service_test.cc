// Unit tests of the task service: enrolment, output, exits.
#include "core/task_service.h"

#include <gtest/gtest.h>

#include "fake_env.h"

namespace mpvm {
namespace {

class TaskServiceTest : public ::testing::Test {
 protected:
  // Enrols a task on connection `c`; returns the tid it was given.
  Tid Enrol(ConnId c, int pid) {
    m_.cx.conns[c] = Conn{};
    ctl::Envelope e = NewEnvelope();
    e.set_rid(1);
    e.mutable_enrol()->set_pid(pid);
    e.mutable_enrol()->set_name("worker");
    tasks_.DoEnrol(c, e);
    auto replies = m_.env.Controls(c);
    EXPECT_FALSE(replies.empty());
    return replies.empty() ? Tid() : Tid(replies.back().enrol_reply().tid());
  }
  MasterContext m_;
  TaskService tasks_{m_.cx};
};

TEST_F(TaskServiceTest, AProcessThatEnrolsGetsATidOfThisHost) {
  const Tid t = Enrol(3, 100);
  EXPECT_EQ(t.host().value, 1);
  ASSERT_TRUE(m_.cx.tasks.contains(t));
  EXPECT_EQ(m_.cx.tasks.find(t)->second.state, TaskState::kEnrolled);
  EXPECT_EQ(m_.cx.conns[3].tid, t);
  EXPECT_EQ(m_.events.ready, std::vector<Tid>{t});
}

TEST_F(TaskServiceTest, UncollectedOutputGoesToTheLogALineAtATime) {
  const Tid t = Enrol(3, 100);
  tasks_.OnOutput(t, "first li");
  EXPECT_TRUE(m_.env.logged.empty());
  tasks_.OnOutput(t, "ne\nsecond\n");
  EXPECT_EQ(m_.env.logged, (std::vector<std::string>{"first line", "second"}));
}

TEST_F(TaskServiceTest, ATaskGoesOnceItsProcessEndedAndItsOutputIsDrained) {
  Task task;
  task.tid = Tid::Make(HostIndex{1}, 9);
  task.pid = 900;
  task.spawned = true;
  task.open_streams = 2;
  task.report_to = Enrol(3, 100).raw();
  m_.cx.tasks.Add(task);
  tasks_.NoteExit(task.tid, 3, 0);
  tasks_.MaybeFinish(task.tid);
  EXPECT_TRUE(m_.cx.tasks.contains(task.tid));  // its output may still come
  tasks_.OnOutputClosed(task.tid);
  tasks_.OnOutputClosed(task.tid);
  EXPECT_FALSE(m_.cx.tasks.contains(task.tid));
  EXPECT_EQ(m_.events.left, std::vector<int>{task.tid.raw()});
  auto told = m_.env.Controls(3);
  ASSERT_FALSE(told.empty());
  EXPECT_EQ(told.back().task_ended().tid(), task.tid.raw());
  EXPECT_EQ(told.back().task_ended().exit_code(), 3);
}

TEST_F(TaskServiceTest, PstatSaysWhetherATaskRuns) {
  const Tid t = Enrol(3, 100);
  ctl::Envelope e = NewEnvelope();
  e.set_rid(2);
  e.mutable_pstat()->set_tid(t.raw());
  tasks_.OnTaskRequest(3, t, e);
  EXPECT_EQ(m_.env.Controls(3).back().status().code(), 0);
  e.mutable_pstat()->set_tid(Tid::Make(HostIndex{1}, 77).raw());
  tasks_.OnTaskRequest(3, t, e);
  EXPECT_EQ(m_.env.Controls(3).back().status().code(), PvmCode(Err::kNoTask));
}

}  // namespace
}  // namespace mpvm
