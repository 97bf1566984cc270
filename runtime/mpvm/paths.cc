#include "mpvm/paths.h"

#include <fmt/format.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>

namespace mpvm {

std::string RunDir() {
  if (const char* d = std::getenv("MPVM_RUNDIR"); d != nullptr && *d != '\0') return d;
  return fmt::format("/tmp/mpvm.{}", getuid());
}

mpvm::expected<void, std::string> EnsureRunDir(const std::string& dir) {
  if (mkdir(dir.c_str(), 0700) != 0 && errno != EEXIST)
    return mpvm::unexpected(
        fmt::format("cannot create runtime directory {}: {}", dir, std::strerror(errno)));
  struct stat st;
  if (lstat(dir.c_str(), &st) != 0)
    return mpvm::unexpected(fmt::format("cannot stat {}: {}", dir, std::strerror(errno)));
  if (!S_ISDIR(st.st_mode))
    return mpvm::unexpected(fmt::format("{} exists and is not a directory; remove it", dir));
  if (st.st_uid != getuid())
    return mpvm::unexpected(fmt::format(
        "{} belongs to uid {}, not to you (uid {}); set MPVM_RUNDIR to a directory of yours", dir,
        st.st_uid, getuid()));
  if ((st.st_mode & 077) != 0) {
    if (chmod(dir.c_str(), 0700) != 0)
      return mpvm::unexpected(fmt::format("{} is open to other users and chmod 0700 failed: {}",
                                          dir, std::strerror(errno)));
  }
  return {};
}

std::string DaemonSocketPath(const std::string& dir) { return dir + "/mpvmd.sock"; }
std::string DaemonLockPath(const std::string& dir) { return dir + "/mpvmd.lock"; }
std::string DaemonLogPath(const std::string& dir) { return dir + "/mpvmd.log"; }
std::string VirtualCpuPath(const std::string& dir) { return dir + "/vcpu"; }
std::string TaskSocketPath(const std::string& dir, Tid tid) {
  return fmt::format("{}/{}.sock", dir, tid.str());
}

std::string SelfExeDir() {
  char buf[4096];
  ssize_t n = readlink("/proc/self/exe", buf, sizeof buf - 1);
  if (n <= 0) return "";
  std::string p(buf, static_cast<size_t>(n));
  auto slash = p.rfind('/');
  return slash == std::string::npos ? "" : p.substr(0, slash);
}

}  // namespace mpvm
