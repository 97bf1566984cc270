#include "server/processes.h"

#include <fcntl.h>
#include <fmt/format.h>
#include <signal.h>
#include <spdlog/spdlog.h>
#include <sys/personality.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <limits>
#include <sstream>

#include "mpvm/ckpt/ckpt.h"
#include "mpvm/connection.h"
#include "mpvm/migrate_wire.h"
#include "mpvm/paths.h"

namespace mpvm {
namespace {

bool IsExecutableFile(const std::string& p) {
  struct stat st;
  return stat(p.c_str(), &st) == 0 && S_ISREG(st.st_mode) && access(p.c_str(), X_OK) == 0;
}

// The task's stdin: `path` (prun's standard input, as /proc/PID/fd/0), or -1
// for /dev/null. Opened without blocking (a pipe whose writer has gone would
// block), then made blocking as a program expects.
int OpenStdin(const std::string& path) {
  if (path.empty()) return -1;
  int fd = open(path.c_str(), O_RDONLY | O_NONBLOCK | O_CLOEXEC);
  if (fd < 0) {
    spdlog::warn("cannot open {} as a task's stdin ({}); it reads /dev/null", path,
                 std::strerror(errno));
    return -1;
  }
  fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) & ~O_NONBLOCK);
  return fd;
}

// In the child of vfork(): becomes the task. `stdio` are its stdin (-1:
// /dev/null), stdout and stderr; exec's errno goes to `exec_errno_fd`.
[[noreturn]] void ExecTask(const SpawnSpec& spec, std::array<int, 3> stdio, int exec_errno_fd,
                           const std::vector<int>& keep, std::vector<char*>& argv,
                           std::vector<char*>& envp) {
  sigset_t none;
  sigemptyset(&none);
  sigprocmask(SIG_SETMASK, &none, nullptr);
  signal(SIGPIPE, SIG_DFL);
  setpgid(0, 0);
  // If this daemon dies (even by SIGKILL), its tasks end too: no process
  // of a dead host is left behind.
  prctl(PR_SET_PDEATHSIG, SIGTERM);
  // A fixed address-space layout: a task can then be restored in a fresh
  // process of the same executable on another host (migration). Set here,
  // before exec, rather than by a re-exec in the task.
  if (const int cur = personality(0xffffffff); cur != -1) personality(cur | ADDR_NO_RANDOMIZE);
  if (stdio[0] >= 0) {
    dup2(stdio[0], 0);
  } else if (int devnull = open("/dev/null", O_RDONLY); devnull >= 0) {
    dup2(devnull, 0);
  }
  dup2(stdio[1], 1);
  dup2(stdio[2], 2);
  // Descriptors the daemon itself inherited from whoever started it are no
  // business of the task (and would pin it: a foreign pipe cannot move).
  syscall(SYS_close_range, 3u, ~0u, 4u);      // 4: CLOSE_RANGE_CLOEXEC
  for (int fd : keep) fcntl(fd, F_SETFD, 0);  // a restore process's listener and ready pipe
  if (!spec.cwd.empty() && chdir(spec.cwd.c_str()) != 0) {
    const char* home = getenv("HOME");
    if (home == nullptr || chdir(home) != 0) (void)!chdir("/");
  }
  execve(spec.path.c_str(), argv.data(), envp.data());
  int e = errno;
  (void)!write(exec_errno_fd, &e, sizeof e);
  _exit(127);
}

}  // namespace

namespace {

// A task's output pipes: the read ends stay here, the write ends are its
// stdout and stderr.
struct OutputPipes {
  int out[2] = {-1, -1};
  int err[2] = {-1, -1};
  bool Open() {
    if (pipe2(out, O_CLOEXEC) != 0) return false;
    if (pipe2(err, O_CLOEXEC) == 0) return true;
    close(out[0]);
    close(out[1]);
    return false;
  }
  void CloseTheirs() {
    close(out[1]);
    close(err[1]);
  }
  void CloseAll() {
    CloseTheirs();
    close(out[0]);
    close(err[0]);
  }
};

// The environment as one block: NUL-terminated strings, then an empty one.
std::string EnvBlock(const std::vector<std::string>& env) {
  std::string block;
  for (const auto& e : env) {
    block += e;
    block += '\0';
  }
  block += '\0';
  return block;
}

}  // namespace

void TaskProcesses::Adopt(pid_t pid, Tid t, int out_read, int err_read) {
  SetNonBlocking(out_read);
  SetNonBlocking(err_read);
  pipes_[next_pipe_++] = {t, out_read};
  pipes_[next_pipe_++] = {t, err_read, true};
  pids_[pid] = t;
  if (limit_ != nullptr) limit_->Add(pid);
}

