// task_migrate.cc — the task's side of a migration (docs/design/migration.md).
//
// The daemon asks a task to move with SIGMIGRATE (SIGRTMAX-1). The handler
// moves it at once when the task is computing outside the library; inside a
// pvm_* call it only notes the request, and the call moves the task at its
// next boundary: its entry, or a wait for I/O. Either way the runtime's state
// is consistent when MigrateNow() runs.
//
// MigrateNow() may run in a signal handler that interrupted arbitrary code,
// so it allocates nothing and uses async-signal-safe calls only. It hands
// every link to the daemon (the daemon reads them to their end and forwards
// what comes), streams the process to the restore process the daemon names,
// and exits when the daemon commits. In the restored copy it returns 2; the
// copy drops its old links (AfterResume) and enrols with its new daemon as
// the same tid at the next boundary.
#include <errno.h>
#include <malloc.h>
#include <signal.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>

#include "mpvm/ckpt/ckpt.h"
#include "mpvm/ckpt/seal.h"
#include "mpvm/control.h"
#include "mpvm/migrate_wire.h"
#include "mpvm/paths.h"
#include "mpvm/task_runtime.h"

namespace mpvm {

static_assert(migrate::kKeySize == ckpt::kKeySize && ckpt::kKeySize == ckpt::kSealKeySize);

namespace {

using migrate::RecvAll;
using migrate::SendAll;

using migrate::HandoverHead;
using migrate::LinkDesc;
using migrate::LinkKind;

volatile sig_atomic_t g_depth = 0;    // pvm_* calls in progress
volatile sig_atomic_t g_pending = 0;  // a move was asked for
volatile sig_atomic_t g_resumed = 0;  // we are a restored copy that has not re-enrolled
volatile sig_atomic_t g_in_migrate = 0;
volatile sig_atomic_t g_in_handler = 0;  // moving from the signal handler (maybe inside malloc)
TaskRuntime* g_migratable = nullptr;

int64_t RealtimeNs() {
  timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return static_cast<int64_t>(ts.tv_sec) * 1'000'000'000 + ts.tv_nsec;
}

void CopyWhy(char* why, const char* text) {
  size_t i = 0;
  for (; text[i] != '\0' && i + 1 < migrate::kWhySize; ++i) why[i] = text[i];
  why[i] = '\0';
}

void OnSigMigrate(int) {
  const int saved = errno;
  g_pending = 1;
  if (g_depth == 0 && g_migratable != nullptr && g_in_migrate == 0) {
    g_in_handler = 1;
    if (g_migratable->MigrateNow() == 2) g_resumed = 1;
    g_in_handler = 0;
  }
  errno = saved;
}

}  // namespace

int MigrateSignal() { return SIGRTMAX - 1; }

LibraryWaitArea& LibraryWaits() {
  static LibraryWaitArea area;
  return area;
}

void LibraryEnter() {
  const int depth = g_depth;
  g_depth = depth + 1;
  if (depth == 0 && (g_pending != 0 || g_resumed != 0) && g_migratable != nullptr)
    g_migratable->AtBoundary();
}

void LibraryLeave() { g_depth = g_depth - 1; }

void TaskRuntime::EnableMigration() {
  g_migratable = this;
  // The image is sealed in the signal handler (ckpt/seal.h): libsodium's
  // one-time set-up (its random source among it) happens here, not there.
  if (sodium_init() < 0) std::fprintf(stderr, "libpvm: libsodium failed to start\n");
  struct sigaction sa {};
  sa.sa_handler = OnSigMigrate;
  sigemptyset(&sa.sa_mask);
  sa.sa_flags = SA_RESTART;
  sigaction(MigrateSignal(), &sa, nullptr);
}

bool TaskRuntime::Migratable() const { return g_migratable == this; }

void TaskRuntime::AtBoundary() {
  if (g_migratable != this || g_in_migrate != 0) return;
  // Until nothing is left: the next move may be asked for while a copy
  // re-enrols at its new host (its daemon may move it on at once).
  for (;;) {
    if (g_resumed != 0) AfterResume();
    if (g_pending == 0 || MigrateNow() != 2) return;
    g_resumed = 1;
  }
}

int TaskRuntime::MigrateNow() {
  // While it moves, the death of its daemon must not end it (PR_SET_PDEATHSIG,
  // set at spawn): once the copy is restored it commits the copy itself, and
  // a SIGTERM pending at the capture would travel in the image and end the
  // copy too. Restored afterwards in this process; a copy has its own.
  const pid_t parent = getppid();
  prctl(PR_SET_PDEATHSIG, 0);
  const int r = MigrateOnce();
  if (r != 2) {
    prctl(PR_SET_PDEATHSIG, SIGTERM);
    if (getppid() != parent) kill(getpid(), SIGTERM);  // its daemon died meanwhile
  }
  return r;
}

namespace migrate {
// A task's links as it hands them over: room for one descriptor more, its
// migrate.sock connection, which the capture keeps.
struct Handover {
  LinkDesc descs[kMaxLinks];
  int fds[kMaxLinks + 1];
  const Connection* conns[kMaxLinks];
  uint32_t n = 0;
  bool refused = false;
  char why[kWhySize] = {};
};
}  // namespace migrate

namespace {

// migrate.sock of the daemon in `dir`, connected; -1 if nobody listens (a
// stray signal) or the path is too long.
int ConnectMigrateSock(const char* dir, size_t dir_len) {
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  const size_t name_len = strlen(migrate::kSocketName);
  if (dir_len + 1 + name_len + 1 > sizeof addr.sun_path) return -1;
  memcpy(addr.sun_path, dir, dir_len);
  addr.sun_path[dir_len] = '/';
  memcpy(addr.sun_path + dir_len + 1, migrate::kSocketName, name_len + 1);
  const int ms = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (ms >= 0 && connect(ms, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0) return ms;
  if (ms >= 0) close(ms);
  return -1;
}

// Sends the handover: head, link descriptions and descriptors, then each
// link's unread and unsent bytes (and an encrypted link's cipher state).
bool SendHandover(int ms, HandoverHead& head, migrate::Handover& ho) {
  head.nlinks = ho.n;
  iovec iov[2] = {{&head, sizeof head}, {ho.descs, sizeof(LinkDesc) * ho.n}};
  bool ok = migrate::SendWithRights(ms, iov, 2, ho.fds, ho.n);
  for (uint32_t i = 0; ok && i < ho.n; ++i) {
    const Connection* c = ho.conns[i];
    if (c == nullptr) continue;
    uint8_t h[kFrameHeaderSize];
    if (c->reader().PendingHeader(h)) ok = SendAll(ms, h, sizeof h);
    auto body = c->reader().PendingBody();
    if (ok && !body.empty()) ok = SendAll(ms, body.data(), body.size());
    c->ForEachUnsent([&](std::span<const uint8_t> s) {
      if (ok && !s.empty()) ok = SendAll(ms, s.data(), s.size());
    });
    if (ok && c->encrypted()) {  // the daemon reads and writes it in our place
      const LinkCipherState st = c->cipher()->State();
      ok = SendAll(ms, &st, sizeof st);
      auto sealed = c->SealedPending();
      if (ok && !sealed.empty()) ok = SendAll(ms, sealed.data(), sealed.size());
    }
  }
  return ok;
}

// The daemon's answer: 'G' with the stream to the restore process (*rfd)
// and the image's key; false if it gave up ('A') or went away.
bool AwaitGo(int ms, int* rfd, uint8_t* key) {
  char verdict = 0;
  alignas(cmsghdr) char rcontrol[CMSG_SPACE(sizeof(int))];
  iovec riov{&verdict, 1};
  msghdr rmsg{};
  rmsg.msg_iov = &riov;
  rmsg.msg_iovlen = 1;
  rmsg.msg_control = rcontrol;
  rmsg.msg_controllen = sizeof rcontrol;
  ssize_t r;
  do {
    r = recvmsg(ms, &rmsg, MSG_CMSG_CLOEXEC);
  } while (r < 0 && errno == EINTR);
  if (r != 1) return false;
  for (cmsghdr* c = CMSG_FIRSTHDR(&rmsg); c != nullptr; c = CMSG_NXTHDR(&rmsg, c))
    if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_RIGHTS)
      memcpy(rfd, CMSG_DATA(c), sizeof *rfd);
  return verdict == 'G' && *rfd >= 0 && RecvAll(ms, key, migrate::kKeySize);
}

// Captures this process into `rfd` and settles the move with the daemon on
// `ms`: returns 2 in the restored copy, 1 when this process carries on
// (refused, aborted); does not return when committed (it exits, or serves
// as a spare).
int CaptureAndSettle(int ms, int rfd, const uint8_t* key, migrate::Handover& ho, const char* dir) {
  ho.fds[ho.n] = ms;
  uint64_t bytes = 0;
  int64_t sent_ns = 0;
  ckpt::CaptureOptions o;
  o.out_fd = rfd;
  o.key = key;
  o.own_fds = ho.fds;
  o.n_own_fds = static_cast<int>(ho.n + 1);
  o.bytes_sent = &bytes;
  o.rundir = dir;  // this host's file hash cache
  o.sent_ns = &sent_ns;
  // At a library call's boundary (not in the handler, which may have
  // stopped the task inside malloc), the heap's free pages go back to the
  // kernel first, so that the image leaves them out.
  if (g_in_handler == 0) malloc_trim(0);
  const int64_t freeze_ns = RealtimeNs();
  const auto result = ckpt::Capture(o, ho.why, sizeof ho.why);
  if (result == ckpt::CaptureResult::kResumed) return 2;  // every descriptor above is gone
  if (result == ckpt::CaptureResult::kSaved) {
    migrate::ImageDone done{bytes, freeze_ns, sent_ns, RealtimeNs()};
    const char k = 'K';
    char answer = 0;
    const bool told = SendAll(ms, &k, 1) && SendAll(ms, &done, sizeof done);
    const bool heard = told && RecvAll(ms, &answer, 1);
    if (!heard || answer == 'X') {
      // Committed: the copy runs; this process must never run on. If our
      // daemon died instead of answering, the copy is complete and its host
      // alive, while this one has lost its daemon: commit it ourselves ('C'
      // a second time, if the daemon wrote it before dying, is ignored).
      // Unflushed stdio travelled in the image, so nothing is flushed here.
      if (!heard) ckpt::Commit(rfd);
      syscall(SYS_exit_group, 0);
    }
    if (answer == 'S') {  // committed, and this process is to restore the next arrival
      close(rfd);
      ckpt::ServeAsSpare(ms);
    }
    ckpt::Abort(rfd);
  } else {
    const char r = 'R';
    SendAll(ms, &r, 1);
    SendAll(ms, ho.why, sizeof ho.why);
  }
  close(rfd);
  return 1;
}

}  // namespace

void TaskRuntime::ListLinks(migrate::Handover& ho) const {
  auto add = [&](LinkKind kind, int fd, int32_t peer, const Connection* c) {
    if (ho.n >= migrate::kMaxLinks) {
      CopyWhy(ho.why, "too many open task links to hand over (more than 250)");
      ho.refused = true;
      return;
    }
    ho.descs[ho.n] =
        LinkDesc{static_cast<int32_t>(kind),
                 peer,
                 c ? static_cast<uint32_t>(c->reader().PendingSize()) : 0u,
                 c ? static_cast<uint32_t>(c->UnsentSize()) : 0u,
                 c && c->encrypted() ? migrate::kLinkEncrypted : 0u,
                 c && c->encrypted() ? static_cast<uint32_t>(c->SealedPending().size()) : 0u};
    ho.fds[ho.n] = fd;
    ho.conns[ho.n] = c;
    ++ho.n;
  };
  add(LinkKind::kDaemon, daemon_->fd(), 0, daemon_.get());
  for (const auto& c : conns_) {
    if (!c->open()) continue;
    add(LinkKind::kPeer, c->fd(), c->peer_tid, c.get());
  }
  if (listen_fd_ >= 0) add(LinkKind::kUnixListener, listen_fd_, 0, nullptr);
  if (tcp_listen_fd_ >= 0) add(LinkKind::kTcpListener, tcp_listen_fd_, 0, nullptr);
}

int TaskRuntime::MigrateOnce() {
  g_pending = 0;
  // A restored copy that has not enrolled at its new host yet (it computed
  // without a PVM call since) has no links: its old ones are gone.
  const bool fresh = g_resumed != 0;
  const char* dir = rundir_.c_str();
  size_t dir_len = rundir_.size();
  if (fresh) {
    dir = ckpt::ResumeEnv("MPVM_RUNDIR");
    if (dir == nullptr) return 0;
    dir_len = strlen(dir);
  } else if (!daemon_ || !daemon_->open() || mytid_.raw() == 0) {
    g_pending = 1;  // not enrolled yet: once it is
    return 0;
  }
  if (!SettleLinkHandshakes() || (calls_in_flight_ > 0 && !migrate_call_)) {
    g_pending = 1;  // a link being set up or a request in flight: at the next boundary
    return 0;
  }
  g_in_migrate = 1;
  const int ms = ConnectMigrateSock(dir, dir_len);
  if (ms < 0) {
    g_in_migrate = 0;
    return 1;  // nobody asked (a stray signal): carry on
  }
  // The links to hand over: the daemon's first, then task links, listeners.
  migrate::Handover ho;
  if (!fresh) ListLinks(ho);
  HandoverHead head{};
  memcpy(head.magic, migrate::kMagic, sizeof head.magic);
  head.tid = mytid_.raw();
  head.pid = static_cast<int32_t>(getpid());
  head.flags = g_depth == 0 ? migrate::kStoppedBySignal : 0;  // in the handler, computing
  int result = 1;
  if (ho.refused) {
    head.nlinks = migrate::kRefusal;
    SendAll(ms, &head, sizeof head);
    SendAll(ms, ho.why, sizeof ho.why);
  } else {
    int rfd = -1;
    uint8_t key[migrate::kKeySize];  // the image is sealed under it
    if (SendHandover(ms, head, ho) && AwaitGo(ms, &rfd, key)) {
      result = CaptureAndSettle(ms, rfd, key, ho, dir);
    } else if (rfd >= 0) {
      close(rfd);
    }
  }
  if (result != 2) close(ms);  // the restored copy: every descriptor above is gone
  g_in_migrate = 0;
  return result;
}

void TaskRuntime::AfterResume() {
  g_resumed = 0;
  // Every old descriptor is gone (their numbers may name reopened files now):
  // forget them without closing. The old daemon reads the links to their end.
  if (daemon_) daemon_->Abandon();
  daemon_.reset();
  for (auto& c : conns_) c->Abandon();
  conns_.clear();
  peers_.clear();
  abandoned_rids_.clear();  // their answers went to the old daemon link
  listen_fd_ = -1;
  listen_path_.clear();
  tcp_listen_fd_ = -1;
  // Another host: other CPUs to spin on, and a clock of its own.
  spin_policy_ = SpinPolicy();
  traffic_ = TrafficCounter();
  if (const char* d = ckpt::ResumeEnv("MPVM_RUNDIR"); d != nullptr) rundir_ = d;
  int fd = ConnectUnix(DaemonSocketPath(rundir_));
  if (fd < 0) {
    std::fprintf(stderr, "libpvm [%s]: moved, but cannot reach the new host's daemon at %s\n",
                 mytid_.str().c_str(), rundir_.c_str());
    LostDaemon();
    return;
  }
  daemon_ = std::make_unique<Connection>(fd);
  daemon_lost_ = false;
  ctl::Envelope req = NewEnvelope();
  auto* e = req.mutable_enrol();
  e->set_tid(mytid_.raw());
  e->set_pid(getpid());
  e->set_name(program_invocation_short_name);
  e->set_restored(true);
  e->set_working(in_work_);
  e->set_wait_area(reinterpret_cast<uintptr_t>(&LibraryWaits()));
  e->set_wait_area_size(sizeof(LibraryWaitArea));
  auto rep = Call(std::move(req));
  if (!rep || !rep->has_enrol_reply() || rep->enrol_reply().code() < 0) {
    std::fprintf(stderr, "libpvm [%s]: moved, but the new host's daemon refused it: %s\n",
                 mytid_.str().c_str(),
                 rep && rep->has_enrol_reply() ? rep->enrol_reply().detail().c_str() : "no answer");
    LostDaemon();
    return;
  }
  const auto& r = rep->enrol_reply();
  host_tid_ = Tid(r.host_tid());
  listen_path_ = TaskSocketPath(rundir_, mytid_);
  listen_fd_ = ListenUnix(listen_path_);
  if (listen_fd_ < 0) listen_path_.clear();
  if (link_key_) StartLinkListener();
  ResumeDelivery();
}

}  // namespace mpvm
