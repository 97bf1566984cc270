// What a stopped task is doing and holding, from /proc's text
// (server/task_inspect.h). The live reads are tested on this test's own
// children.
#include "server/task_inspect.h"

#include <gtest/gtest.h>
#include <signal.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>

namespace mpvm::inspect {
namespace {

using Kind = SyscallState::Kind;

TEST(TaskInspect, ASyscallLineGivesTheCallAndItsArguments) {
  const auto s = ParseSyscall(
      "230 0x0 0x0 0x7ffc65bf2300 0x7ffc65bf2310 0x0 0x7f28aa5a16d0 0x7ffc65bf22e8 "
      "0x7f28aa474503\n");
  EXPECT_EQ(s.kind, Kind::kInCall);
  EXPECT_EQ(s.nr, 230);
  EXPECT_EQ(s.args[2], 0x7ffc65bf2300u);
  EXPECT_EQ(s.args[3], 0x7ffc65bf2310u);
}

TEST(TaskInspect, OutsideACallAndRunningAreTold) {
  EXPECT_EQ(ParseSyscall("-1 0x7ffdb54e4c30 0x55ea711d61a5\n").kind, Kind::kUser);
  EXPECT_EQ(ParseSyscall("running\n").kind, Kind::kRunning);
}

TEST(TaskInspect, ABadSyscallLineIsUnknown) {
  for (const char* bad :
       {"", "\n", "abc", "230 0x0", "230 0x0 0x0 zz 0x0 0x0 0x0 0x1 0x2", "230 1 2 3 4 5 6 7 8"})
    EXPECT_EQ(ParseSyscall(bad).kind, Kind::kUnknown) << bad;
}

TEST(TaskInspect, StatGivesStateAndParentEvenWithParenthesesInTheName) {
  const auto st = ParseStat("4242 (a (weird) name) T 17 4242 4242 0 -1 4194560 103 0 0");
  EXPECT_EQ(st.state, 'T');
  EXPECT_EQ(st.ppid, 17);
  EXPECT_EQ(ParseStat("garbage").state, 0);
  EXPECT_EQ(ParseStat("1 (x) ").state, 0);
}

TEST(TaskInspect, AFileLockIsHeldByItsPidButNotByAWaiter) {
  const char* locks =
      "1: POSIX  ADVISORY  WRITE 4242 08:01:1234 0 EOF\n"
      "1: -> POSIX  ADVISORY  WRITE 5151 08:01:1234 0 EOF\n"
      "2: FLOCK  ADVISORY  WRITE 6161 08:01:99 0 EOF\n";
  EXPECT_TRUE(HoldsFileLock(locks, 4242));
  EXPECT_TRUE(HoldsFileLock(locks, 6161));
  EXPECT_FALSE(HoldsFileLock(locks, 5151));
  EXPECT_FALSE(HoldsFileLock(locks, 1234));
  EXPECT_FALSE(HoldsFileLock("", 4242));
}

TEST(TaskInspect, SysvTablesAreReadByTheirColumnNames) {
  const char* msg =
      "       key      msqid perms      cbytes       qnum lspid lrpid   uid\n"
      "         0          3   600           0          0  4242     0     0\n";
  EXPECT_TRUE(NamesPid(msg, 4242, "lspid", "lrpid"));
  EXPECT_FALSE(NamesPid(msg, 3, "lspid", "lrpid"));  // that is the queue's id
  EXPECT_FALSE(NamesPid("", 4242, "lspid", "lrpid"));
  EXPECT_TRUE(HasSysvShm("7f00-7f10 rw-s 00000000 00:01 7   /SYSV00000000 (deleted)\n"));
  EXPECT_FALSE(HasSysvShm("7f00-7f10 rw-p 00000000 00:00 0   [heap]\n"));
  EXPECT_TRUE(HasPosixTimers("ID: 0\nsignal: 14/0000000000000000\nnotify: signal/pid.7\n"));
  EXPECT_FALSE(HasPosixTimers(""));
}

// A child stopped in a sleep of its own shows the call; its parent (this
// test) is found as holding a child.
TEST(TaskInspect, AStoppedSleeperShowsItsCallAndItsParentIsPinned) {
  int ready[2];
  ASSERT_EQ(pipe(ready), 0);
  const pid_t pid = fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    close(ready[0]);
    close(ready[1]);  // says "about to sleep"
    const timespec ts{30, 0};
    nanosleep(&ts, nullptr);
    _exit(0);
  }
  close(ready[1]);
  char c;
  ASSERT_EQ(read(ready[0], &c, 1), 0);  // end of file: the child is past fork
  close(ready[0]);
  // The child sleeps next: wait until it does (state S), then stop it there.
  for (int i = 0; i < 10000 && ReadStat(pid).state != 'S'; ++i) usleep(100);
  EXPECT_NE(WhatPinsTask(getpid()).find("child process"), std::string::npos);
  kill(pid, SIGSTOP);
  int status = 0;
  ASSERT_EQ(waitpid(pid, &status, WUNTRACED), pid);  // stopped
  EXPECT_EQ(ReadStat(pid).state, 'T');
  EXPECT_EQ(ReadStat(pid).ppid, getpid());
  const auto sc = ReadSyscall(pid);
  EXPECT_EQ(sc.kind, Kind::kInCall);
  EXPECT_TRUE(sc.nr == SYS_clock_nanosleep || sc.nr == SYS_nanosleep) << sc.nr;
  EXPECT_EQ(WhatPinsTask(pid), "");
  kill(pid, SIGKILL);
  waitpid(pid, &status, 0);
}

}  // namespace
}  // namespace mpvm::inspect
