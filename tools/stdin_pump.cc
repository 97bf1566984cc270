// stdin_pump.cc — see stdin_pump.h.
#include "stdin_pump.h"

#include <fcntl.h>
#include <fmt/format.h>
#include <pthread.h>
#include <signal.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <thread>

namespace mpvm::prun {

namespace {

// Copies fd 0 to `out` until the terminal's end of file (^D) or until no
// one reads the pipe any more; then closes `out`, which rank 0 reads as
// its end of file.
void Pump(int out) {
  sigset_t all;
  sigfillset(&all);
  pthread_sigmask(SIG_BLOCK, &all, nullptr);  // prun's signals stay with its main thread
  char buf[4096];
  for (;;) {
    const ssize_t n = read(0, buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && errno == EIO) {  // prun is in the background (SIGTTIN blocked): wait for fg
      usleep(200'000);
      continue;
    }
    if (n <= 0) break;
    ssize_t done = 0;
    while (done < n) {
      const ssize_t w = write(out, buf + done, static_cast<size_t>(n - done));
      if (w < 0 && errno == EINTR) continue;
      if (w <= 0) {  // EPIPE (blocked SIGPIPE): rank 0 has gone
        close(out);
        return;
      }
      done += w;
    }
  }
  close(out);
}

}  // namespace

std::string StdinPump::Start(std::string* why) {
  int p[2];
  if (pipe2(p, O_CLOEXEC) != 0) {
    *why = fmt::format("cannot make a pipe for rank 0's stdin: {}", std::strerror(errno));
    return "";
  }
  read_fd_ = p[0];
  std::thread(Pump, p[1]).detach();  // ends with prun
  return fmt::format("/proc/{}/fd/{}", getpid(), read_fd_);
}

void StdinPump::Opened() {
  if (read_fd_ >= 0) close(read_fd_);
  read_fd_ = -1;
}

}  // namespace mpvm::prun
