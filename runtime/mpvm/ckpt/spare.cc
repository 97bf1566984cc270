// spare.cc — a process whose task has moved away, kept to restore the next
// arrival of its program (ckpt.h, ServeAsSpare). Built like capture.cc.
#include <fcntl.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "mpvm/ckpt/internal.h"

namespace mpvm::ckpt {
using namespace internal;
namespace {

// The spare's state before its order: nothing of its old task's but memory.
// Descriptors 0-2 read and write /dev/null (so that the order's land above
// them), no signal gets through, the daemon's death ends it, and no
// alternate signal stack is left registered (a fresh process has none).
int BecomeSpare(int order_fd) {
  uint64_t all = ~0ull;
  Sys(SYS_rt_sigprocmask, SIG_SETMASK, reinterpret_cast<long>(&all), 0, 8);
  Sys(SYS_prctl, PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0);
  stack_t off{};
  off.ss_flags = SS_DISABLE;
  Sys(SYS_sigaltstack, reinterpret_cast<long>(&off), 0);
  long order = Sys(SYS_fcntl, order_fd, F_DUPFD_CLOEXEC, 100);
  if (order < 0) Sys(SYS_exit_group, 0);
  long null = raw::Open("/dev/null", O_RDWR);
  for (int fd = 0; fd < 3 && null >= 0; ++fd)
    if (fd != null) Sys(SYS_dup3, null, fd, 0);
  Sys(SYS_close_range, 3, order - 1, 0);
  Sys(SYS_close_range, order + 1, ~0u, 0);
  return static_cast<int>(order);
}

// The daemon's order (ckpt.h, SpareOrder): the new task's environment into
// S()->env, its stdio onto 0-2, and where its image comes from. The end of
// `order` (the daemon let the spare go) ends the process.
RestoreFrom ReceiveOrder(int order) {
  Scratch* s = S();
  SpareOrder head{};
  alignas(struct cmsghdr) char control[CMSG_SPACE(sizeof(int) * kSpareOrderFds)];
  struct iovec iov {
    &head, sizeof head
  };
  struct msghdr msg {};
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  msg.msg_control = control;
  msg.msg_controllen = sizeof control;
  long r;
  do {
    r = Sys(SYS_recvmsg, order, reinterpret_cast<long>(&msg), MSG_CMSG_CLOEXEC);
  } while (r == -4);
  if (r == 0) Sys(SYS_exit_group, 0);
  struct cmsghdr* cm = CMSG_FIRSTHDR(&msg);
  if (r != sizeof head || head.magic != kSpareMagic || head.env_size + 2 > kEnvSize ||
      cm == nullptr || cm->cmsg_type != SCM_RIGHTS ||
      cm->cmsg_len != CMSG_LEN(sizeof(int) * kSpareOrderFds))
    Die("a malformed order to a spare process");
  int fds[kSpareOrderFds];
  raw::Copy(fds, CMSG_DATA(cm), sizeof fds);
  if (raw::ReadFull(order, s->env, head.env_size) != 0) Die("a spare's order broke off");
  s->env[head.env_size] = '\0';
  s->env[head.env_size + 1] = '\0';
  for (int i = 0; i < 3; ++i) {
    Sys(SYS_dup3, fds[i], i, 0);
    raw::Close(fds[i]);
  }
  raw::Close(order);
  return RestoreFrom{-1, fds[3], fds[5], fds[4]};
}

// A spare's file mappings that are not writable yet hold pages of their own
// (its old task wrote them through mprotect, or they are relocated data):
// an image's clean mapping of the same file range must not keep them.
void NoteChangedFileMappings() {
  Scratch* s = S();
  s->nchanged = 0;
  long fd = raw::Open("/proc/self/smaps", O_RDONLY | O_CLOEXEC);
  if (fd < 0) Die("cannot read /proc/self/smaps");
  LineReader lr{static_cast<int>(fd), s->io, sizeof s->io, 0, 0, s->line, sizeof s->line};
  CurMap m{};
  bool have = false;
  while (const char* l = lr.Next()) {
    if (IsMapsHeader(l)) {
      have = ParseMapsLine(l, m) && m.path[0] == '/' && (m.prot & PROT_WRITE) == 0;
    } else if (have && raw::StartsWith(l, "Anonymous:")) {
      const char* p = l + 10;
      SkipSpaces(p);
      if (raw::ParseDec(p) > 0 && s->nchanged < kMaxRegions) s->changed[s->nchanged++] = m.start;
      have = false;
    }
  }
  raw::Close(static_cast<int>(fd));
}

// Signals sent to the spare (a leftover SIGMIGRATE of its old task, say):
// the new task gets its own from its image, not these.
void DiscardPendingSignals() {
  uint64_t all = ~0ull;
  struct timespec now {};
  while (Sys(SYS_rt_sigtimedwait, reinterpret_cast<long>(&all), 0, reinterpret_cast<long>(&now),
             8) > 0) {
  }
}

}  // namespace

void ServeAsSpare(int order_fd) {
  const int order = BecomeSpare(order_fd);
  if (!MapScratch()) Die("the restore area at 0x100000000000 is in use");
  NoteChangedFileMappings();
  const RestoreFrom from = ReceiveOrder(order);
  DiscardPendingSignals();
  Restore(from);
}

}  // namespace mpvm::ckpt
