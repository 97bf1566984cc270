#include "server.h"

#include <dirent.h>
#include <fcntl.h>
#include <fmt/format.h>
#include <poll.h>
#include <signal.h>
#include <spdlog/spdlog.h>
#include <sys/file.h>
#include <sys/personality.h>
#include <sys/prctl.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <optional>
#include <sstream>

#include "host_launch.h"
#include "host_topology.h"
#include "hostfile.h"
#include "mpvm/paths.h"
#include "mpvm/task_link.h"

extern char** environ;

namespace mpvm {
namespace {

// Logs once, at info, each PVM host file option that mpvm accepts but does
// not act on (bx=, id=).
// How a process ended, from waitpid's status: "exited with status N" or
// "was killed by signal N (Name)".
std::string ExitText(int status) {
  if (WIFSIGNALED(status))
    return fmt::format("was killed by signal {} ({})", WTERMSIG(status),
                       strsignal(WTERMSIG(status)));
  return fmt::format("exited with status {}", WIFEXITED(status) ? WEXITSTATUS(status) : -1);
}

void NoteOptionsWithoutEffect(const std::vector<HostSpec>& hosts, std::string_view origin) {
  bool bx = false, id = false;
  for (const auto& h : hosts) {
    bx = bx || !h.debugger.empty();
    id = id || !h.vmid.empty();
  }
  if (bx) spdlog::info("{}: bx= (debugger) is accepted and has no effect in mpvm", origin);
  if (id)
    spdlog::info(
        "{}: id= (virtual machine id) is accepted and has no effect: mpvm keeps virtual "
        "machines apart by MPVM_RUNDIR",
        origin);
}

// This host's name up to its first dot ("localhost" if it has none).
std::string ShortHostname() {
  char hn[256] = {};
  gethostname(hn, sizeof hn - 1);
  std::string h = hn;
  if (auto dot = h.find('.'); dot != std::string::npos) h.resize(dot);
  return h.empty() ? "localhost" : h;
}

// The hosts of a PVM host file, its options without effect noted in the log.
mpvm::expected<std::vector<HostSpec>, std::string> ReadHostfile(const std::string& path) {
  std::ifstream in(path);
  if (!in)
    return mpvm::unexpected(
        fmt::format("cannot read host file {}: {}", path, std::strerror(errno)));
  std::stringstream text;
  text << in.rdbuf();
  auto hosts = ParseHostfile(text.str(), path);
  if (!hosts) return mpvm::unexpected(hosts.error().message);
  NoteOptionsWithoutEffect(*hosts, path);
  return *hosts;
}

int64_t NowNs() {
  timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return int64_t{ts.tv_sec} * 1000000000 + ts.tv_nsec;
}

bool IsExecutableFile(const std::string& p) {
  struct stat st;
  return stat(p.c_str(), &st) == 0 && S_ISREG(st.st_mode) && access(p.c_str(), X_OK) == 0;
}

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

constexpr int64_t kGraceNs = 2'000'000'000;  // SIGTERM, then SIGKILL after this

std::string LinkKeyBytes(const VmKey& k);
bool LinkEncryptWanted();

}  // namespace

Server::Server(ServerOptions opts) : opts_(std::move(opts)) {}

Server::~Server() {
  if (signal_fd_ >= 0) close(signal_fd_);
}

bool Server::Setup(std::string* error) {
  if (!TakeRunDir(error) || !OpenListeners(error)) return false;
  sigset_t set;
  sigemptyset(&set);
  for (int s : {SIGCHLD, SIGTERM, SIGINT, SIGHUP}) sigaddset(&set, s);
  sigprocmask(SIG_BLOCK, &set, nullptr);
  signal_fd_ = signalfd(-1, &set, SFD_NONBLOCK | SFD_CLOEXEC);
  signal(SIGPIPE, SIG_IGN);

  std::vector<HostSpec> others;  // hosts the master starts
  auto cfg = MakeConfig(error, &others);
  if (!cfg) return false;
  core_ = std::make_unique<DaemonCore>(std::move(*cfg), this);
  if (!LinkPeers(error)) return false;
  if (!others.empty()) {
    if (!opts_.join.empty()) {
      *error =
          "a member daemon (--join) cannot start the hosts of a host file; give it to the master";
      return false;
    }
    for (const auto& why : core_->StartHosts(others))
      std::fprintf(stderr, "mpvmd: %s: %s\n", opts_.hostfile.c_str(), why.c_str());
  }
  return true;
}

bool Server::TakeRunDir(std::string* error) {
  if (auto r = EnsureRunDir(opts_.rundir); !r) {
    *error = r.error();
    return false;
  }
  const std::string lock = DaemonLockPath(opts_.rundir);
  lock_fd_ = open(lock.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600);
  if (lock_fd_ < 0) {
    *error = fmt::format("cannot open {}: {}", lock, std::strerror(errno));
    return false;
  }
  if (flock(lock_fd_, LOCK_EX | LOCK_NB) != 0) {
    *error = fmt::format(
        "another mpvmd (pid {}) already serves the virtual machine in {}; use it, or stop it "
        "with `mpvm halt`",
        ReadLockPid(lock), opts_.rundir);
    close(lock_fd_);
    lock_fd_ = -1;
    return false;
  }
  // We hold the lock: any socket files here were left by a daemon that died.
  int stale = 0;
  if (DIR* d = opendir(opts_.rundir.c_str())) {
    while (dirent* e = readdir(d)) {
      std::string n = e->d_name;
      if (n.size() > 5 && n.ends_with(".sock")) {
        unlink((opts_.rundir + "/" + n).c_str());
        ++stale;
      }
    }
    closedir(d);
  }
  // So are its address and VM key: a new VM gets a new key, as after a halt.
  for (const char* file : {"master.addr", "vm.key"}) {
    const std::string path = opts_.rundir + "/" + file;
    if ((std::string(file) != "vm.key" || opts_.key.empty()) && unlink(path.c_str()) == 0) ++stale;
  }
  if (stale > 0)
    spdlog::warn("removed {} file(s) left in {} by a daemon that did not stop cleanly", stale,
                 opts_.rundir);
  if (ftruncate(lock_fd_, 0) == 0) {
    auto pid = std::to_string(getpid()) + "\n";
    (void)!write(lock_fd_, pid.data(), pid.size());
  }
  return true;
}

bool Server::OpenListeners(std::string* error) {
  listen_fd_ = ListenUnix(DaemonSocketPath(opts_.rundir));
  if (listen_fd_ < 0) {
    *error = fmt::format("cannot listen on {}: {}", DaemonSocketPath(opts_.rundir),
                         std::strerror(-listen_fd_));
    return false;
  }
  // Tasks asked to move connect here to hand over their links.
  migrate_fd_ = ListenUnix(opts_.rundir + "/" + migrate::kSocketName);
  if (migrate_fd_ < 0)
    spdlog::warn("cannot listen on {}/{}: {}; tasks here cannot move", opts_.rundir,
                 migrate::kSocketName, std::strerror(-migrate_fd_));
  return true;
}

std::optional<DaemonConfig> Server::MakeConfig(std::string* error, std::vector<HostSpec>* others) {
  DaemonConfig cfg;
  cfg.rundir = opts_.rundir;
  cfg.embedded = opts_.embedded;
  cfg.hostname = opts_.hostname.empty() ? ShortHostname() : opts_.hostname;
  std::optional<HostSpec> self_spec;
  if (!opts_.hostfile.empty()) {
    auto hosts = ReadHostfile(opts_.hostfile);
    if (!hosts) {
      *error = hosts.error();
      return std::nullopt;
    }
    self_spec = FindSelf(*hosts, cfg.hostname);
    for (const auto& h : *hosts)
      if (!self_spec || h.line != self_spec->line) others->push_back(h);
  }
  if (self_spec) {
    cfg.speed = self_spec->speed;
    if (opts_.ep.empty()) opts_.ep = self_spec->ep;
    cfg.workdir = self_spec->wd;
  }
  if (!opts_.wd.empty()) cfg.workdir = opts_.wd;
  std::string exe_dir = SelfExeDir();
  char real[PATH_MAX];
  if (!exe_dir.empty() && realpath((exe_dir + "/../lib").c_str(), real) != nullptr)
    cfg.libdir = real;
  for (char** e = environ; *e != nullptr; ++e) {
    std::string kv = *e;
    if (kv.rfind("MPVM_TID=", 0) == 0) continue;
    cfg.base_env.push_back(kv);
  }
  if (opts_.speed > 0) cfg.speed = opts_.speed;
  std::string why;
  cfg.cores = ReadHostTopology(&why).cores;
  if (!why.empty()) spdlog::warn("cannot read this host's topology ({}); counting one core", why);
  cfg.dead_after_ns = static_cast<int64_t>(opts_.dead_after_s * 1e9);
  cfg.test_moves = opts_.test_moves;
  cfg.placement = opts_.placement;
  cfg.heartbeat_ns = static_cast<int64_t>(opts_.heartbeat_s * 1e9);
  cfg.member = !opts_.join.empty();
  return cfg;
}

bool Server::LinkPeers(std::string* error) {
  if (opts_.join.empty() && opts_.listen.empty()) return true;
  links_ = std::make_unique<PeerLinks>(
      [this](PeerId p, Frame&& f) { core_->OnPeerFrame(p, std::move(f)); },
      [](const std::string& line) { spdlog::warn("{}", line); },
      [this](PeerId p) { core_->OnPeerGone(p); });
  if (opts_.join.empty()) {
    auto r = EnsureListening(opts_.listen);
    if (!r) *error = r.error();
    return r.has_value();
  }
  if (opts_.key.empty()) {
    *error = "--join needs --key FILE: the VM key of the master (its runtime directory's vm.key)";
    return false;
  }
  auto key = opts_.key == "-" ? ReadVmKeyFromStdin() : LoadVmKey(opts_.key);
  if (!key) {
    *error = key.error();
    return false;
  }
  // Direct task links: this host's address as the master sees it, and
  // the master's (members reach the master's tasks there).
  const std::string master_host = opts_.join.substr(0, opts_.join.rfind(':'));
  core_->SetLinkKey(LinkKeyBytes(*key), LinkEncryptWanted());
  core_->SetLinkAddresses(LocalAddressToward(master_host), ResolveIPv4(master_host));
  if (auto r = links_->Connect(opts_.join, *key); !r) {
    *error = r.error();
    return false;
  }
  core_->StartJoin(NowNs());
  return true;
}

mpvm::expected<std::string, std::string> Server::EnsureListening(const std::string& addr) {
  if (auto it = endpoints_.find(addr); it != endpoints_.end()) return it->second;
  if (!links_)
    links_ = std::make_unique<PeerLinks>(
        [this](PeerId p, Frame&& f) { core_->OnPeerFrame(p, std::move(f)); },
        [](const std::string& line) { spdlog::warn("{}", line); },
        [this](PeerId p) { core_->OnPeerGone(p); });
  if (key_path_.empty()) {
    key_path_ = opts_.key.empty() ? opts_.rundir + "/vm.key" : opts_.key;
    auto key = LoadOrCreateVmKey(key_path_);
    if (!key) {
      key_path_.clear();
      return mpvm::unexpected(key.error());
    }
    vm_key_ = *key;
    core_->SetLinkKey(LinkKeyBytes(vm_key_), LinkEncryptWanted());
  }
  auto bound = links_->Listen(addr, vm_key_);
  if (!bound) return mpvm::unexpected(bound.error());
  endpoints_[addr] = *bound;
  if (master_addr_.empty()) {
    master_addr_ = *bound;
    std::ofstream(opts_.rundir + "/master.addr") << master_addr_ << "\n";
  }
  spdlog::info("master of a multi-host VM: daemons join at {} with key {}", *bound, key_path_);
  return *bound;
}

namespace {
std::string LinkKeyBytes(const VmKey& k) {
  const LinkKey lk = DeriveLinkKey(k.secret_z85);
  return std::string(reinterpret_cast<const char*>(lk.data()), lk.size());
}
bool LinkEncryptWanted() {
  const char* e = std::getenv("MPVM_LINK_ENCRYPT");
  return e != nullptr && std::string(e) == "1";
}
std::string ShellQuote(const std::string& s) {
  std::string q = "'";
  for (char c : s) q += c == '\'' ? std::string("'\\''") : std::string(1, c);
  return q + "'";
}
}  // namespace

mpvm::expected<void, HostStartError> Server::StartHost(const HostSpec& spec) {
  if (!opts_.join.empty())
    return mpvm::unexpected(HostStartError{Err::kNotImpl, "only the master starts hosts"});
  const std::string daemon = spec.daemon.empty() ? SelfExeDir() + "/mpvmd" : spec.daemon;
  std::vector<std::string> common = {"--hostname", spec.name, "--speed",
                                     std::to_string(spec.speed)};
  if (!spec.ep.empty()) common.insert(common.end(), {"--ep", spec.ep});
  if (!spec.wd.empty()) common.insert(common.end(), {"--wd", spec.wd});
  // Started hosts keep the master's heartbeat and failure timing.
  common.insert(common.end(), {"--dead-after", std::to_string(opts_.dead_after_s), "--heartbeat",
                               std::to_string(opts_.heartbeat_s), "--ready-fd", "1"});
  auto cmd = spec.local ? EmulatedHostCommand(spec, daemon, common)
                        : RemoteHostCommand(spec, daemon, common);
  if (!cmd) return mpvm::unexpected(cmd.error());
  auto launched = LaunchDaemon(cmd->argv, net_.get(), cmd->netns_address, cmd->stdin_text);
  if (!launched && !cmd->netns_address.empty()) {
    spdlog::warn("emulated host {}: {}; falling back to loopback", spec.name, launched.error());
    auto ep = EnsureListening("127.0.0.1:0");
    if (ep) {
      cmd->argv[2] = *ep;
      launched = LaunchDaemon(cmd->argv, nullptr, "", "");
    }
  }
  if (!launched) return mpvm::unexpected(HostStartError{Err::kCantStart, launched.error()});
  host_pids_[launched->pid] = LocalHost{spec.name, launched->output_fd, spec.local};
  spdlog::info("starting host {} (pid {}{}{})", spec.name, launched->pid,
               spec.local ? ", emulated" : ", over " + cmd->argv[0],
               cmd->netns_address.empty() ? "" : " at " + cmd->netns_address);
  return {};
}

mpvm::expected<Server::HostCommand, HostStartError> Server::EmulatedHostCommand(
    const HostSpec& spec, const std::string& daemon, const std::vector<std::string>& common) {
  HostCommand cmd;
  std::string master, why;
  if (EmulatedNet::Available(&why)) {
    if (!net_) net_ = std::make_unique<EmulatedNet>();
    auto gw = net_->Ensure();
    auto ep = gw ? EnsureListening(*gw + ":0") : mpvm::unexpected(gw.error());
    if (ep) {
      master = *ep;
      cmd.netns_address = net_->NextAddress();
    } else {
      why = ep.error();
    }
  }
  if (cmd.netns_address.empty()) {
    if (!loopback_noted_) spdlog::info("emulated hosts run on loopback: {}", why);
    loopback_noted_ = true;
    auto ep = EnsureListening("127.0.0.1:0");
    if (!ep)
      return mpvm::unexpected(
          HostStartError{Err::kCantStart, "cannot accept emulated hosts: " + ep.error()});
    master = *ep;
  }
  cmd.argv = {
      daemon, "--join", master, "--key", key_path_, "--rundir", opts_.rundir + ".h-" + spec.name};
  cmd.argv.insert(cmd.argv.end(), common.begin(), common.end());
  return cmd;
}

mpvm::expected<Server::HostCommand, HostStartError> Server::RemoteHostCommand(
    const HostSpec& spec, const std::string& daemon, const std::vector<std::string>& common) {
  // A real host: its daemon is started over the remote shell and reads the
  // VM key from its standard input, so the key never lands on its disk.
  const std::string target = spec.ip.empty() ? spec.name : spec.ip;
  const std::string me = LocalAddressToward(target);
  if (me.empty())
    return mpvm::unexpected(HostStartError{
        Err::kNoHost, fmt::format("cannot resolve {} (give its address with ip=)", target)});
  // A master started with --listen on a specific address is reached there;
  // otherwise it listens on every interface and names the one facing the host.
  auto ep = EnsureListening(opts_.listen.empty() ? "0.0.0.0:0" : opts_.listen);
  if (!ep)
    return mpvm::unexpected(HostStartError{Err::kCantStart, "cannot accept hosts: " + ep.error()});
  std::string master = *ep;
  if (master.rfind("0.0.0.0:", 0) == 0) master = me + master.substr(7);
  std::string remote = ShellQuote(daemon) + " --join " + ShellQuote(master) + " --key -";
  for (const auto& a : common) remote += " " + ShellQuote(a);
  HostCommand cmd;
  cmd.argv = RemoteShell();
  if (!spec.login.empty()) cmd.argv.insert(cmd.argv.end(), {"-l", spec.login});
  cmd.argv.insert(cmd.argv.end(), {target, remote});
  cmd.stdin_text = VmKeyText(vm_key_) + "\n";
  return cmd;
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
  started_ns_ = NowNs();
  // A member reports once it has joined; a master once its hosts have.
  if (core_->joined() && !core_->starting_hosts()) ReportReady("");
  Loop();
  Cleanup();
  return exit_code_;
}

namespace {
constexpr ConnId kListener = ~ConnId{0}, kSignals = ~ConnId{0} - 1, kMigrate = ~ConnId{0} - 2;
}  // namespace

void Server::Loop() {
  PollSet ps;
  for (;;) {
    if (shutdown_ && ShutdownDone()) break;
    BuildPollSet(ps);
    const long timeout = shutdown_ || links_ ? 100 : -1;
    int n = zmq_poll(ps.fds.data(), static_cast<int>(ps.fds.size()), timeout);
    if (links_ && !TickLinks()) break;
    if (n < 0) {
      if (errno == EINTR) continue;
      spdlog::error("poll: {}", std::strerror(errno));
      break;
    }
    std::vector<uint64_t> closed_pipes;
    for (size_t i = 0; i < ps.first_peer; ++i) {
      if (ps.fds[i].revents == 0) continue;
      if (i >= ps.first_pipe) {
        ReadPipe(ps.pipe_index[i - ps.first_pipe], closed_pipes);
      } else if (i >= ps.first_move) {
        if (ps.ids[i] == kMigrate) {
          AcceptMigrate();
        } else {
          OnMoveReadable(ps.move_index[i - ps.first_move - (migrate_fd_ >= 0 ? 1 : 0)]);
        }
      } else if (ps.ids[i] == kListener) {
        AcceptTasks();
      } else if (ps.ids[i] == kSignals) {
        ReadSignals();
      } else {
        ServeConn(ps.ids[i], ps.fds[i].revents);
      }
    }
    for (uint64_t id : closed_pipes) {
      auto pit = pipes_.find(id);
      if (pit == pipes_.end()) continue;
      const Tid t = pit->second.tid;
      close(pit->second.fd);
      pipes_.erase(pit);
      core_->OnOutputClosed(t);
    }
    std::erase_if(conns_, [](const auto& kv) { return !kv.second->open(); });
  }
}

bool Server::ShutdownDone() {
  const bool alive = !core_->TaskPids().empty() || !host_pids_.empty();
  const int64_t waited = NowNs() - shutdown_started_ns_;
  if (!alive) return true;
  if (waited > kGraceNs && !killed_hard_) {
    for (int pid : core_->TaskPids()) kill(pid, SIGKILL);
    for (const auto& [pid, h] : host_pids_) kill(pid, SIGKILL);
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
  for (auto& [id, c] : conns_) {
    ps.fds.push_back({nullptr, c->fd(),
                      static_cast<short>(ZMQ_POLLIN | (c->wants_write() ? ZMQ_POLLOUT : 0)), 0});
    ps.ids.push_back(id);
  }
  ps.first_move = ps.fds.size();
  if (migrate_fd_ >= 0) {
    ps.fds.push_back({nullptr, migrate_fd_, ZMQ_POLLIN, 0});
    ps.ids.push_back(kMigrate);
  }
  for (const auto& [t, m] : moving_)
    if (m.ms >= 0) {
      ps.fds.push_back({nullptr, m.ms, ZMQ_POLLIN, 0});
      ps.ids.push_back(0);
      ps.move_index.push_back(t);
    }
  ps.first_pipe = ps.fds.size();
  for (const auto& [id, p] : pipes_) {
    ps.fds.push_back({nullptr, p.fd, ZMQ_POLLIN, 0});
    ps.pipe_index.push_back(id);
  }
  ps.first_peer = ps.fds.size();
  if (links_) links_->AppendPollItems(ps.fds);
}

bool Server::TickLinks() {
  links_->HandleReady();
  core_->OnTick(NowNs());
  if (ready_reported_) return true;
  // A master with a host file is ready once those hosts have joined (or
  // failed; at most 30 s): then pvm_config shows them all.
  if (core_->joined() && (!core_->starting_hosts() || NowNs() - started_ns_ > 30'000'000'000)) {
    ReportReady("");
    return true;
  }
  if (core_->join_error().empty() && NowNs() - started_ns_ <= 5'000'000'000) return true;
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

void Server::ReadPipe(uint64_t id, std::vector<uint64_t>& closed) {
  auto pit = pipes_.find(id);
  if (pit == pipes_.end()) return;  // drained and closed by a commit this round
  Pipe& p = pit->second;
  char buf[65536];
  ssize_t r = read(p.fd, buf, sizeof buf);
  if (r > 0) {
    core_->OnOutput(p.tid, std::string_view(buf, static_cast<size_t>(r)), p.is_stderr);
  } else if (r == 0 || (errno != EAGAIN && errno != EINTR)) {
    closed.push_back(id);
  }
}

void Server::AcceptTasks() {
  for (;;) {
    int fd = accept4(listen_fd_, nullptr, nullptr, SOCK_CLOEXEC | SOCK_NONBLOCK);
    if (fd < 0) break;
    ConnId id = next_conn_++;
    conns_[id] = std::make_unique<Connection>(fd);  // messages up to 2 GiB - 1 are relayed
    core_->OnAccept(id);
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
  auto it = conns_.find(id);
  if (it == conns_.end()) return;
  Connection* c = it->second.get();
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
    if (auto h = host_pids_.find(pid); h != host_pids_.end()) {
      // What the starter printed: "ok", or why it failed (its last line).
      std::string said;
      char buf[4096];
      ssize_t n;
      while ((n = read(h->second.output_fd, buf, sizeof buf)) > 0) {
        said.append(buf, static_cast<size_t>(n));
        if (said.size() > 16384) said.erase(0, said.size() - 4096);
      }
      close(h->second.output_fd);
      while (!said.empty() && (said.back() == '\n' || said.back() == '\r')) said.pop_back();
      if (auto nl = said.rfind('\n'); nl != std::string::npos) said = said.substr(nl + 1);
      if (said.rfind("error: ", 0) == 0) said = said.substr(7);
      if (said == "ok") said.clear();
      // A daemon killed outright cannot tidy up: remove what it left.
      const std::string dir = opts_.rundir + ".h-" + h->second.name;
      DIR* d = h->second.local ? opendir(dir.c_str()) : nullptr;
      if (d != nullptr) {
        while (dirent* e = readdir(d)) {
          std::string file = e->d_name;
          if (file == "mpvmd.log" && std::getenv("MPVM_KEEP_LOG") != nullptr)
            rename((dir + "/" + file).c_str(),  // kept beside the master's log
                   fmt::format("{}/mpvmd.{}.log", opts_.rundir, h->second.name).c_str());
          else if (file.ends_with(".sock") || file == "mpvmd.lock" || file == "mpvmd.log" ||
                   file == "hash-cache")
            unlink((dir + "/" + file).c_str());
        }
        closedir(d);
        rmdir(dir.c_str());
      }
      core_->OnHostStartFailed(h->second.name, said.empty() ? "its daemon " + ExitText(status)
                                                            : "its daemon exited: " + said);
      host_pids_.erase(h);
      continue;
    }
    auto it = pids_.find(pid);
    if (it == pids_.end()) continue;
    Tid t = it->second;
    pids_.erase(it);
    core_->OnProcessExit(t, WIFEXITED(status) ? WEXITSTATUS(status) : 0,
                         WIFSIGNALED(status) ? WTERMSIG(status) : 0);
  }
}

void Server::Cleanup() {
  for (auto& [id, p] : pipes_) close(p.fd);
  pipes_.clear();
  close(listen_fd_);
  if (migrate_fd_ >= 0) close(migrate_fd_);
  unlink(DaemonSocketPath(opts_.rundir).c_str());
  if (DIR* d = opendir(opts_.rundir.c_str())) {
    while (dirent* e = readdir(d)) {
      std::string n = e->d_name;
      if (n.ends_with(".sock")) unlink((opts_.rundir + "/" + n).c_str());
    }
    closedir(d);
  }
  if (std::getenv("MPVM_KEEP_LOG") == nullptr) unlink(DaemonLogPath(opts_.rundir).c_str());
  unlink((opts_.rundir + "/master.addr").c_str());
  unlink((opts_.rundir + "/hash-cache").c_str());  // tasks' file hashes (ckpt.cc)
  if (opts_.key.empty()) unlink((opts_.rundir + "/vm.key").c_str());  // the VM's key ends with it
  for (const auto& [pid, h] : host_pids_) close(h.output_fd);
  links_.reset();
  net_.reset();  // the emulated hosts' bridge
  unlink(DaemonLockPath(opts_.rundir).c_str());
  close(lock_fd_);
  rmdir(opts_.rundir.c_str());  // only succeeds when nothing else is left
  // Last, deliver final replies (halt acknowledgements) and close: a client
  // that sees its connection end knows the VM is gone, files and all.
  for (auto& [id, c] : conns_) {
    for (int i = 0; i < 100 && c->open() && c->wants_write(); ++i) {
      pollfd p{c->fd(), POLLOUT, 0};
      poll(&p, 1, 10);
      c->Flush();
    }
    c->Close();
  }
  conns_.clear();
  spdlog::info("mpvmd stopped");
}

void Server::Send(ConnId c, const FrameHeader& h, std::span<const uint8_t> aux,
                  std::span<const uint8_t> body) {
  auto it = conns_.find(c);
  if (it == conns_.end() || !it->second->open()) return;
  it->second->Send(h, aux, body);
}

void Server::CloseConn(ConnId c) {
  auto it = conns_.find(c);
  if (it != conns_.end()) it->second->Close();
}

Result<int> Server::Spawn(const SpawnSpec& spec) { return SpawnProcess(spec, -1); }

namespace {

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

// In the child of fork(): becomes the task. `stdio` are its stdin (-1:
// /dev/null), stdout and stderr; exec's errno goes to `exec_errno_fd`.
[[noreturn]] void ExecTask(const SpawnSpec& spec, std::array<int, 3> stdio, int exec_errno_fd,
                           int keep_fd, std::vector<char*>& argv, std::vector<char*>& envp) {
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
  if (keep_fd > 3) syscall(SYS_close_range, 3u, static_cast<unsigned>(keep_fd - 1), 4u);
  syscall(SYS_close_range, static_cast<unsigned>(std::max(keep_fd + 1, 3)), ~0u,
          4u);                                   // 4: CLOSE_RANGE_CLOEXEC
  if (keep_fd >= 0) fcntl(keep_fd, F_SETFD, 0);  // a restore process's listener
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

Result<int> Server::SpawnProcess(const SpawnSpec& spec, int keep_fd) {
  int out[2], err[2], ex[2];
  if (pipe2(out, O_CLOEXEC) != 0) return Fail(Err::kOutOfRes);
  if (pipe2(err, O_CLOEXEC) != 0) {
    close(out[0]);
    close(out[1]);
    return Fail(Err::kOutOfRes);
  }
  if (pipe2(ex, O_CLOEXEC) != 0) {
    for (int fd : {out[0], out[1], err[0], err[1]}) close(fd);
    return Fail(Err::kOutOfRes);
  }
  std::vector<char*> argv, envp;
  for (const auto& a : spec.argv) argv.push_back(const_cast<char*>(a.c_str()));
  argv.push_back(nullptr);
  for (const auto& e : spec.env) envp.push_back(const_cast<char*>(e.c_str()));
  envp.push_back(nullptr);

  const int in = OpenStdin(spec.stdin_path);
  pid_t pid = fork();
  if (pid < 0) {
    for (int fd : {out[0], out[1], err[0], err[1], ex[0], ex[1], in}) close(fd);
    return Fail(Err::kOutOfRes);
  }
  if (pid == 0) ExecTask(spec, {in, out[1], err[1]}, ex[1], keep_fd, argv, envp);
  close(out[1]);
  close(err[1]);
  close(ex[1]);
  if (in >= 0) close(in);
  int child_errno = 0;
  ssize_t r;
  do {
    r = read(ex[0], &child_errno, sizeof child_errno);
  } while (r < 0 && errno == EINTR);
  close(ex[0]);
  if (r == sizeof child_errno) {
    close(out[0]);
    close(err[0]);
    waitpid(pid, nullptr, 0);
    spdlog::warn("cannot execute {}: {}", spec.path, std::strerror(child_errno));
    return Fail(child_errno == ENOENT                             ? Err::kNoFile
                : child_errno == EACCES || child_errno == ENOEXEC ? Err::kDenied
                                                                  : Err::kOutOfRes);
  }
  SetNonBlocking(out[0]);
  SetNonBlocking(err[0]);
  pipes_[next_pipe_++] = {spec.tid, out[0]};
  pipes_[next_pipe_++] = {spec.tid, err[0], true};
  pids_[pid] = spec.tid;
  return pid;
}

void Server::Signal(int pid, int sig) {
  if (pid > 0) kill(pid, sig);
}

std::string Server::Resolve(const std::string& file, const std::string& path_env,
                            const std::string& cwd) {
  if (file.find('/') != std::string::npos) {
    std::string p = file[0] == '/' ? file : cwd + "/" + file;
    return IsExecutableFile(p) ? p : "";
  }
  std::vector<std::string> dirs;
  if (const char* home = getenv("HOME"); home != nullptr)
    dirs.push_back(std::string(home) + "/pvm3/bin/" + kArch);
  for (size_t from = 0; from < opts_.ep.size();) {
    size_t end = opts_.ep.find(':', from);
    if (end == std::string::npos) end = opts_.ep.size();
    if (end > from) dirs.push_back(opts_.ep.substr(from, end - from));
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

void Server::RemoveTaskSocket(Tid t) { unlink(TaskSocketPath(opts_.rundir, t).c_str()); }

void Server::LogOutput(Tid t, std::string_view line) { spdlog::info("[{}] {}", t.str(), line); }

void Server::Log(std::string_view line) { spdlog::warn("{}", line); }

void Server::Info(std::string_view line) { spdlog::info("{}", line); }

void Server::Debug(std::string_view line) { spdlog::debug("{}", line); }

void Server::SendToPeer(PeerId p, const FrameHeader& h, std::span<const uint8_t> body) {
  if (links_) links_->Send(p, h, body);
}

void Server::DropPeer(PeerId p) {
  if (links_) links_->Drop(p);
}

void Server::RequestShutdown() {
  if (shutdown_) return;
  shutdown_ = true;
  shutdown_started_ns_ = NowNs();
}

}  // namespace mpvm
