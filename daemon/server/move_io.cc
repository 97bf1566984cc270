// move_io.cc — mpvmd's I/O for task migration (the source's part and the
// destination's restore process). The decisions are in core/move_source.cc
// and core/move_destination.cc; the exchange with the task is described in
// mpvm/migrate_wire.h.
#include "server/move_io.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <fmt/format.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <spdlog/spdlog.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <utility>

#include "mpvm/clock.h"
#include "mpvm/paths.h"
#include "mpvm/task_runtime.h"
#include "server/task_inspect.h"

namespace mpvm {

namespace {

using migrate::RecvAll;
using migrate::SendAll;

void SetTimeout(int fd, int seconds) {
  timeval tv{seconds, 0};
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
}

// Sends 'A' and a reason: the task carries on where it is.
void Refuse(int ms, const std::string& why) {
  char buf[1 + migrate::kWhySize] = {'A'};
  std::strncpy(buf + 1, why.c_str(), migrate::kWhySize - 1);
  SendAll(ms, buf, sizeof buf);
}

// A connection to the destination's restore process at addr:port.
mpvm::expected<int, std::string> ConnectRestore(const std::string& addr, int port) {
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(static_cast<uint16_t>(port));
  if (inet_pton(AF_INET, addr.c_str(), &a.sin_addr) != 1)
    return mpvm::unexpected(fmt::format("bad destination address '{}'", addr));
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
  if (fd < 0) return mpvm::unexpected(std::string(std::strerror(errno)));
  int rc = connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a);
  if (rc != 0 && errno == EINPROGRESS) {
    pollfd p{fd, POLLOUT, 0};
    int err = 0;
    socklen_t el = sizeof err;
    if (poll(&p, 1, 3000) == 1 && getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &el) == 0 && err == 0)
      rc = 0;
    else
      errno = err != 0 ? err : ETIMEDOUT;
  }
  if (rc != 0) {
    std::string why = fmt::format("cannot reach the restore process at {}:{}: {}", addr, port,
                                  std::strerror(errno));
    close(fd);
    return mpvm::unexpected(why);
  }
  fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) & ~O_NONBLOCK);  // the task streams with blocking writes
  return fd;
}

}  // namespace

namespace {

// A listener for the image on `addr` (the address the source reaches this
// host at), on a port of the kernel's choosing. An address that is not
// this host's own (the source sees it through NAT) falls back to all
// addresses, with a warning.
struct ImageListen {
  int fd;
  int port;
  std::string bound;  // "IP:port", as the kernel says
};
mpvm::expected<ImageListen, Err> ImageListener(const std::string& addr) {
  int lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (lfd < 0) return mpvm::unexpected(Err::kOutOfRes);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  if (inet_pton(AF_INET, addr.c_str(), &a.sin_addr) != 1)
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  int rc = bind(lfd, reinterpret_cast<sockaddr*>(&a), sizeof a);
  if (rc != 0 && errno == EADDRNOTAVAIL) {
    spdlog::warn("{} is not an address of this host; a move's image listener takes them all", addr);
    a.sin_addr.s_addr = htonl(INADDR_ANY);
    rc = bind(lfd, reinterpret_cast<sockaddr*>(&a), sizeof a);
  }
  socklen_t len = sizeof a;
  if (rc != 0 || listen(lfd, 4) != 0 ||
      getsockname(lfd, reinterpret_cast<sockaddr*>(&a), &len) != 0) {
    close(lfd);
    return mpvm::unexpected(Err::kOutOfRes);
  }
  char ip[INET_ADDRSTRLEN] = "";
  inet_ntop(AF_INET, &a.sin_addr, ip, sizeof ip);
  const int port = ntohs(a.sin_port);
  return ImageListen{lfd, port, fmt::format("{}:{}", ip, port)};
}

// A pipe holding `key`, for the restore process to read (MPVM_RESTORE_KEY_FD):
// its read end, or -1.
int KeyPipe(const std::string& key) {
  int p[2];
  if (pipe2(p, O_CLOEXEC) != 0) return -1;
  const bool ok = write(p[1], key.data(), key.size()) == static_cast<ssize_t>(key.size());
  close(p[1]);
  if (!ok) {
    close(p[0]);
    return -1;
  }
  return p[0];
}

}  // namespace

