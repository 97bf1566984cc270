#include "server/host_launch.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <fmt/format.h>
#include <netdb.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <spawn.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <regex>
#include <set>
#include <sstream>

#include "mpvm/connection.h"
#include "mpvm/settings.h"

extern char** environ;

namespace mpvm {

namespace {

std::string Joined(const std::vector<std::string>& argv) {
  std::string s;
  for (const auto& a : argv) s += (s.empty() ? "" : " ") + a;
  return s;
}

// Runs argv and returns (exit status, everything it printed on stdout).
mpvm::expected<std::string, std::string> Capture(const std::vector<std::string>& argv) {
  int out[2], err[2];
  if (pipe2(out, O_CLOEXEC) != 0) return mpvm::unexpected(std::string(std::strerror(errno)));
  if (pipe2(err, O_CLOEXEC) != 0) {
    close(out[0]);
    close(out[1]);
    return mpvm::unexpected(std::string(std::strerror(errno)));
  }
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_adddup2(&fa, out[1], 1);
  posix_spawn_file_actions_adddup2(&fa, err[1], 2);
  std::vector<char*> args;
  for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
  args.push_back(nullptr);
  pid_t pid;
  int rc = posix_spawnp(&pid, args[0], &fa, nullptr, args.data(), environ);
  posix_spawn_file_actions_destroy(&fa);
  close(out[1]);
  close(err[1]);
  if (rc != 0) {
    close(out[0]);
    close(err[0]);
    return mpvm::unexpected(fmt::format("cannot run {}: {}", argv[0], std::strerror(rc)));
  }
  // Read both to the end (the outputs of these commands are small).
  std::string o, e;
  pollfd fds[2] = {{out[0], POLLIN, 0}, {err[0], POLLIN, 0}};
  int open_fds = 2;
  while (open_fds > 0) {
    if (poll(fds, 2, -1) < 0 && errno != EINTR) break;
    for (int i = 0; i < 2; ++i) {
      if (fds[i].fd < 0 || fds[i].revents == 0) continue;
      char buf[4096];
      ssize_t n = read(fds[i].fd, buf, sizeof buf);
      if (n > 0) {
        (i == 0 ? o : e).append(buf, static_cast<size_t>(n));
      } else if (n == 0 || errno != EINTR) {
        close(fds[i].fd);
        fds[i].fd = -1;
        --open_fds;
      }
    }
  }
  int status = 0;
  while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
    while (!e.empty() && e.back() == '\n') e.pop_back();
    return mpvm::unexpected(
        fmt::format("`{}` failed: {}", Joined(argv), e.empty() ? "no message" : e));
  }
  return o;
}

}  // namespace

mpvm::expected<void, std::string> RunCommand(const std::vector<std::string>& argv) {
  auto r = Capture(argv);
  if (!r) return mpvm::unexpected(r.error());
  return {};
}

// ---- EmulatedNet ------------------------------------------------------------

bool EmulatedNet::Available(std::string* why) {
  if (CurrentSettings().emulate_loopback) {
    *why = "MPVM_EMULATE=loopback";
    return false;
  }
  if (geteuid() != 0) {
    *why = "network namespaces need root";
    return false;
  }
  if (access("/usr/sbin/ip", X_OK) != 0 && access("/sbin/ip", X_OK) != 0 &&
      access("/usr/bin/ip", X_OK) != 0) {
    *why = "the `ip` command (package iproute2) is not installed";
    return false;
  }
  return true;
}

EmulatedNet::~EmulatedNet() {
  if (!bridge_.empty()) (void)RunCommand({"ip", "link", "del", bridge_});
}

