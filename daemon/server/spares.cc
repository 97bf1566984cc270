#include "server/spares.h"

#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <string>

namespace mpvm {
namespace {

// The identity of process `pid`'s executable.
bool ExeOf(pid_t pid, uint64_t& dev, uint64_t& ino) {
  struct stat st;
  if (stat(("/proc/" + std::to_string(pid) + "/exe").c_str(), &st) != 0) return false;
  dev = st.st_dev;
  ino = st.st_ino;
  return true;
}

}  // namespace

size_t SparePool::CountOf(uint64_t dev, uint64_t ino) const {
  return static_cast<size_t>(std::count_if(spares_.begin(), spares_.end(), [&](const Spare& s) {
    return s.dev == dev && s.ino == ino;
  }));
}

bool SparePool::Wants(pid_t pid) const {
  uint64_t dev = 0, ino = 0;
  return per_program_ > 0 && ExeOf(pid, dev, ino) &&
         CountOf(dev, ino) < static_cast<size_t>(per_program_);
}

void SparePool::Keep(pid_t pid, int fd, int64_t now_ns) {
  Spare s{pid, fd, 0, 0, now_ns};
  if (!ExeOf(pid, s.dev, s.ino)) return End(s);
  spares_.push_back(s);
}

std::optional<SparePool::Spare> SparePool::Take(const char* path) {
  struct stat st;
  if (stat(path, &st) != 0) return std::nullopt;
  for (auto it = spares_.begin(); it != spares_.end(); ++it) {
    if (it->dev != st.st_dev || it->ino != st.st_ino) continue;
    const Spare s = *it;
    spares_.erase(it);
    return s;
  }
  return std::nullopt;
}

int64_t SparePool::Expire(int64_t now_ns) {
  while (!spares_.empty() && now_ns - spares_.front().since_ns >= keep_ns_) {
    End(spares_.front());
    spares_.erase(spares_.begin());
  }
  return spares_.empty() ? -1 : spares_.front().since_ns + keep_ns_ - now_ns;
}

bool SparePool::Reaped(pid_t pid) {
  auto it =
      std::find_if(spares_.begin(), spares_.end(), [pid](const Spare& s) { return s.pid == pid; });
  if (it == spares_.end()) return false;
  close(it->fd);
  spares_.erase(it);
  return true;
}

void SparePool::Clear() {
  for (const Spare& s : spares_) End(s);
  spares_.clear();
}

void SparePool::End(const Spare& s) {
  kill(s.pid, SIGKILL);  // reaped by the daemon's SIGCHLD handling
  close(s.fd);
}

}  // namespace mpvm
