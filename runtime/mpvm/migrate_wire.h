// migrate_wire.h — what a migrating task and its daemon say to each other.
//
// The task (T) connects to its daemon's migrate.sock when told to move
// (SIGMIGRATE). The exchange, in order (docs/design/migration.md):
//
//   T ── HandoverHead + LinkDesc[n] + SCM_RIGHTS(n fds) ──▶ daemon (S)
//   T ── for each link: its unread bytes, then its unsent bytes ──▶ S
//   S ── 'G' + SCM_RIGHTS(stream to the restore process) + the image key ──▶ T
//      or 'A' + kWhySize bytes of reason (T carries on)
//   T ── image ──▶ restore process (the checkpoint engine's stream)
//   T ── 'K' + ImageDone ──▶ S    or 'R' + kWhySize bytes of reason
//   S ── 'C' ──▶ restore process (the commit point), then
//   S ── 'X' (committed: T exits at once), 'S' (committed: T's process
//        becomes a spare, ckpt.h ServeAsSpare, kept on migrate.sock) or
//        'A' (T carries on) ──▶ T
//
// Encrypted links hand over their cipher state and unopened sealed bytes
// (LinkDesc, kLinkEncrypted). A task that cannot hand over (threads, foreign
// sockets) sends HandoverHead with nlinks == kRefusal followed by kWhySize
// bytes.
#pragma once

#include <sys/socket.h>

#include <cerrno>
#include <cstddef>
#include <cstdint>
#include <cstring>

namespace mpvm::migrate {

inline constexpr char kMagic[8] = {'M', 'P', 'V', 'M', 'M', 'I', 'G', '2'};
inline constexpr uint32_t kRefusal = 0xffffffffu;
inline constexpr uint32_t kMaxLinks = 250;  // fds in one SCM_RIGHTS message (kernel: 253)
inline constexpr size_t kWhySize = 240;
inline constexpr size_t kKeySize = 32;  // the move's image key, after 'G' (ckpt/seal.h)
inline constexpr const char* kSocketName = "migrate.sock";

enum class LinkKind : int32_t {
  kDaemon = 0,        // the task's connection to this daemon
  kPeer = 1,          // a direct link to another task
  kUnixListener = 2,  // where tasks of this host connect to it
  kTcpListener = 3,   // where tasks of other hosts connect to it
};

struct HandoverHead {
  char magic[8];
  int32_t tid;
  int32_t pid;
  uint32_t nlinks;  // or kRefusal
  uint32_t flags;   // kStoppedBySignal
};
// The task was computing: its SIGMIGRATE handler captured it where it was
// (else it stopped at a PVM call's boundary).
inline constexpr uint32_t kStoppedBySignal = 1;

struct LinkDesc {
  int32_t kind;             // LinkKind
  int32_t peer;             // kPeer: the task at the other end when known (else 0)
  uint32_t in_len;          // bytes the task read from it but had not handled
  uint32_t out_len;         // bytes the task queued for it but had not written
  uint32_t flags = 0;       // kLinkEncrypted
  uint32_t sealed_len = 0;  // encrypted: sealed bytes read, not yet a whole record
};
// An encrypted task link: after its in and out bytes come its cipher state
// (LinkCipherState, task_link.h) and its sealed_len bytes.
inline constexpr uint32_t kLinkEncrypted = 1;

// Largest unread or unsent tail of one link a task may hand over.
inline constexpr uint32_t kMaxPendingBytes = 256u << 20;

// Checks a handover (its head, the nlinks descriptions that followed, and
// the number of descriptors that came with them) before the daemon acts on
// it. Returns nullptr when it is well formed, else what is wrong. Pure: the
// fuzzers (fuzz/handover_fuzz.cc) and unit tests call it on any bytes.
// The head alone (first, before the descriptions are read).
inline const char* CheckHandoverHead(const HandoverHead& h) {
  for (size_t i = 0; i < sizeof kMagic; ++i)
    if (h.magic[i] != kMagic[i]) return "not a migrating task (bad handover header)";
  if (h.tid <= 0 || h.pid <= 0) return "the handover names no task";
  if (h.nlinks != kRefusal && h.nlinks > kMaxLinks) return "the handover has too many links";
  if ((h.flags & ~kStoppedBySignal) != 0) return "the handover has unknown flags";
  return nullptr;
}

inline const char* CheckHandover(const HandoverHead& h, const LinkDesc* descs, size_t ndescs,
                                 size_t nfds) {
  if (const char* bad = CheckHandoverHead(h)) return bad;
  if (h.nlinks == kRefusal) return nullptr;  // a refusal: the reason follows
  if (ndescs != h.nlinks || nfds != h.nlinks)
    return "the handover's links and descriptors do not match";
  for (uint32_t i = 0; i < h.nlinks; ++i) {
    const LinkDesc& d = descs[i];
    const bool first = i == 0;
    if (first != (d.kind == static_cast<int32_t>(LinkKind::kDaemon)))
      return "the handover's first link is not the daemon's (and only the first is)";
    if (d.kind < static_cast<int32_t>(LinkKind::kDaemon) ||
        d.kind > static_cast<int32_t>(LinkKind::kTcpListener))
      return "the handover has a link of an unknown kind";
    const bool listener = d.kind == static_cast<int32_t>(LinkKind::kUnixListener) ||
                          d.kind == static_cast<int32_t>(LinkKind::kTcpListener);
    if (listener && (d.in_len != 0 || d.out_len != 0 || d.peer != 0))
      return "the handover has a listener with data";
    if (d.in_len > kMaxPendingBytes || d.out_len > kMaxPendingBytes ||
        d.sealed_len > kMaxPendingBytes)
      return "the handover has a link with more than 256 MiB pending";
    if ((d.flags & ~kLinkEncrypted) != 0) return "the handover has unknown link flags";
    const bool sealed = (d.flags & kLinkEncrypted) != 0;
    if (sealed && d.kind != static_cast<int32_t>(LinkKind::kPeer))
      return "the handover has an encrypted link that is not a task link";
    if (!sealed && d.sealed_len != 0) return "the handover has sealed bytes on a plain link";
    if (d.peer < 0) return "the handover names a bad peer";
  }
  return nullptr;
}

// After 'K': what the capture moved.
struct ImageDone {
  uint64_t bytes;
  int64_t freeze_ns;    // CLOCK_REALTIME at the start of the capture
  int64_t sent_ns;      // the last byte of the image was sent
  int64_t restored_ns;  // when the restore process answered 'K'
};

// Whole-buffer send and receive on the migrate.sock stream. Async-signal-
// safe (the task calls them from its SIGMIGRATE handler); no SIGPIPE.
inline bool SendAll(int fd, const void* p, size_t n) {
  const char* c = static_cast<const char*>(p);
  while (n > 0) {
    ssize_t w = send(fd, c, n, MSG_NOSIGNAL);
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) return false;
    c += w;
    n -= static_cast<size_t>(w);
  }
  return true;
}