Result<int> TaskProcesses::Spawn(const SpawnSpec& spec, std::vector<int> keep) {
  OutputPipes io;
  int ex[2];
  if (!io.Open()) return Fail(Err::kOutOfRes);
  if (pipe2(ex, O_CLOEXEC) != 0) {
    io.CloseAll();
    return Fail(Err::kOutOfRes);
  }
  std::vector<char*> argv, envp;
  for (const auto& a : spec.argv) argv.push_back(const_cast<char*>(a.c_str()));
  argv.push_back(nullptr);
  for (const auto& e : spec.env) envp.push_back(const_cast<char*>(e.c_str()));
  envp.push_back(nullptr);

  const int in = OpenStdin(spec.stdin_path);
  // vfork, as posix_spawn does: the child borrows this daemon's memory until
  // it execs. fork() copied the daemon's page tables and left every page the
  // daemon wrote afterwards to fault once more (10-20 us a page on a virtual
  // machine: about 10 ms of daemon CPU a spawn with 2 MB written, measured).
  // The child only makes system calls and reads what it is given.
  pid_t pid = vfork();
  if (pid < 0) {
    io.CloseAll();
    for (int fd : {ex[0], ex[1], in}) close(fd);
    return Fail(Err::kOutOfRes);
  }
  if (pid == 0) ExecTask(spec, {in, io.out[1], io.err[1]}, ex[1], keep, argv, envp);
  io.CloseTheirs();
  close(ex[1]);
  if (in >= 0) close(in);
  int child_errno = 0;
  ssize_t r;
  do {
    r = read(ex[0], &child_errno, sizeof child_errno);
  } while (r < 0 && errno == EINTR);
  close(ex[0]);
  if (r == sizeof child_errno) {
    close(io.out[0]);
    close(io.err[0]);
    waitpid(pid, nullptr, 0);
    spdlog::warn("cannot execute {}: {}", spec.path, std::strerror(child_errno));
    return Fail(child_errno == ENOENT                             ? Err::kNoFile
                : child_errno == EACCES || child_errno == ENOEXEC ? Err::kDenied
                                                                  : Err::kOutOfRes);
  }
  Adopt(pid, spec.tid, io.out[0], io.err[0]);
  return pid;
}

Result<int> TaskProcesses::Revive(pid_t pid, int order_fd, const SpawnSpec& spec,
                                  const std::array<int, 3>& keep) {
  const std::string env = EnvBlock(spec.env);
  if (env.size() + 2 > ckpt::kSpareEnvMax) return Fail(Err::kBadParam);  // too large for it
  OutputPipes io;
  if (!io.Open()) return Fail(Err::kOutOfRes);
  int in = OpenStdin(spec.stdin_path);
  if (in < 0) in = open("/dev/null", O_RDONLY | O_CLOEXEC);
  const ckpt::SpareOrder head{ckpt::kSpareMagic, static_cast<uint32_t>(env.size())};
  const int fds[ckpt::kSpareOrderFds] = {in, io.out[1], io.err[1], keep[0], keep[1], keep[2]};
  const bool sent = in >= 0 &&
                    migrate::SendWithRights(order_fd, &head, sizeof head, fds, std::size(fds)) &&
                    migrate::SendAll(order_fd, env.data(), env.size());
  if (in >= 0) close(in);
  io.CloseTheirs();
  if (!sent) {  // it died meanwhile: the caller starts a process afresh
    close(io.out[0]);
    close(io.err[0]);
    return Fail(Err::kSysErr);
  }
  Adopt(pid, spec.tid, io.out[0], io.err[0]);
  return pid;
}

std::string TaskProcesses::Resolve(const std::string& file, const std::string& path_env,
                                   const std::string& cwd) const {
  if (file.find('/') != std::string::npos) {
    std::string p = file[0] == '/' ? file : cwd + "/" + file;
    return IsExecutableFile(p) ? p : "";
  }
  std::vector<std::string> dirs;
  if (const char* home = getenv("HOME"); home != nullptr)
    dirs.push_back(std::string(home) + "/pvm3/bin/" + kArch);
  for (size_t from = 0; from < ep_.size();) {
    size_t end = ep_.find(':', from);
    if (end == std::string::npos) end = ep_.size();
    if (end > from) dirs.push_back(ep_.substr(from, end - from));
    from = end + 1;
  }
  size_t pos = 0;
  while (pos <= path_env.size()) {
    size_t end = path_env.find(':', pos);
    if (end == std::string::npos) end = path_env.size();
    std::string d = path_env.substr(pos, end - pos);
    dirs.push_back(d.empty() ? cwd : (d[0] == '/' ? d : cwd + "/" + d));
    pos = end + 1;
  }
  for (const auto& d : dirs) {
    std::string p = d + "/" + file;
    if (IsExecutableFile(p)) return p;
  }
  return "";
}

