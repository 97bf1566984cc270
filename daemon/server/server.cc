#include "server/server.h"

#include <fcntl.h>
#include <fmt/format.h>
#include <signal.h>
#include <sodium.h>
#include <spdlog/spdlog.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <fstream>

#include "mpvm/clock.h"
#include "mpvm/paths.h"
#include "server/daemon_config.h"

namespace mpvm {
namespace {

constexpr int64_t kGraceNs = 2'000'000'000;  // SIGTERM, then SIGKILL after this
constexpr ConnId kListener = ~ConnId{0}, kSignals = ~ConnId{0} - 1;

}  // namespace

Server::Server(ServerOptions opts)
    : opts_(std::move(opts)), run_dir_(opts_.rundir, !opts_.key.empty()), procs_(opts_.rundir) {}

Server::~Server() {
  if (signal_fd_ >= 0) close(signal_fd_);
}

// ---- Start ------------------------------------------------------------------

bool Server::Setup(std::string* error) {
  if (!run_dir_.Take(error) || !OpenListener(error)) return false;
  ShareHashCache();
  BlockSignals();
  std::vector<HostSpec> others;  // hosts the master starts
  auto cfg = MakeDaemonConfig(opts_, error, &others);
  if (!cfg) return false;
  procs_.set_ep(opts_.ep);
  if (opts_.virtual_work) {
    cfg->virtual_work = true;
    cfg->cores = 1;
    PublishVirtualCpu(cfg->speed, 0);
  } else if (opts_.emulate_speed) {
    LimitCpu(*cfg);
    cfg->cores = 1;  // an emulated host's speed is its whole capacity
  }
  const int speed = cfg->speed;
  core_ = std::make_unique<DaemonCore>(std::move(*cfg), this);
  links_ = std::make_unique<VmLinks>(opts_, *core_);
  hosts_ = std::make_unique<HostStarter>(opts_, *links_, speed);
  if (opts_.emulate_speed) hosts_->TakeCpu(OwnCpu(), speed);
  moves_ = std::make_unique<MoveIo>(opts_.fault, opts_.spares, *core_, conns_, procs_);
  moves_->Listen(opts_.rundir);
  if (!links_->Link(error)) return false;
  if (!others.empty() && !opts_.join.empty()) {
    *error =
        "a member daemon (--join) cannot start the hosts of a host file; give it to the master";
    return false;
  }
  StartOtherHosts(others);
  return true;
}

int Server::OwnCpu() const {
  // A master that is itself an emulated host takes the first CPU; the hosts
  // it starts are given theirs (HostStarter::PickCpu).
  return opts_.emulate_cpu >= 0 ? opts_.emulate_cpu : opts_.join.empty() ? 0 : -1;
}

void Server::LimitCpu(const DaemonConfig& cfg) {
  std::string why;
  cpu_limit_ =
      MakeCpuLimit(cfg.hostname, cfg.speed, MachineCpus(), opts_.cpu_limit_mode, OwnCpu(), &why);
  if (!cpu_limit_) {
    spdlog::info("emulated speed {}: no less than this machine's {} CPUs, nothing to limit",
                 cfg.speed, MachineCpus());
    return;
  }
  if (!why.empty() && opts_.cpu_limit_mode.empty())
    spdlog::warn("emulated speed: no cgroup to use ({})", why);
  spdlog::info("emulated speed {}: tasks get {:.2f} CPU through {}", cfg.speed, cfg.speed / 1000.0,
               cpu_limit_->How());
  procs_.set_cpu_limit(cpu_limit_.get());
}

bool Server::OpenListener(std::string* error) {
  listen_fd_ = ListenUnix(DaemonSocketPath(opts_.rundir));
  if (listen_fd_ >= 0) return true;
  *error = fmt::format("cannot listen on {}: {}", DaemonSocketPath(opts_.rundir),
                       std::strerror(-listen_fd_));
  return false;
}

void Server::BlockSignals() {
  sigset_t set;
  sigemptyset(&set);
  for (int s : {SIGCHLD, SIGTERM, SIGINT, SIGHUP}) sigaddset(&set, s);
  sigprocmask(SIG_BLOCK, &set, nullptr);
  signal_fd_ = signalfd(-1, &set, SFD_NONBLOCK | SFD_CLOEXEC);
  signal(SIGPIPE, SIG_IGN);
}

void Server::StartOtherHosts(const std::vector<HostSpec>& others) {
  for (const auto& why : core_->StartHosts(others))
    std::fprintf(stderr, "mpvmd: %s: %s\n", opts_.hostfile.c_str(), why.c_str());
}

void Server::ReportReady(const std::string& error) {
  ready_reported_ = true;
  if (opts_.ready_fd < 0) return;
  const std::string msg = error.empty() ? "ok\n" : "error: " + error + "\n";
  (void)!write(opts_.ready_fd, msg.data(), msg.size());
  if (opts_.ready_fd <= 2) {
    // Started with its report on stdout (a remote shell): keep the
    // descriptor taken, so that nothing opened later lands on it.
    int devnull = open("/dev/null", O_RDWR | O_CLOEXEC);
    if (devnull >= 0) {
      dup2(devnull, opts_.ready_fd);
      close(devnull);
    }
  } else {
    close(opts_.ready_fd);
  }
  opts_.ready_fd = -1;
}

int Server::Run() {
  std::string error;
  if (!Setup(&error)) {
    spdlog::error("{}", error);
    std::fprintf(stderr, "mpvmd: %s\n", error.c_str());
    if (opts_.ready_fd >= 0) {
      auto msg = "error: " + error + "\n";
      (void)!write(opts_.ready_fd, msg.data(), msg.size());
      close(opts_.ready_fd);
    }
    return 1;
  }
  spdlog::info("mpvmd {} serving {} (pid {}{})", "0.1.0", opts_.rundir, getpid(),
               opts_.embedded ? ", embedded" : "");
  started_ns_ = MonotonicNs();
  // A member reports once it has joined; a master once its hosts have.
  if (core_->joined() && !core_->starting_hosts()) ReportReady("");
  Loop();
  Cleanup();
  return exit_code_;
}

void Server::ShareHashCache() {
  if (opts_.hash_cache.empty()) return;
  const std::string mine = opts_.rundir + "/hash-cache";
  unlink(mine.c_str());
  if (symlink(opts_.hash_cache.c_str(), mine.c_str()) != 0)
    spdlog::warn("cannot share the file hash cache {}: {}; this host keeps its own",
                 opts_.hash_cache, std::strerror(errno));
}

// ---- The loop -----------------------------------------------------------------

void Server::Loop() {
  PollSet ps;
  for (;;) {
    if (shutdown_ && ShutdownDone()) break;
    BuildPollSet(ps);
    PeerLinks* peers = links_->links();
    long timeout = shutdown_ || peers != nullptr ? (core_->TickSoon() ? 10 : 100) : -1;
    const auto wake_within = [&](int64_t due_ns) {
      if (due_ns >= 0)
        timeout = std::min<long>(timeout < 0 ? 1000 : timeout, due_ns / 1'000'000 + 1);
    };
    if (cpu_limit_) wake_within(cpu_limit_->Tick(MonotonicNs()));
    wake_within(moves_->Tick(MonotonicNs()));
    int n = zmq_poll(ps.fds.data(), static_cast<int>(ps.fds.size()), timeout);
    if (peers != nullptr && !TickLinks()) break;
    if (n < 0) {
      if (errno == EINTR) continue;
      spdlog::error("poll: {}", std::strerror(errno));
      break;
    }
    std::vector<uint64_t> closed_pipes;
    ServeReady(ps, closed_pipes);
    for (uint64_t id : closed_pipes)
      if (auto t = procs_.ClosePipe(id)) core_->OnOutputClosed(*t);
    conns_.EraseClosed();
  }
}

void Server::ServeReady(const PollSet& ps, std::vector<uint64_t>& closed_pipes) {
  const auto output = [this](Tid t, std::string_view bytes, bool is_stderr) {
    core_->OnOutput(t, bytes, is_stderr);
  };
  for (size_t i = 0; i < ps.first_peer; ++i) {
    if (ps.fds[i].revents == 0) continue;
    if (i >= ps.first_pipe) {
      const uint64_t id = ps.pipe_index[i - ps.first_pipe];
      if (!procs_.ReadPipe(id, output)) closed_pipes.push_back(id);
    } else if (i >= ps.first_move) {
      moves_->OnReady(ps.move_index[i - ps.first_move]);
    } else if (ps.ids[i] == kListener) {
      AcceptTasks();
    } else if (ps.ids[i] == kSignals) {
      ReadSignals();
    } else {
      ServeConn(ps.ids[i], ps.fds[i].revents);
    }
  }
}

bool Server::ShutdownDone() {
  const std::vector<pid_t> hosts = hosts_->Pids();
  const bool alive = !core_->TaskPids().empty() || !hosts.empty();
  const int64_t waited = MonotonicNs() - shutdown_started_ns_;
  if (!alive) return true;
  if (waited > kGraceNs && !killed_hard_) {
    for (int pid : core_->TaskPids()) kill(pid, SIGKILL);
    for (pid_t pid : hosts) kill(pid, SIGKILL);
    killed_hard_ = true;
  }
  return waited > 2 * kGraceNs;
}

void Server::BuildPollSet(PollSet& ps) {
  ps.fds.clear();
  ps.ids.clear();
  ps.pipe_index.clear();
  ps.move_index.clear();
  ps.fds.push_back({nullptr, listen_fd_, static_cast<short>(shutdown_ ? 0 : ZMQ_POLLIN), 0});
  ps.ids.push_back(kListener);
  ps.fds.push_back({nullptr, signal_fd_, ZMQ_POLLIN, 0});
  ps.ids.push_back(kSignals);
  conns_.AppendPollItems(ps.fds, ps.ids);
  ps.first_move = ps.fds.size();
  moves_->AppendPollItems(ps.fds, ps.move_index);
  ps.first_pipe = ps.fds.size();
  procs_.AppendPollItems(ps.fds, ps.pipe_index);
  ps.first_peer = ps.fds.size();
  if (PeerLinks* peers = links_->links()) peers->AppendPollItems(ps.fds);
}

bool Server::TickLinks() {
  links_->links()->HandleReady();
  core_->OnTick(MonotonicNs());
  if (ready_reported_) return true;
  // A master with a host file is ready once those hosts have joined (or
  // failed; at most 30 s): then pvm_config shows them all.
  const int64_t up = MonotonicNs() - started_ns_;
  if (core_->joined()) {  // a master waits for its hosts (at most 30 s)
    if (!core_->starting_hosts() || up > 30'000'000'000) ReportReady("");
    return true;
  }
  if (core_->join_error().empty() && up <= 5'000'000'000) return true;
  const std::string why =
      core_->join_error().empty()
          ? fmt::format(
                "no answer from the master at {} within 5 s (wrong VM key, or the "
                "master is not reachable)",
                opts_.join)
          : core_->join_error();
  spdlog::error("cannot join the virtual machine: {}", why);
  std::fprintf(stderr, "mpvmd: cannot join the virtual machine: %s\n", why.c_str());
  ReportReady("cannot join the virtual machine: " + why);
  exit_code_ = 1;
  return false;
}

void Server::AcceptTasks() {
  for (;;) {
    int fd = accept4(listen_fd_, nullptr, nullptr, SOCK_CLOEXEC | SOCK_NONBLOCK);
    if (fd < 0) break;
    core_->OnAccept(conns_.Add(fd));
  }
}

void Server::ReadSignals() {
  signalfd_siginfo si;
  while (read(signal_fd_, &si, sizeof si) == sizeof si) {
    if (si.ssi_signo == SIGCHLD) {
      Reap();
    } else {
      spdlog::info("signal {} received; halting", si.ssi_signo);
      core_->Halt();
    }
  }
}

void Server::ServeConn(ConnId id, short revents) {
  Connection* c = conns_.Find(id);
  if (c == nullptr) return;
  if (revents & ZMQ_POLLOUT) c->Flush();
  if (!c->open() || !(revents & (ZMQ_POLLIN | ZMQ_POLLERR))) return;
  auto rr = c->ReadAvailable();
  Frame f;
  bool bad = false;
  for (;;) {
    auto st = c->reader().Next(f);
    if (st == FrameReader::Status::kFrame) {
      core_->OnFrame(id, std::move(f));
      if (!c->open()) break;
      continue;
    }
    if (st == FrameReader::Status::kError) bad = true;
    break;
  }
  if (bad) {
    core_->OnBadStream(id, FrameErrorText(c->reader().error()));
  } else if (rr != Connection::ReadResult::kOk && c->open()) {
    if (c->reader().buffered() > 0)
      spdlog::warn("connection {} closed in the middle of a frame ({} bytes dropped)", id,
                   c->reader().buffered());
    c->Close();
    core_->OnClose(id);
  }
}

void Server::Reap() {
  int status;
  pid_t pid;
  while ((pid = waitpid(-1, &status, WNOHANG)) > 0) {
    if (auto host = hosts_->Reaped(pid, status)) {
      core_->OnHostStartFailed(host->first, host->second);
    } else if (auto t = procs_.Reaped(pid)) {
      core_->OnProcessExit(*t, WIFEXITED(status) ? WEXITSTATUS(status) : 0,
                           WIFSIGNALED(status) ? WTERMSIG(status) : 0);
    } else {
      moves_->OnReaped(pid);  // a spare process, maybe
    }
  }
}

void Server::Cleanup() {
  procs_.CloseAll();
  close(listen_fd_);
  moves_->Close();
  hosts_->Close();
  links_->Close();
  run_dir_.Release();
  // Last, deliver final replies (halt acknowledgements) and close: a client
  // that sees its connection end knows the VM is gone, files and all.
  conns_.FlushAndCloseAll();
  spdlog::info("mpvmd stopped");
}

// ---- DaemonEnv: what the core asks --------------------------------------------

void Server::Send(ConnId c, const FrameHeader& h, std::span<const uint8_t> aux,
                  std::span<const uint8_t> body) {
  conns_.Send(c, h, aux, body);
}

void Server::CloseConn(ConnId c) { conns_.Close(c); }

void Server::PublishVirtualCpu(int speed, int working) {
  // Written aside and renamed: a task reading it sees the old or the new.
  const std::string path = VirtualCpuPath(opts_.rundir), tmp = path + ".new";
  std::ofstream f(tmp, std::ios::trunc);
  f << speed << ' ' << working << '\n';
  f.close();
  if (!f || rename(tmp.c_str(), path.c_str()) != 0)
    spdlog::warn("cannot write {}: {}", path, std::strerror(errno));
}

double Server::SampleBackground(const std::vector<int>& ours, int our_running) {
  // An emulated host in a cgroup: what else was put in its group.
  if (cpu_limit_ != nullptr) {
    int n = 0;
    for (pid_t p : cpu_limit_->Members())
      if (std::find(ours.begin(), ours.end(), p) == ours.end()) {
        const ProcessSample s = TaskProcesses::Sample(p);
        n += s.runnable && !s.stopped;  // a stopped process asks for no CPU
      }
    return n;
  }
  // Emulated otherwise, or the master of emulated hosts: this machine's
  // load is the other hosts' as much as anyone's. Cannot tell.
  if (opts_.emulated || opts_.emulate_speed || opts_.virtual_work || hosts_->started_emulated())
    return 0;
  // A real host: the machine's ready threads, less ours and this daemon.
  const int running = TaskProcesses::MachineRunning();
  return running < 0 ? 0 : std::max(0, running - 1 - our_running);
}

Result<int> Server::Spawn(const SpawnSpec& spec) { return procs_.Spawn(spec); }

void Server::Signal(int pid, int sig) {
  if (pid > 0) kill(pid, sig);
}

std::string Server::Resolve(const std::string& file, const std::string& path_env,
                            const std::string& cwd) {
  return procs_.Resolve(file, path_env, cwd);
}

void Server::RemoveTaskSocket(Tid t) { procs_.RemoveTaskSocket(t); }

void Server::LogOutput(Tid t, std::string_view line) { spdlog::info("[{}] {}", t.str(), line); }

void Server::Log(std::string_view line) { spdlog::warn("{}", line); }

void Server::Info(std::string_view line) { spdlog::info("{}", line); }

void Server::Debug(std::string_view line) { spdlog::debug("{}", line); }

void Server::SendToPeer(PeerId p, const FrameHeader& h, std::span<const uint8_t> body) {
  if (PeerLinks* peers = links_ ? links_->links() : nullptr) peers->Send(p, h, body);
}

void Server::DropPeer(PeerId p) {
  if (PeerLinks* peers = links_ ? links_->links() : nullptr) peers->Drop(p);
}

void Server::RequestShutdown() {
  if (shutdown_) return;
  shutdown_ = true;
  shutdown_started_ns_ = MonotonicNs();
}

mpvm::expected<void, HostStartError> Server::StartHost(const HostSpec& spec) {
  return hosts_->Start(spec);
}

Result<RestoreStart> Server::SpawnRestore(const SpawnSpec& spec, const std::string& key,
                                          const std::string& listen_addr) {
  return moves_->SpawnRestore(spec, key, listen_addr);
}

mpvm::expected<void, std::string> Server::BeginMove(const MoveAsk& ask) {
  return moves_->BeginMove(ask);
}

void Server::CancelMove(Tid t) { moves_->CancelMove(t); }

void Server::FaultPoint(std::string_view step, int task_pid) { moves_->FaultPoint(step, task_pid); }

int64_t Server::WallNs() { return RealtimeNs(); }

std::string Server::RandomBytes(size_t n) {
  std::string out(n, '\0');
  randombytes_buf(out.data(), out.size());
  return out;
}

}  // namespace mpvm