Result<RestoreStart> MoveIo::SpawnRestore(const SpawnSpec& spec, const std::string& key,
                                          const std::string& listen_addr) {
  auto listener = ImageListener(listen_addr);
  if (!listener) return mpvm::unexpected(listener.error());
  const int lfd = listener->fd, port = listener->port;
  // The restore process writes a byte to `ready` once it waits for the
  // image (ckpt.h), or the pipe closes if it ends before.
  int ready[2];
  const int key_fd = KeyPipe(key);
  if (key_fd < 0 || pipe2(ready, O_CLOEXEC | O_NONBLOCK) != 0) {
    if (key_fd >= 0) close(key_fd);
    close(lfd);
    return Fail(Err::kOutOfRes);
  }
  auto pid = StartRestore(spec, lfd, ready[1], key_fd);
  close(lfd);
  close(ready[1]);
  close(key_fd);
  if (!pid) {
    close(ready[0]);
    return mpvm::unexpected(pid.error());
  }
  if (auto old = ready_pipes_.find(spec.tid); old != ready_pipes_.end()) close(old->second);
  ready_pipes_[spec.tid] = ready[0];
  spdlog::info("the restore process of {} (pid {}) waits for its sealed image on {}",
               spec.tid.str(), *pid, listener->bound);
  return RestoreStart{*pid, port, true};
}

Result<int> MoveIo::StartRestore(const SpawnSpec& spec, int lfd, int ready, int key_fd) {
  while (auto spare = spares_.Take(spec.path.c_str())) {
    auto pid = procs_.Revive(spare->pid, spare->fd, spec, {lfd, ready, key_fd});
    close(spare->fd);
    if (pid) {
      spdlog::info("the spare process {} restores {}", spare->pid, spec.tid.str());
      return pid;
    }
    kill(spare->pid, SIGKILL);  // gone, or unfit for this task: the next one, or a fresh one
  }
  SpawnSpec s = spec;
  s.env.push_back("MPVM_RESTORE_LISTEN_FD=" + std::to_string(lfd));
  s.env.push_back("MPVM_RESTORE_READY_FD=" + std::to_string(ready));
  s.env.push_back("MPVM_RESTORE_KEY_FD=" + std::to_string(key_fd));
  return procs_.Spawn(s, {lfd, ready, key_fd});
}

void MoveIo::OnRestoreReady(Tid t) {
  auto it = ready_pipes_.find(t);
  if (it == ready_pipes_.end()) return;
  char c = 0;
  const ssize_t n = read(it->second, &c, 1);
  close(it->second);
  ready_pipes_.erase(it);
  if (n == 1) core_.OnRestoreReady(t);  // else it ended, and its exit tells the core
}

mpvm::expected<void, std::string> MoveIo::BeginMove(const MoveAsk& ask) {
  const Tid t = ask.tid;
  if (moving_.contains(t)) return mpvm::unexpected(std::string("it is moving already"));
  if (listen_fd_ < 0) return mpvm::unexpected(std::string("this daemon has no migrate.sock"));
  Moving m;
  m.tid = t;
  m.pid = ask.pid;
  m.addr = ask.addr;
  m.port = ask.port;
  m.token = ask.token;
  m.wait = ask.wait;
  moving_[t] = std::move(m);  // Tick asks it, at once
  return {};
}

namespace {

constexpr int64_t kAskFirstNs = 10'000'000;   // a task in a call of its own: look again then,
constexpr int64_t kAskMostNs = 100'000'000;   // and back off to this
constexpr int64_t kStopWaitNs = 200'000'000;  // a task that does not stop (in the kernel)

bool Stopped(int pid) {
  const char s = inspect::ReadStat(pid).state;
  return s == 'T' || s == 't';
}

// Is the stopped task computing, or waiting in the library (a wait whose
// arguments point into its wait area)? Then SIGMIGRATE interrupts nothing
// of the program's own.
bool Interruptible(const inspect::SyscallState& sc, const WaitArea& wait) {
  using Kind = inspect::SyscallState::Kind;
  if (sc.kind == Kind::kUser) return true;
  if (sc.kind != Kind::kInCall) return false;
  if (sc.nr != SYS_ppoll && sc.nr != SYS_clock_nanosleep && sc.nr != SYS_nanosleep) return false;
  for (uint64_t a : sc.args)
    if (wait.Holds(a)) return true;
  return false;
}

}  // namespace