void TaskProcesses::RemoveTaskSocket(Tid t) const { unlink(TaskSocketPath(rundir_, t).c_str()); }

void TaskProcesses::AppendPollItems(std::vector<zmq_pollitem_t>& items,
                                    std::vector<uint64_t>& ids) const {
  for (const auto& [id, p] : pipes_) {
    items.push_back({nullptr, p.fd, ZMQ_POLLIN, 0});
    ids.push_back(id);
  }
}

bool TaskProcesses::ReadPipe(uint64_t id, const OutputFn& out) {
  auto pit = pipes_.find(id);
  if (pit == pipes_.end()) return true;  // drained and closed by a commit this round
  const Pipe p = pit->second;
  char buf[65536];
  ssize_t r = read(p.fd, buf, sizeof buf);
  if (r > 0) {
    out(p.tid, std::string_view(buf, static_cast<size_t>(r)), p.is_stderr);
    return true;
  }
  return !(r == 0 || (errno != EAGAIN && errno != EINTR));
}

std::optional<Tid> TaskProcesses::ClosePipe(uint64_t id) {
  auto pit = pipes_.find(id);
  if (pit == pipes_.end()) return std::nullopt;
  const Tid t = pit->second.tid;
  close(pit->second.fd);
  pipes_.erase(pit);
  return t;
}

void TaskProcesses::Drain(Tid t, const OutputFn& out) {
  for (auto it = pipes_.begin(); it != pipes_.end();) {
    if (it->second.tid != t) {
      ++it;
      continue;
    }
    char buf[65536];
    ssize_t r;
    while ((r = read(it->second.fd, buf, sizeof buf)) > 0)
      out(t, std::string_view(buf, static_cast<size_t>(r)), it->second.is_stderr);
    close(it->second.fd);
    it = pipes_.erase(it);
  }
}

ProcessSample TaskProcesses::Sample(int pid) {
  ProcessSample s;
  std::ifstream f(fmt::format("/proc/{}/stat", pid));
  std::string text;
  if (!std::getline(f, text)) return s;
  // The command name, in parentheses, may hold spaces: fields count from
  // the last ')'. Field 3 is the state, 14 and 15 utime and stime (clock
  // ticks), 24 the resident pages.
  const auto close = text.rfind(')');
  if (close == std::string::npos) return s;
  std::istringstream in(text.substr(close + 2));
  std::vector<std::string> fields{"pid", "comm"};
  for (std::string w; in >> w;) fields.push_back(w);
  if (fields.size() < 24) return s;
  const char state = fields[2][0];
  static const double tick_ns = 1e9 / static_cast<double>(sysconf(_SC_CLK_TCK));
  static const uint64_t page = static_cast<uint64_t>(sysconf(_SC_PAGESIZE));
  s.ok = state != 'Z' && state != 'X';
  // Stopped ('T') counts as runnable: an emulated host's duty cycle stops
  // its tasks while they still have work.
  s.runnable = state == 'R' || state == 'T';
  s.stopped = state == 'T';
  s.cpu_ns =
      static_cast<int64_t>(static_cast<double>(std::strtoll(fields[13].c_str(), nullptr, 10) +
                                               std::strtoll(fields[14].c_str(), nullptr, 10)) *
                           tick_ns);
  s.rss_bytes = std::strtoull(fields[23].c_str(), nullptr, 10) * page;
  return s;
}

int TaskProcesses::MachineRunning() {
  std::ifstream f("/proc/stat");
  for (std::string key; f >> key;) {
    if (key == "procs_running") {
      int n = -1;
      f >> n;
      return n;
    }
    f.ignore(std::numeric_limits<std::streamsize>::max(), '\n');
  }
  return -1;
}

std::optional<Tid> TaskProcesses::Reaped(pid_t pid) {
  if (limit_ != nullptr) limit_->Remove(pid);
  auto it = pids_.find(pid);
  if (it == pids_.end()) return std::nullopt;
  const Tid t = it->second;
  pids_.erase(it);
  return t;
}

void TaskProcesses::Forget(pid_t pid, Tid t) {
  if (limit_ != nullptr) limit_->Remove(pid);
  if (auto it = pids_.find(pid); it != pids_.end() && it->second == t) pids_.erase(it);
}

void TaskProcesses::CloseAll() {
  for (auto& [id, p] : pipes_) close(p.fd);
  pipes_.clear();
}

}  // namespace mpvm