mpvm::expected<std::string, std::string> EmulatedNet::Ensure() {
  if (!bridge_.empty()) return prefix_ + "1";
  // Remove bridges of masters that no longer run.
  if (auto links = Capture({"ip", "-o", "link", "show", "type", "bridge"}); links) {
    std::istringstream in(*links);
    std::string line;
    while (std::getline(in, line)) {
      auto at = line.find(": mpvmb");
      if (at == std::string::npos) continue;
      std::string name = line.substr(at + 2, line.find(':', at + 2) - at - 2);
      if (auto a = name.find('@'); a != std::string::npos) name.resize(a);
      const std::string pid = name.substr(5);
      if (!pid.empty() && access(("/proc/" + pid).c_str(), F_OK) != 0)
        (void)RunCommand({"ip", "link", "del", name});
    }
  }
  // A 10.213.N.0/24 that no interface of this namespace uses yet.
  auto addrs = Capture({"ip", "-o", "-4", "addr", "show"});
  if (!addrs) return mpvm::unexpected(addrs.error());
  std::string prefix;
  for (int n = getpid() % 250; prefix.empty() && n < getpid() % 250 + 250; ++n) {
    std::string cand = fmt::format("10.213.{}.", n % 250);
    if (addrs->find(" " + cand) == std::string::npos) prefix = cand;
  }
  if (prefix.empty()) return mpvm::unexpected(std::string("no free subnet in 10.213.0.0/16"));
  const std::string name = fmt::format("mpvmb{}", getpid());
  if (auto r = RunCommand({"ip", "link", "add", name, "type", "bridge"}); !r)
    return mpvm::unexpected(r.error());
  bridge_ = name;
  for (const auto& cmd : std::vector<std::vector<std::string>>{
           {"ip", "addr", "add", prefix + "1/24", "dev", name}, {"ip", "link", "set", name, "up"}})
    if (auto r = RunCommand(cmd); !r) return mpvm::unexpected(r.error());
  prefix_ = prefix;
  return prefix_ + "1";
}

std::string EmulatedNet::NextAddress() {
  // Addresses are not reused while this master runs (253 hosts at most).
  if (next_host_ > 254) return "";
  return prefix_ + std::to_string(next_host_++);
}

mpvm::expected<std::string, std::string> EmulatedNet::LinkRate() {
  return CurrentSettings().emulate_link;  // checked as the settings were read
}

mpvm::expected<void, std::string> EmulatedNet::Attach(pid_t pid) {
  auto rate = LinkRate();
  if (!rate) return mpvm::unexpected(rate.error());
  const std::string veth = fmt::format("mpvmv{}.{}", getpid() % 100000, next_veth_++);
  if (auto r = RunCommand({"ip", "link", "add", veth, "type", "veth", "peer", "name", "eth0",
                           "netns", std::to_string(pid)});
      !r)
    return r;
  if (auto r = RunCommand({"ip", "link", "set", veth, "master", bridge_, "up"}); !r) return r;
  if (rate->empty()) return {};
  // What reaches the host, from the others and from the master, passes at
  // the rate: a NIC of that speed (a token bucket; no added latency).
  return RunCommand({"tc", "qdisc", "add", "dev", veth, "root", "tbf", "rate", *rate, "burst",
                     "16kb", "latency", "100ms"});
}

// ---- Launching ---------------------------------------------------------------