int64_t MoveIo::Tick(int64_t now_ns) {
  int64_t due = -1;
  const auto soon = [&](int64_t in_ns) { due = due < 0 ? in_ns : std::min(due, in_ns); };
  if (const int64_t spare_due = spares_.Expire(now_ns); spare_due >= 0) soon(spare_due);
  std::vector<std::pair<Tid, AskFailure>> failed;
  for (auto& [t, m] : moving_) {
    if (m.ms >= 0 || m.asking == Moving::Asking::kAsked) continue;
    if (m.asking == Moving::Asking::kStopping || now_ns >= m.ask_at_ns)
      if (auto f = Ask(m, now_ns)) failed.emplace_back(t, std::move(*f));
    if (m.asking == Moving::Asking::kStopping) soon(1'000'000);
    if (m.asking == Moving::Asking::kDue) soon(std::max<int64_t>(0, m.ask_at_ns - now_ns));
  }
  for (auto& [t, f] : failed) {
    DropMove(t);
    core_.OnMoveFailed(t, f.why, f.pinned);
  }
  return due;
}

std::optional<MoveIo::AskFailure> MoveIo::Ask(Moving& m, int64_t now_ns) {
  if (m.asking == Moving::Asking::kStopping) {
    if (Stopped(m.pid)) return Look(m, true, now_ns);
    if (now_ns - m.stopped_ns > kStopWaitNs) {  // busy in the kernel: leave it be for now
      kill(m.pid, SIGCONT);
      AskLater(m, -1, now_ns);
    }
    return std::nullopt;
  }
  const char state = inspect::ReadStat(m.pid).state;
  if (state == 0 || state == 'Z' || state == 'X') {  // ending: its exit tells the core
    m.asking = Moving::Asking::kAsked;
    return std::nullopt;
  }
  if (state == 'T' || state == 't') return Look(m, false, now_ns);  // stopped by someone else
  if (state != 'R') {
    // Blocked: the kernel shows its call without a stop, which some calls
    // (epoll_wait, sigtimedwait, semop) would end with EINTR.
    const auto sc = inspect::ReadSyscall(m.pid);
    if (sc.kind == inspect::SyscallState::Kind::kInCall && !Interruptible(sc, m.wait)) {
      // What it holds is seen without a stop too: once, at the first look
      // (a task in system() is refused now, not after its command).
      if (!std::exchange(m.pins_seen, true))
        if (std::string pins = inspect::WhatPinsTask(m.pid); !pins.empty())
          return AskFailure{std::move(pins), true};
      AskLater(m, sc.nr, now_ns);
      return std::nullopt;
    }
  }
  // The stream to the restore process first: the task stops for as short
  // a time as it can.
  if (auto f = ConnectStream(m)) return f;
  kill(m.pid, SIGSTOP);
  m.asking = Moving::Asking::kStopping;
  m.stopped_ns = now_ns;
  for (int i = 0; i < 20; ++i) {  // most tasks stop within microseconds
    if (Stopped(m.pid)) return Look(m, true, now_ns);
    usleep(20);
  }
  return std::nullopt;  // Tick looks again within a millisecond
}

std::optional<MoveIo::AskFailure> MoveIo::ConnectStream(Moving& m) {
  if (m.rfd >= 0) return std::nullopt;
  auto fd = ConnectRestore(m.addr, m.port);
  if (!fd) return AskFailure{fd.error(), false};
  m.rfd = *fd;
  return std::nullopt;
}

void MoveIo::AskLater(Moving& m, long nr, int64_t now_ns) {
  if (!m.waits_said && nr >= 0)
    spdlog::info("{} is in a system call of its own ({}): it moves once that returns", m.tid.str(),
                 nr);
  m.waits_said = m.waits_said || nr >= 0;
  m.backoff_ns = std::clamp<int64_t>(2 * m.backoff_ns, kAskFirstNs, kAskMostNs);
  m.asking = Moving::Asking::kDue;
  m.ask_at_ns = now_ns + m.backoff_ns;
}

