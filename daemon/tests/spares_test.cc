// The pool of spare processes (server/spares.h), on this test's own
// children: /bin/sleep stands in for a task's program.
#include "server/spares.h"

#include <gtest/gtest.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <string>

namespace mpvm {
namespace {

constexpr int64_t kKeep = 1'000'000'000;

// A child running `prog` (sleep 60), and our end of a socket pair that
// stands for its migrate.sock connection.
struct Child {
  pid_t pid = -1;
  int fd = -1;
  explicit Child(const char* prog) {
    int sv[2];
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0) return;
    pid = fork();
    if (pid == 0) {
      execl(prog, prog, "60", static_cast<char*>(nullptr));
      _exit(127);
    }
    close(sv[1]);
    fd = sv[0];
  }
  // Did it end (by a signal), within a second?
  bool Ended() const {
    for (int i = 0; i < 100; ++i) {
      int status = 0;
      const pid_t r = waitpid(pid, &status, WNOHANG);
      if (r == pid) return WIFSIGNALED(status);
      usleep(10'000);
    }
    return false;
  }
  // Waits (up to 1 s) until the child runs sleep: its /proc/PID/exe says so.
  void WaitForExec() const {
    char got[256];
    for (int i = 0; i < 200; ++i) {
      const ssize_t n =
          readlink(("/proc/" + std::to_string(pid) + "/exe").c_str(), got, sizeof got);
      if (n > 0 && std::string(got, static_cast<size_t>(n)).find("sleep") != std::string::npos)
        return;
      usleep(5'000);
    }
  }
};

TEST(SparePool, KeepsUpToItsLimitPerProgramAndGivesOneBackForTheSameExecutable) {
  SparePool pool(1, kKeep);
  Child a("/bin/sleep"), b("/bin/sleep");
  a.WaitForExec();
  b.WaitForExec();
  ASSERT_TRUE(pool.Wants(a.pid));
  pool.Keep(a.pid, a.fd, 0);
  EXPECT_FALSE(pool.Wants(b.pid)) << "one of /bin/sleep is kept already";
  EXPECT_FALSE(pool.Take("/bin/true").has_value()) << "another executable";
  auto got = pool.Take("/bin/sleep");
  ASSERT_TRUE(got.has_value());
  EXPECT_EQ(got->pid, a.pid);
  EXPECT_EQ(got->fd, a.fd);
  EXPECT_EQ(pool.size(), 0u);
  EXPECT_TRUE(pool.Wants(b.pid)) << "room again";
  for (const Child* c : {&a, &b}) {
    kill(c->pid, SIGKILL);
    waitpid(c->pid, nullptr, 0);
    close(c->fd);
  }
}

TEST(SparePool, EndsASpareKeptTooLongAndSaysWhenTheNextIsDue) {
  SparePool pool(2, kKeep);
  Child a("/bin/sleep"), b("/bin/sleep");
  a.WaitForExec();
  b.WaitForExec();
  pool.Keep(a.pid, a.fd, 0);
  pool.Keep(b.pid, b.fd, kKeep / 2);
  EXPECT_EQ(pool.Expire(kKeep / 4), kKeep * 3 / 4);
  EXPECT_EQ(pool.Expire(kKeep), kKeep / 2) << "the first ends, the second is due later";
  EXPECT_TRUE(a.Ended());
  EXPECT_EQ(pool.size(), 1u);
  pool.Clear();
  EXPECT_TRUE(b.Ended());
  EXPECT_EQ(pool.Expire(kKeep * 10), -1);
}

TEST(SparePool, ForgetsASpareThatDied) {
  SparePool pool(2, kKeep);
  Child a("/bin/sleep");
  a.WaitForExec();
  pool.Keep(a.pid, a.fd, 0);
  kill(a.pid, SIGKILL);
  ASSERT_TRUE(a.Ended());
  EXPECT_TRUE(pool.Reaped(a.pid));
  EXPECT_FALSE(pool.Reaped(a.pid));
  EXPECT_FALSE(pool.Take("/bin/sleep").has_value());
}

TEST(SparePool, KeepsNothingWhenAskedForNone) {
  SparePool pool(0, kKeep);
  Child a("/bin/sleep");
  a.WaitForExec();
  EXPECT_FALSE(pool.Wants(a.pid));
  kill(a.pid, SIGKILL);
  waitpid(a.pid, nullptr, 0);
  close(a.fd);
}

}  // namespace
}  // namespace mpvm
