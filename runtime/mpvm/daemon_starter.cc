#include "mpvm/daemon_starter.h"

#include <dlfcn.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>

#include "mpvm/connection.h"
#include "mpvm/paths.h"
#include "mpvm/settings.h"

namespace mpvm {

bool DaemonRunning(const std::string& rundir) {
  int fd = ConnectUnix(DaemonSocketPath(rundir));
  if (fd < 0) return false;
  close(fd);
  return true;
}

namespace {
bool Executable(const std::string& p) { return !p.empty() && access(p.c_str(), X_OK) == 0; }
}  // namespace

std::string FindDaemonBinary() {
  if (const std::string& d = CurrentSettings().daemon; !d.empty() && Executable(d.c_str()))
    return d;
  if (std::string self = SelfExeDir(); Executable(self + "/mpvmd")) return self + "/mpvmd";
  Dl_info info;
  if (dladdr(reinterpret_cast<void*>(&FindDaemonBinary), &info) != 0 && info.dli_fname) {
    std::string lib = info.dli_fname;
    auto slash = lib.rfind('/');
    if (slash != std::string::npos) {
      std::string cand = lib.substr(0, slash) + "/../bin/mpvmd";
      if (Executable(cand)) return cand;
    }
  }
  if (const char* path = std::getenv("PATH"); path != nullptr) {
    std::string p = path;
    size_t pos = 0;
    while (pos <= p.size()) {
      size_t end = p.find(':', pos);
      if (end == std::string::npos) end = p.size();
      std::string cand = p.substr(pos, end - pos) + "/mpvmd";
      if (Executable(cand)) return cand;
      pos = end + 1;
    }
  }
  return "";
}

Result<pid_t> StartDaemon(const std::string& rundir, const std::vector<std::string>& args,
                          bool embedded) {
  if (DaemonRunning(rundir)) return Fail(Err::kDupHost);
  std::string bin = FindDaemonBinary();
  if (bin.empty()) {
    std::fprintf(stderr,
                 "mpvm: cannot find the mpvmd executable; put it on PATH or set MPVM_DAEMON\n");
    return Fail(Err::kCantStart);
  }
  int p[2];
  if (pipe2(p, O_CLOEXEC) != 0) return Fail(Err::kCantStart);
  std::vector<std::string> argv_s = {bin, "--rundir", rundir, "--ready-fd", std::to_string(p[1])};
  if (embedded) argv_s.push_back("--embedded");
  argv_s.insert(argv_s.end(), args.begin(), args.end());
  std::vector<char*> argv;
  for (auto& s : argv_s) argv.push_back(s.data());
  argv.push_back(nullptr);

  pid_t pid = fork();
  if (pid < 0) {
    close(p[0]);
    close(p[1]);
    return Fail(Err::kCantStart);
  }
  if (pid == 0) {
    setsid();
    if (!embedded && fork() != 0) _exit(0);  // detach: the daemon is nobody's child
    fcntl(p[1], F_SETFD, 0);                 // the ready pipe survives exec
    int devnull = open("/dev/null", O_RDWR);
    if (devnull >= 0) {
      // A detached daemon keeps none of the starter's terminal or pipes (it
      // logs to its file); an embedded one keeps stderr for its warnings.
      dup2(devnull, 0);
      dup2(devnull, 1);
      if (!embedded) dup2(devnull, 2);
    }
    execv(bin.c_str(), argv.data());
    dprintf(p[1], "error: cannot execute %s: %s\n", bin.c_str(), std::strerror(errno));
    _exit(127);
  }
  close(p[1]);
  if (!embedded) waitpid(pid, nullptr, 0);  // the intermediate child exits at once
  std::string said;
  char buf[512];
  ssize_t n;
  while ((n = read(p[0], buf, sizeof buf)) > 0 || (n < 0 && errno == EINTR)) {
    if (n > 0) said.append(buf, static_cast<size_t>(n));
    if (said.find('\n') != std::string::npos) break;
  }
  close(p[0]);
  if (said.rfind("ok", 0) == 0) return embedded ? pid : 0;
  if (said.empty()) said = "mpvmd exited before it was ready\n";
  std::fprintf(stderr, "mpvm: could not start the daemon: %s", said.c_str());
  if (embedded) waitpid(pid, nullptr, 0);
  return Fail(said.find("already") != std::string::npos ? Err::kDupHost : Err::kCantStart);
}

}  // namespace mpvm