std::optional<MoveIo::AskFailure> MoveIo::Look(Moving& m, bool we_stopped, int64_t now_ns) {
  const auto sc = inspect::ReadSyscall(m.pid);
  // Unreadable (ptrace rules, a task that made itself undumpable): asked as
  // before, by the signal alone.
  const bool unknown = sc.kind == inspect::SyscallState::Kind::kUnknown;
  if (unknown && !m.waits_said)
    spdlog::info("cannot see where {} (pid {}) is (/proc/{}/syscall): asking it anyway",
                 m.tid.str(), m.pid, m.pid);
  if (!unknown && !Interruptible(sc, m.wait)) {
    if (we_stopped) kill(m.pid, SIGCONT);
    AskLater(m, sc.nr, now_ns);
    return std::nullopt;
  }
  std::optional<AskFailure> failure;
  if (std::string pins = inspect::WhatPinsTask(m.pid); !pins.empty()) {
    failure = AskFailure{std::move(pins), true};
  } else if (auto f = ConnectStream(m)) {
    failure = std::move(f);
  } else {
    kill(m.pid, MigrateSignal());  // delivered as it continues
  }
  if (we_stopped) kill(m.pid, SIGCONT);
  m.asking = Moving::Asking::kAsked;
  return failure;
}

void MoveIo::FaultPoint(std::string_view step, int task_pid) {
  if (fault_.empty()) return;
  if (fault_ == fmt::format("exit-on-{}", step)) {
    spdlog::warn("fault injection: exiting at migration step '{}'", step);
    spdlog::default_logger()->flush();
    _exit(70);  // as a crash: no clean-up, no goodbye to the peers
  }
  if (fault_ == fmt::format("kill-task-on-{}", step) && task_pid > 0) {
    spdlog::warn("fault injection: killing the moving task (pid {}) at step '{}'", task_pid, step);
    kill(task_pid, SIGKILL);
  }
}

void MoveIo::CancelMove(Tid t) {
  auto it = moving_.find(t);
  // Once the task has handed over it waits for our verdict: never drop it then.
  if (it == moving_.end() || it->second.ms >= 0) return;
  DropMove(t);
}

void MoveIo::DropMove(Tid t) {
  auto it = moving_.find(t);
  if (it == moving_.end()) return;
  if (it->second.asking == Moving::Asking::kStopping) kill(it->second.pid, SIGCONT);
  for (int fd : it->second.fds) close(fd);
  if (it->second.rfd >= 0) close(it->second.rfd);
  if (it->second.ms >= 0) close(it->second.ms);
  moving_.erase(it);
}

namespace {

// Reads a handover's head and the link descriptors that come with it.
// Returns the bytes read (sizeof head when whole).
ssize_t ReceiveHead(int ms, migrate::HandoverHead& head, std::vector<int>& fds) {
  alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int) * migrate::kMaxLinks)];
  iovec iov{&head, sizeof head};
  msghdr msg{};
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  msg.msg_control = control;
  msg.msg_controllen = sizeof control;
  ssize_t r = recvmsg(ms, &msg, MSG_CMSG_CLOEXEC | MSG_WAITALL);
  for (cmsghdr* c = r > 0 ? CMSG_FIRSTHDR(&msg) : nullptr; c != nullptr; c = CMSG_NXTHDR(&msg, c)) {
    if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS) continue;
    const size_t n = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
    for (size_t i = 0; i < n; ++i) {
      int fd;
      std::memcpy(&fd, CMSG_DATA(c) + i * sizeof(int), sizeof fd);
      fds.push_back(fd);
    }
  }
  return r;
}

// 'G', the connected stream to the restore process and its token.
bool SendGo(int ms, int rfd, const std::string& token) {
  const char go = 'G';
  return migrate::SendWithRights(ms, &go, 1, &rfd, 1) && SendAll(ms, token.data(), token.size());
}

}  // namespace

void MoveIo::AcceptMigrate() {
  for (;;) {
    int ms = accept4(listen_fd_, nullptr, nullptr, SOCK_CLOEXEC);
    if (ms < 0) return;
    SetTimeout(ms, 5);
    TakeHandover(ms);
  }
}

