#include "server/run_dir.h"

#include <dirent.h>
#include <fcntl.h>
#include <fmt/format.h>
#include <spdlog/spdlog.h>
#include <sys/file.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>

#include "mpvm/paths.h"
#include "mpvm/settings.h"

namespace mpvm {
namespace {

std::string ReadLockPid(const std::string& path) {
  char buf[32] = {};
  int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return "?";
  ssize_t n = read(fd, buf, sizeof buf - 1);
  close(fd);
  std::string s = n > 0 ? std::string(buf, static_cast<size_t>(n)) : "?";
  while (!s.empty() && (s.back() == '\n' || s.back() == ' ')) s.pop_back();
  return s;
}

}  // namespace

bool RunDirLock::Take(std::string* error) {
  if (auto r = EnsureRunDir(path_); !r) {
    *error = r.error();
    return false;
  }
  const std::string lock = DaemonLockPath(path_);
  lock_fd_ = open(lock.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600);
  if (lock_fd_ < 0) {
    *error = fmt::format("cannot open {}: {}", lock, std::strerror(errno));
    return false;
  }
  if (flock(lock_fd_, LOCK_EX | LOCK_NB) != 0) {
    *error = fmt::format(
        "another mpvmd (pid {}) already serves the virtual machine in {}; use it, or stop it "
        "with `mpvm halt`",
        ReadLockPid(lock), path_);
    close(lock_fd_);
    lock_fd_ = -1;
    return false;
  }
  RemoveLeftovers();  // we hold the lock: anything here was left by a daemon that died
  if (ftruncate(lock_fd_, 0) == 0) {
    auto pid = std::to_string(getpid()) + "\n";
    (void)!write(lock_fd_, pid.data(), pid.size());
  }
  return true;
}

void RunDirLock::RemoveLeftovers() {
  int stale = 0;
  if (DIR* d = opendir(path_.c_str())) {
    while (dirent* e = readdir(d)) {
      std::string n = e->d_name;
      if (n.size() > 5 && n.ends_with(".sock")) {
        unlink((path_ + "/" + n).c_str());
        ++stale;
      }
    }
    closedir(d);
  }
  // Its address and VM key too: a new VM gets a new key, as after a halt.
  for (const char* file : {"master.addr", "vm.key", "vcpu"}) {
    const std::string path = path_ + "/" + file;
    if ((std::string(file) != "vm.key" || !keep_key_) && unlink(path.c_str()) == 0) ++stale;
  }
  if (stale > 0)
    spdlog::warn("removed {} file(s) left in {} by a daemon that did not stop cleanly", stale,
                 path_);
}

void RunDirLock::Release() {
  unlink(DaemonSocketPath(path_).c_str());
  if (DIR* d = opendir(path_.c_str())) {
    while (dirent* e = readdir(d)) {
      std::string n = e->d_name;
      if (n.ends_with(".sock")) unlink((path_ + "/" + n).c_str());
    }
    closedir(d);
  }
  if (!CurrentSettings().keep_log) unlink(DaemonLogPath(path_).c_str());
  unlink((path_ + "/master.addr").c_str());
  unlink(VirtualCpuPath(path_).c_str());
  unlink((path_ + "/hash-cache").c_str());              // tasks' file hashes (ckpt/internal.cc)
  if (!keep_key_) unlink((path_ + "/vm.key").c_str());  // the VM's key ends with it
  unlink(DaemonLockPath(path_).c_str());
  close(lock_fd_);
  rmdir(path_.c_str());  // only succeeds when nothing else is left
}

}  // namespace mpvm