// Sends the `niov` pieces of `iov` as one message (short: sent whole or
// not at all) with descriptors `fds` attached (SCM_RIGHTS; at most
// kMaxLinks). Async-signal-safe: a task calls it from its signal handler.
inline bool SendWithRights(int fd, iovec* iov, size_t niov, const int* fds, size_t nfds) {
  alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int) * kMaxLinks)];
  if (nfds > kMaxLinks) return false;
  msghdr msg{};
  msg.msg_iov = iov;
  msg.msg_iovlen = niov;
  size_t total = 0;
  for (size_t i = 0; i < niov; ++i) total += iov[i].iov_len;
  if (nfds > 0) {
    msg.msg_control = control;
    msg.msg_controllen = CMSG_SPACE(sizeof(int) * nfds);
    cmsghdr* cm = CMSG_FIRSTHDR(&msg);
    cm->cmsg_level = SOL_SOCKET;
    cm->cmsg_type = SCM_RIGHTS;
    cm->cmsg_len = CMSG_LEN(sizeof(int) * nfds);
    std::memcpy(CMSG_DATA(cm), fds, sizeof(int) * nfds);
  }
  ssize_t w;
  do {
    w = sendmsg(fd, &msg, MSG_NOSIGNAL);
  } while (w < 0 && errno == EINTR);
  return w == static_cast<ssize_t>(total);
}
inline bool SendWithRights(int fd, const void* p, size_t n, const int* fds, size_t nfds) {
  iovec iov{const_cast<void*>(p), n};
  return SendWithRights(fd, &iov, 1, fds, nfds);
}

inline bool RecvAll(int fd, void* p, size_t n) {
  char* c = static_cast<char*>(p);
  while (n > 0) {
    ssize_t r = recv(fd, c, n, 0);
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) return false;
    c += r;
    n -= static_cast<size_t>(r);
  }
  return true;
}

}  // namespace mpvm::migrate