void MoveIo::TakeHandover(int ms) {
  migrate::HandoverHead head{};
  std::vector<int> fds;
  const ssize_t r = ReceiveHead(ms, head, fds);
  auto bail = [&](const std::string& why) {
    spdlog::warn("migrate.sock: {}", why);
    for (int fd : fds) close(fd);
    Refuse(ms, why);
    close(ms);
  };
  if (r != sizeof head) return bail("not a migrating task (short handover header)");
  if (const char* bad = migrate::CheckHandoverHead(head)) return bail(bad);  // links: once read
  auto it = moving_.find(Tid(head.tid));
  if (it == moving_.end() || it->second.pid != head.pid || it->second.ms >= 0)
    return bail(fmt::format("no move of {} (pid {}) was asked for", Tid(head.tid).str(), head.pid));
  Moving& m = it->second;
  const Tid t = m.tid;
  if (m.asking == Moving::Asking::kStopping) kill(m.pid, SIGCONT);  // it came on its own
  m.asking = Moving::Asking::kAsked;
  if (m.rfd < 0) {  // it came before it was asked (a signal of its own)
    auto fd = ConnectRestore(m.addr, m.port);
    if (!fd) {
      bail(fd.error());
      DropMove(t);
      core_.OnMoveFailed(t, fd.error());
      return;
    }
    m.rfd = *fd;
  }
  m.by_signal = (head.flags & migrate::kStoppedBySignal) != 0;
  if (head.nlinks == migrate::kRefusal) {
    char why[migrate::kWhySize + 1] = {};
    RecvAll(ms, why, migrate::kWhySize);
    for (int fd : fds) close(fd);
    close(ms);
    DropMove(t);
    core_.OnMoveFailed(t, why, /*pinned=*/true);
    return;
  }
  const char* bad = ReceiveLinks(ms, head, fds.size(), m);
  m.fds = std::move(fds);
  if (bad != nullptr) {
    Refuse(ms, bad);
    close(ms);
    DropMove(t);
    core_.OnMoveFailed(t, bad);
    return;
  }
  if (!SendGo(ms, m.rfd, m.token)) {
    close(ms);
    DropMove(t);
    core_.OnMoveFailed(t, "the task went away during the handover");
    return;
  }
  // The image now streams from the task to the restore process (minutes
  // for a huge task): wait for its word without a time-out.
  SetTimeout(ms, 0);
  m.ms = ms;
  core_.OnMoveFrozen(t);
  FaultPoint("handover", m.pid);
}

const char* MoveIo::ReceiveLinks(int ms, const migrate::HandoverHead& head, size_t nfds,
                                 Moving& m) {
  m.descs.resize(head.nlinks);
  if (!RecvAll(ms, m.descs.data(), sizeof(migrate::LinkDesc) * head.nlinks))
    return "the handover was cut short";
  if (const char* bad = migrate::CheckHandover(head, m.descs.data(), m.descs.size(), nfds))
    return bad;
  for (uint32_t i = 0; i < head.nlinks; ++i) {
    const auto& d = m.descs[i];
    std::vector<uint8_t> in(d.in_len), out(d.out_len);
    bool ok = RecvAll(ms, in.data(), in.size()) && RecvAll(ms, out.data(), out.size());
    std::optional<LinkCipherState> cipher;
    std::vector<uint8_t> sealed(d.sealed_len);
    if (ok && (d.flags & migrate::kLinkEncrypted) != 0) {
      LinkCipherState st{};
      ok = RecvAll(ms, &st, sizeof st) && RecvAll(ms, sealed.data(), sealed.size());
      cipher = st;
    }
    m.cipher.push_back(cipher);
    m.sealed.push_back(std::move(sealed));
    m.in.push_back(std::move(in));
    m.out.push_back(std::move(out));
    if (!ok) return "the handover was cut short";
  }
  return nullptr;
}