mpvm::expected<Launch, std::string> LaunchDaemon(const std::vector<std::string>& argv_in,
                                                 EmulatedNet* net, const std::string& netns_address,
                                                 const std::string& stdin_text) {
  std::vector<std::string> argv = argv_in;
  if (!netns_address.empty()) {
    // Inside its namespace, the child brings up its interfaces and then
    // becomes the daemon.
    argv.insert(argv.begin(),
                {"/bin/sh", "-c",
                 fmt::format("ip link set lo up && ip addr add {}/24 dev eth0 && ip link set eth0 "
                             "up && exec \"$@\"",
                             netns_address),
                 "sh"});
  }
  int out[2], in[2], sync[2], go[2];
  if (pipe2(out, O_CLOEXEC) != 0) return mpvm::unexpected(std::string(std::strerror(errno)));
  if (pipe2(in, O_CLOEXEC) != 0 || pipe2(sync, O_CLOEXEC) != 0 || pipe2(go, O_CLOEXEC) != 0)
    return mpvm::unexpected(std::string(std::strerror(errno)));
  std::vector<char*> args;
  for (auto& a : argv) args.push_back(a.data());
  args.push_back(nullptr);
  const bool netns = !netns_address.empty();
  pid_t pid = fork();
  if (pid < 0) return mpvm::unexpected(std::string(std::strerror(errno)));
  if (pid == 0) {
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, nullptr);
    if (netns) {
      char c = unshare(CLONE_NEWNET) == 0 ? 'u' : 'x';
      (void)!write(sync[1], &c, 1);
      if (c != 'u' || read(go[0], &c, 1) != 1 || c != 'g') _exit(126);
    }
    dup2(in[0], 0);
    dup2(out[1], 1);
    dup2(out[1], 2);
    execvp(args[0], args.data());
    const char msg[] = "cannot execute the daemon command\n";
    (void)!write(2, msg, sizeof msg - 1);
    _exit(127);
  }
  close(out[1]);
  close(in[0]);
  close(sync[1]);
  close(go[0]);
  std::string failure;
  if (netns) {
    char c = 0;
    if (read(sync[0], &c, 1) != 1 || c != 'u') {
      failure = "cannot create a network namespace";
    } else if (auto r = net->Attach(pid); !r) {
      failure = r.error();
    } else {
      c = 'g';
      (void)!write(go[1], &c, 1);
    }
  }
  close(sync[0]);
  close(go[1]);
  if (!failure.empty()) {
    kill(pid, SIGKILL);
    while (waitpid(pid, nullptr, 0) < 0 && errno == EINTR) {
    }
    close(out[0]);
    close(in[1]);
    return mpvm::unexpected(failure);
  }
  // A short text always fits in the pipe; the daemon reads it at start.
  if (!stdin_text.empty()) (void)!write(in[1], stdin_text.data(), stdin_text.size());
  close(in[1]);
  SetNonBlocking(out[0]);
  return Launch{pid, out[0]};
}

std::vector<std::string> RemoteShell() {
  std::vector<std::string> cmd;
  const std::string& rsh = CurrentSettings().rsh;  // MPVM_RSH, or PVM's PVM_RSH
  std::istringstream in(!rsh.empty() ? rsh : "ssh -o BatchMode=yes");
  std::string w;
  while (in >> w) cmd.push_back(w);
  return cmd;
}

std::string LocalAddressToward(const std::string& host) {
  addrinfo hints{};
  hints.ai_family = AF_INET;
  hints.ai_socktype = SOCK_DGRAM;
  addrinfo* res = nullptr;
  if (getaddrinfo(host.c_str(), "9", &hints, &res) != 0 || res == nullptr) return "";
  std::string out;
  int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (fd >= 0 && connect(fd, res->ai_addr, res->ai_addrlen) == 0) {
    sockaddr_in me{};
    socklen_t len = sizeof me;
    char buf[INET_ADDRSTRLEN];
    if (getsockname(fd, reinterpret_cast<sockaddr*>(&me), &len) == 0 &&
        inet_ntop(AF_INET, &me.sin_addr, buf, sizeof buf) != nullptr)
      out = buf;
  }
  if (fd >= 0) close(fd);
  freeaddrinfo(res);
  return out;
}

}  // namespace mpvm

namespace mpvm {

std::string ResolveIPv4(const std::string& host) {
  addrinfo hints{};
  hints.ai_family = AF_INET;
  addrinfo* res = nullptr;
  if (getaddrinfo(host.c_str(), nullptr, &hints, &res) != 0 || res == nullptr) return "";
  char buf[INET_ADDRSTRLEN] = {};
  inet_ntop(AF_INET, &reinterpret_cast<sockaddr_in*>(res->ai_addr)->sin_addr, buf, sizeof buf);
  freeaddrinfo(res);
  return buf;
}

}  // namespace mpvm