void MoveIo::OnMoveReadable(Tid t) {
  auto it = moving_.find(t);
  if (it == moving_.end()) return;
  Moving& m = it->second;
  SetTimeout(m.ms, 5);
  char what = 0;
  if (!RecvAll(m.ms, &what, 1)) {
    DropMove(t);
    core_.OnMoveFailed(t, "the task died while it was being moved");
    return;
  }
  if (what == 'K') {
    migrate::ImageDone done{};
    if (RecvAll(m.ms, &done, sizeof done)) {
      FaultPoint("image", m.pid);
      CommitMove(
          m, MoveTimes{done.bytes, done.freeze_ns, done.sent_ns, done.restored_ns, m.by_signal});
      return;
    }
  }
  char why[migrate::kWhySize + 1] = {};
  if (what == 'R') RecvAll(m.ms, why, migrate::kWhySize);
  DropMove(t);
  core_.OnMoveFailed(t, what == 'R' ? why : "the task broke the protocol", what == 'R');
}

void MoveIo::ForwardLinks(Moving& m) {
  // Its task links: read to their end, what comes goes on to it; the peers
  // are told it moved (kMoved) and then send to it afresh. Its socket name
  // goes first: a peer here that reads kMoved and connects again must not
  // reach the listener below, which is closed once drained (frames written
  // on a connection still queued there would be lost with it).
  for (const auto& d : m.descs)
    if (static_cast<migrate::LinkKind>(d.kind) == migrate::LinkKind::kUnixListener)
      procs_.RemoveTaskSocket(m.tid);
  for (size_t i = 1; i < m.descs.size(); ++i) {
    const auto kind = static_cast<migrate::LinkKind>(m.descs[i].kind);
    if (kind == migrate::LinkKind::kPeer) {
      AddForwardLink(m.fds[i], m.tid, m.out[i], m.in[i], m.descs[i].peer, m.cipher[i], m.sealed[i]);
    } else if (kind == migrate::LinkKind::kUnixListener) {
      for (;;) {  // the connections waiting (no new ones: its name is gone)
        int fd = accept4(m.fds[i], nullptr, nullptr, SOCK_CLOEXEC | SOCK_NONBLOCK);
        if (fd < 0) break;
        AddForwardLink(fd, m.tid, {}, {}, 0);
      }
      close(m.fds[i]);
    } else {
      close(m.fds[i]);  // callers from other hosts were mid-handshake: they relay instead
    }
  }
}

void MoveIo::CommitMove(Moving& m, const MoveTimes& times) {
  const Tid t = m.tid;
  if (!core_.MayCommit(t)) {  // its destination left: the task carries on here
    const char a = 'A';
    SendAll(m.ms, &a, 1);
    DropMove(t);
    core_.OnMoveFailed(t, "its destination left the virtual machine before the commit", false,
                       MoveEvent::kDestinationDied);
    return;
  }
  // The commit point: once 'C' is written, the copy runs and this one never
  // runs again. We write it (not the task), so a task killed now is not lost.
  const char c = 'C';
  if (!SendAll(m.rfd, &c, 1)) {
    const char a = 'A';
    SendAll(m.ms, &a, 1);  // the task carries on here
    DropMove(t);
    core_.OnMoveFailed(t, "the restore process went away before the commit");
    return;
  }
  procs_.Drain(t, [this](Tid from, std::string_view bytes, bool is_stderr) {
    core_.OnOutput(from, bytes, is_stderr);
  });  // what it printed before it stopped goes out first
  // Frames it had sent us (and had not finished sending) are handled as its own.
  const ConnId own = m.descs.empty() ? 0 : core_.TaskConn(t);
  Connection* sc = conns_.Find(own);
  if (sc != nullptr) {
    Connection* conn = sc;
    conn->ReadAvailable();
    conn->reader().Feed(m.out[0]);
    Frame f;
    while (conn->reader().Next(f) == FrameReader::Status::kFrame) core_.OnFrame(own, std::move(f));
  }
  core_.OnMoveCommitted(t, times);
  // Frames we had written to it and it had not read: on to where it is now.
  if (!m.descs.empty()) {
    Connection theirs(m.fds[0]);  // closes our copy of its end when done
    theirs.reader().Feed(m.in[0]);
    theirs.ReadAvailable();
    if (sc != nullptr) theirs.reader().Feed(sc->TakeUnsent());
    Frame f;
    while (theirs.reader().Next(f) == FrameReader::Status::kFrame) core_.Reroute(t, std::move(f));
  }
  if (sc != nullptr) sc->Close();  // not OnClose: the task did not leave the VM
  ForwardLinks(m);
  m.fds.clear();
  core_.OnCommitDone(t);
  procs_.Forget(m.pid, t);
  // Its process restores the next arrival of its program here, or ends.
  const bool spare = times.bytes <= kSpareMaxImage && spares_.Wants(m.pid);
  const char x = spare ? 'S' : 'X';
  if (spare && SendAll(m.ms, &x, 1)) {
    spares_.Keep(m.pid, m.ms, MonotonicNs());
    m.ms = -1;  // the spare's now
  } else {
    SendAll(m.ms, &x, 1);
    kill(m.pid, SIGKILL);  // it exits by itself; this makes sure it never runs on
  }
  DropMove(t);
}

void MoveIo::AddForwardLink(int fd, Tid t, std::span<const uint8_t> unsent,
                            std::span<const uint8_t> unread, int32_t peer,
                            const std::optional<LinkCipherState>& cipher,
                            std::span<const uint8_t> sealed) {
  SetNonBlocking(fd);
  const ConnId id = conns_.Add(fd);
  Connection* c = conns_.Find(id);
  if (cipher) {  // an encrypted link: we go on where the task left off
    c->EnableCipher(std::make_unique<LinkCipher>(*cipher));
    c->FeedSealed(sealed);
  }
  core_.OnForwardLink(id, t, cipher.has_value());
  // First take in what the peer has sent already: it may have sent its last
  // message and gone, and a write to it (below) would fail and close the link.
  c->reader().Feed(unread);
  const auto rr = c->ReadAvailable();
  if (rr == Connection::ReadResult::kOk) {
    // Tell it at once (before handling what came): a sender keeps sending
    // here until it reads this, and those are its stale sends.
    c->SendRaw(unsent);  // the rest of what the task was writing on it
    FrameHeader h;
    h.kind = FrameKind::kMoved;
    h.src = t.raw();
    h.dst = peer;
    c->Send(h, {});
  }
  Frame f;
  while (c->reader().Next(f) == FrameReader::Status::kFrame) core_.OnFrame(id, std::move(f));
  if (rr != Connection::ReadResult::kOk || !c->open()) {
    c->Close();
    core_.OnClose(id);
  }
}

MoveIo::~MoveIo() { Close(); }

void MoveIo::Listen(const std::string& rundir) {
  // Tasks asked to move connect here to hand over their links.
  listen_fd_ = ListenUnix(rundir + "/" + migrate::kSocketName);
  if (listen_fd_ < 0)
    spdlog::warn("cannot listen on {}/{}: {}; tasks here cannot move", rundir, migrate::kSocketName,
                 std::strerror(-listen_fd_));
}

void MoveIo::AppendPollItems(std::vector<zmq_pollitem_t>& items, std::vector<PollId>& index) const {
  if (listen_fd_ >= 0) {
    items.push_back({nullptr, listen_fd_, ZMQ_POLLIN, 0});
    index.push_back({Tid()});
  }
  for (const auto& [t, m] : moving_)
    if (m.ms >= 0) {
      items.push_back({nullptr, m.ms, ZMQ_POLLIN, 0});
      index.push_back({t});
    }
  for (const auto& [t, fd] : ready_pipes_) {
    items.push_back({nullptr, fd, ZMQ_POLLIN, 0});
    index.push_back({t, true});
  }
}

void MoveIo::OnReady(PollId id) {
  if (id.ready_pipe) {
    OnRestoreReady(id.tid);
  } else if (id.tid.raw() == 0) {
    AcceptMigrate();
  } else {
    OnMoveReadable(id.tid);
  }
}

void MoveIo::Close() {
  for (auto& [t, m] : moving_)
    if (m.asking == Moving::Asking::kStopping) kill(m.pid, SIGCONT);
  if (listen_fd_ >= 0) close(listen_fd_);
  listen_fd_ = -1;
  for (const auto& [t, fd] : ready_pipes_) close(fd);
  ready_pipes_.clear();
  spares_.Clear();
}

}  // namespace mpvm
