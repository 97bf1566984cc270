// capture.cc — capturing a single-threaded process into a stream (ckpt.h).
//
// The checkpoint engine (capture.cc, restore.cc, spare.cc, internal.cc) is
// built with -fno-stack-protector -fno-builtin
// -fno-tree-loop-distribute-patterns and without sanitizers: the restore
// half replaces libc's memory (including the stack canary) while it runs,
// and the capture half runs in signal handlers. Neither calls libc; raw.h
// has the system calls.
//
// What is saved and how (the facts come from docs/design/migration.md):
//   writable, anonymous, [heap], [stack], COW-dirtied file pages -> contents
//   unchanged file mappings (text, rodata, locale files)           -> path + hash
//   ---p                                                            -> reserved range
//   [vdso] / [vvar*]                                                -> hash / moved
// plus registers, signal state, brk, the TCB registrations (fs base, TID
// address, robust list, rseq), umask, cwd and regular-file descriptors.
#include <asm/prctl.h>
#include <fcntl.h>
#include <linux/rseq.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/personality.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/utsname.h>
#include <unistd.h>

#include "mpvm/ckpt/internal.h"

extern "C" {
__attribute__((returns_twice)) int mpvm_ckpt_save_context(mpvm::ckpt::Context* c);
// glibc >= 2.35: where the rseq area sits relative to the thread pointer.
extern const ptrdiff_t __rseq_offset __attribute__((weak));
extern const unsigned int __rseq_size __attribute__((weak));
// Present when built with AddressSanitizer: its shadow cannot be moved.
void __asan_init() __attribute__((weak));
}

namespace mpvm::ckpt {
using namespace internal;
namespace {

bool IsOwnFd(int fd, const int* own, int n) {
  for (int i = 0; i < n; ++i)
    if (own[i] == fd) return true;
  return false;
}

// Descriptors: regular files, directories and a few character devices are
// recorded to be reopened; anything else (a socket, a pipe) refuses.
bool ScanFiles(Header& h, const int* own, int nown, int out_fd, char* why, size_t len) {
  long dfd = raw::Open("/proc/self/fd", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dfd < 0) {
    Why(why, len, "cannot list /proc/self/fd");
    return false;
  }
  h.nfiles = 0;
  alignas(8) char dents[4096];
  bool ok = true;
  for (;;) {
    long n = Sys(SYS_getdents64, dfd, reinterpret_cast<long>(dents), sizeof dents);
    if (n <= 0) break;
    for (long off = 0; off < n && ok;) {
      auto* reclen = reinterpret_cast<unsigned short*>(dents + off + 16);
      const char* name = dents + off + 19;
      off += *reclen;
      if (*name < '0' || *name > '9') continue;
      const char* p = name;
      int fd = static_cast<int>(raw::ParseDec(p));
      if (fd <= 2 || fd == dfd || fd == out_fd || IsOwnFd(fd, own, nown)) continue;
      char link[64] = "/proc/self/fd/";
      raw::AppendNum(link, sizeof link, fd);
      char target[kPathMax];
      long tl = Sys(SYS_readlinkat, -100, reinterpret_cast<long>(link),
                    reinterpret_cast<long>(target), sizeof target - 1);
      if (tl < 0) continue;  // closed meanwhile
      target[tl] = '\0';
      struct stat st;
      if (Sys(SYS_fstat, fd, reinterpret_cast<long>(&st)) != 0) continue;
      bool reopen = S_ISREG(st.st_mode) || S_ISDIR(st.st_mode) ||
                    (S_ISCHR(st.st_mode) && raw::StartsWith(target, "/dev/"));
      if (!reopen || target[0] != '/' || (tl > 10 && raw::Eq(target + tl - 10, " (deleted)"))) {
        char num[16] = "";
        raw::AppendNum(num, sizeof num, fd);
        Why(why, len, "descriptor ", num, " is ");
        raw::Append(why, len, target);
        raw::Append(why, len, " (sockets, pipes and deleted files cannot move)");
        ok = false;
        break;
      }
      if (h.nfiles == kMaxFiles) {
        Why(why, len, "too many open files to move");
        ok = false;
        break;
      }
      FileDesc& f = h.files[h.nfiles++];
      f.fd = fd;
      f.flags = static_cast<int32_t>(Sys(SYS_fcntl, fd, F_GETFL));
      f.offset = S_ISDIR(st.st_mode) ? 0 : Sys(SYS_lseek, fd, 0, SEEK_CUR);
      if (f.offset < 0) f.offset = 0;
      raw::CopyStr(f.path, sizeof f.path, target);
    }
    if (!ok) break;
  }
  raw::Close(static_cast<int>(dfd));
  return ok;
}

// How mapping `m` (with `anon_kb` of pages of its own) is saved: its kind,
// and its hash or its data's size. False, with why, if it cannot move.
bool ClassifyRegion(Header& h, const CurMap& m, uint64_t anon_kb, Region& r, char* why,
                    size_t len) {
  const bool file = m.path[0] == '/';
  auto file_hash = [&] {
    return FileHash(m.path, m.dev, m.ino, m.offset, m.end - m.start,
                    [&] { return raw::Hash(reinterpret_cast<void*>(m.start), m.end - m.start); });
  };
  if (raw::Eq(m.path, "[vdso]")) {
    r.kind = RegionKind::kVdso;
    r.hash = raw::Hash(reinterpret_cast<void*>(m.start), m.end - m.start);
    h.vdso_hash = r.hash;
    h.vdso_size = m.end - m.start;
  } else if (raw::StartsWith(m.path, "[vvar")) {
    r.kind = RegionKind::kVvar;
  } else if (m.shared) {
    if ((m.prot & PROT_WRITE) != 0 || !file) {
      Why(why, len, "shared memory mapping ", m.path[0] ? m.path : "(anonymous)", " cannot move");
      return false;
    }
    r.kind = RegionKind::kFile;
    r.hash = file_hash();
  } else if (m.prot == 0) {
    r.kind = RegionKind::kReserved;
  } else if ((m.prot & PROT_READ) == 0) {
    Why(why, len, "unreadable mapping ", m.path, " cannot move");
    return false;
  } else if (file && (m.prot & PROT_WRITE) == 0 && anon_kb == 0) {
    r.kind = RegionKind::kFile;
    r.hash = file_hash();
  } else {
    r.kind = RegionKind::kData;
    r.is_heap = raw::Eq(m.path, "[heap]");
    r.is_stack = raw::Eq(m.path, "[stack]");
    r.anonymous = !file;  // its untouched pages read as zeros: sent sparse
    if (r.is_stack) h.stack_size = m.end - m.start;
    h.data_bytes += m.end - m.start;
  }
  return true;
}

// Adds mapping `m` to the region table (but the scratch area and
// [vsyscall]). False, with why, if it cannot move.
bool AddRegion(Header& h, const CurMap& m, uint64_t anon_kb, int& n, char* why, size_t len) {
  if (m.start >= kScratchAddr && m.end <= kScratchAddr + kScratchSize) return true;
  if (raw::Eq(m.path, "[vsyscall]")) return true;
  if (n == kMaxRegions) {
    Why(why, len, "too many memory mappings to move");
    return false;
  }
  Region& r = S()->regions[n];
  raw::Zero(&r, sizeof r);
  r.start = m.start;
  r.end = m.end;
  r.offset = m.offset;
  r.prot = m.prot;
  raw::CopyStr(r.path, sizeof r.path, m.path);
  if (!ClassifyRegion(h, m, anon_kb, r, why, len)) return false;
  ++n;
  return true;
}

// /proc/self/smaps -> the region table.
bool ScanRegions(Header& h, char* why, size_t len) {
  Scratch* s = S();
  long fd = raw::Open("/proc/self/smaps", O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    Why(why, len, "cannot read /proc/self/smaps");
    return false;
  }
  LineReader lr{static_cast<int>(fd), s->io, sizeof s->io, 0, 0, s->line, sizeof s->line};
  int n = 0;
  CurMap m{};
  bool have = false, ok = true;
  uint64_t anon_kb = 0;
  while (const char* l = lr.Next()) {
    if (IsMapsHeader(l)) {
      if (have && !(ok = AddRegion(h, m, anon_kb, n, why, len))) break;
      have = ParseMapsLine(l, m);
      anon_kb = 0;
    } else if (raw::StartsWith(l, "Anonymous:")) {
      const char* p = l + 10;
      SkipSpaces(p);
      anon_kb = raw::ParseDec(p);
    }
  }
  if (ok && have) ok = AddRegion(h, m, anon_kb, n, why, len);
  raw::Close(static_cast<int>(fd));
  h.nregions = static_cast<uint32_t>(n);
  return ok;
}

bool SingleThreaded(char* why, size_t len) {
  uint64_t threads = StatField(20);
  if (threads == 1) return true;
  char num[24] = "";
  raw::AppendNum(num, sizeof num, static_cast<long>(threads));
  Why(why, len, "the task runs ", num,
      " threads; only single-threaded tasks can migrate (threads cannot be captured)");
  return false;
}

// An alarm or interval timer lives in the kernel and would not come along:
// the copy would never get its signal.
bool NoTimerArmed(char* why, size_t len) {
  static const struct {
    int which;
    const char* what;
  } kTimers[] = {{ITIMER_REAL, "an alarm or real-time interval timer (alarm, setitimer)"},
                 {ITIMER_VIRTUAL, "a virtual interval timer (setitimer)"},
                 {ITIMER_PROF, "a profiling interval timer (setitimer)"}};
  for (const auto& t : kTimers) {
    struct itimerval v;
    raw::Zero(&v, sizeof v);
    Sys(SYS_getitimer, t.which, reinterpret_cast<long>(&v));
    if (v.it_value.tv_sec != 0 || v.it_value.tv_usec != 0) {
      Why(why, len, "it has ", t.what,
          " armed; it would not carry over, so the task stays where it is");
      return false;
    }
  }
  return true;
}

// What rules this process out whatever its state: a sanitizer (whose shadow
// also covers the scratch address), threads, a randomised layout, a timer.
bool Movable(char* why, size_t len) {
  if (__asan_init != nullptr) {
    Why(why, len, "built with AddressSanitizer (its shadow memory cannot move)");
    return false;
  }
  if (!SingleThreaded(why, len)) return false;
  if ((Sys(SYS_personality, 0xffffffff) & ADDR_NO_RANDOMIZE) == 0) {
    Why(why, len,
        "address-space randomisation is on for this task (tasks spawned by mpvmd run with "
        "it off; tasks started by hand cannot migrate)");
    return false;
  }
  return NoTimerArmed(why, len);
}

// Fills the header and region table for this process.
bool Prepare(const CaptureOptions& o, uint64_t sigmask, char* why, size_t len) {
  Header& h = S()->hdr;
  raw::Zero(&h, sizeof h);
  h.magic = kMagic;
  h.version = kVersion;
  h.header_size = sizeof(Header);
  h.personality = static_cast<uint64_t>(Sys(SYS_personality, 0xffffffff));
  struct utsname u;
  Sys(SYS_uname, reinterpret_cast<long>(&u));
  raw::CopyStr(h.kernel_release, sizeof h.kernel_release, u.release);
  raw::CopyStr(h.kernel_version, sizeof h.kernel_version, u.version);
  CpuFeatures(h);
  h.start_brk = StatField(47);
  h.arg_start = StatField(48);
  h.arg_end = StatField(49);
  h.env_start = StatField(50);
  h.env_end = StatField(51);
  h.brk = static_cast<uint64_t>(Sys(SYS_brk, 0));
  Sys(SYS_arch_prctl, ARCH_GET_FS, reinterpret_cast<long>(&h.fs_base));
  Sys(SYS_prctl, PR_GET_TID_ADDRESS, reinterpret_cast<long>(&h.tid_address));
  Sys(SYS_get_robust_list, 0, reinterpret_cast<long>(&h.robust_head),
      reinterpret_cast<long>(&h.robust_len));
  if (&__rseq_size != nullptr && __rseq_size != 0) {
    h.rseq_area = h.fs_base + static_cast<uint64_t>(__rseq_offset);
    h.rseq_sig = kRseqSig;
  }
  h.sigmask = sigmask;
  Sys(SYS_rt_sigpending, reinterpret_cast<long>(&h.sigpending), 8);
  for (int sig = 1; sig <= 64; ++sig)
    Sys(SYS_rt_sigaction, sig, 0, reinterpret_cast<long>(&h.actions[sig - 1]), 8);
  h.umask = static_cast<uint32_t>(Sys(SYS_umask, 022));
  Sys(SYS_umask, h.umask);
  if (Sys(SYS_getcwd, reinterpret_cast<long>(h.cwd), sizeof h.cwd) < 0) h.cwd[0] = '\0';
  if (!ScanFiles(h, o.own_fds, o.n_own_fds, o.out_fd, why, len)) return false;
  if (!ScanRegions(h, why, len)) return false;
  return true;
}

// Reads the destination's verdict: 'G'/'K' (go on) or 'R' + reason.
bool Verdict(int fd, char expect, char* why, size_t len) {
  char c = 0;
  long r = raw::ReadFull(fd, &c, 1);
  if (r != 0) {
    Why(why, len, "the destination closed the image stream");
    return false;
  }
  if (c == expect) return true;
  char reason[kWhySize];
  raw::Zero(reason, sizeof reason);
  if (c == 'R' && raw::ReadFull(fd, reason, sizeof reason) == 0) {
    reason[sizeof reason - 1] = '\0';
    Why(why, len, "the destination refused: ", reason);
  } else {
    Why(why, len, "the destination sent a bad verdict");
  }
  return false;
}

}  // namespace

// Every kData region's contents, as page runs (pages.h): an anonymous
// region without the pages it never touched, if /proc/self/pagemap says
// which. Adds the bytes sent to `sent`.
long SendData(SealOut& out, uint64_t& sent) {
  Scratch* s = S();
  long pagemap = raw::Open("/proc/self/pagemap", O_RDONLY | O_CLOEXEC);
  long e = 0;
  for (uint32_t i = 0; i < s->hdr.nregions && e == 0; ++i) {
    const Region& r = s->regions[i];
    if (r.kind != RegionKind::kData) continue;
    const int pm = r.anonymous && pagemap >= 0 ? static_cast<int>(pagemap) : -1;
    e = SendPageRuns(out, r.start, r.end, pm, reinterpret_cast<uint64_t*>(s->io), sizeof s->io,
                     &sent);
  }
  if (pagemap >= 0) raw::Close(static_cast<int>(pagemap));
  return e;
}

namespace {

// After the context is saved: the header and the region table, the
// destination's go, the data, and its word that the copy is restored.
CaptureResult StreamImage(const CaptureOptions& o, char* why, size_t len) {
  Scratch* s = S();
  const Header& h = s->hdr;
  long e = SealBegin(s->out, o.out_fd, o.key);
  if (e == 0) e = SealPut(s->out, &h, sizeof h);
  if (e == 0) e = SealPut(s->out, s->regions, sizeof(Region) * h.nregions);
  if (e == 0) e = SealFlush(s->out);
  if (e != 0) {
    Why(why, len, "cannot send the image (the destination went away)");
    return CaptureResult::kFailed;
  }
  if (!Verdict(o.out_fd, 'G', why, len)) return CaptureResult::kRefused;
  uint64_t sent = sizeof h + sizeof(Region) * h.nregions;
  e = SendData(s->out, sent);
  if (e == 0) e = SealFlush(s->out);
  if (o.sent_ns != nullptr) {
    struct timespec ts {};
    Sys(SYS_clock_gettime, 0 /* CLOCK_REALTIME */, reinterpret_cast<long>(&ts));
    *o.sent_ns = static_cast<int64_t>(ts.tv_sec) * 1000000000 + ts.tv_nsec;
  }
  if (o.bytes_sent != nullptr) *o.bytes_sent = sent;
  if (e != 0) {
    Why(why, len, "the image stream broke while sending memory");
    return CaptureResult::kFailed;
  }
  return Verdict(o.out_fd, 'K', why, len) ? CaptureResult::kSaved : CaptureResult::kFailed;
}

}  // namespace

CaptureResult Capture(const CaptureOptions& o, char* why, size_t len) {
  uint64_t all = ~0ull;
  volatile uint64_t old = 0;
  uint64_t prev = 0;
  Sys(SYS_rt_sigprocmask, SIG_SETMASK, reinterpret_cast<long>(&all), reinterpret_cast<long>(&prev),
      8);
  old = prev;
  SetHashCache(o.rundir);
  if (!Movable(why, len)) {
    Sys(SYS_rt_sigprocmask, SIG_SETMASK, reinterpret_cast<long>(&prev), 0, 8);
    return CaptureResult::kRefused;
  }
  if (!MapScratch()) {
    Why(why, len, "the checkpoint area at 0x100000000000 is in use");
    Sys(SYS_rt_sigprocmask, SIG_SETMASK, reinterpret_cast<long>(&prev), 0, 8);
    return CaptureResult::kRefused;
  }
  PopulateScratch(false);
  CaptureResult result = CaptureResult::kSaved;
  if (!Prepare(o, prev, why, len)) {
    result = CaptureResult::kRefused;
  } else if (mpvm_ckpt_save_context(&S()->hdr.ctx) != 0) {
    // We are the restored process, resumed by Rebuild().
    UnmapScratch();
    uint64_t m = old;
    Sys(SYS_rt_sigprocmask, SIG_SETMASK, reinterpret_cast<long>(&m), 0, 8);
    return CaptureResult::kResumed;
  } else {
    result = StreamImage(o, why, len);
  }
  UnmapScratch();
  Sys(SYS_rt_sigprocmask, SIG_SETMASK, reinterpret_cast<long>(&prev), 0, 8);
  return result;
}

bool Commit(int out_fd) {
  char c = 'C';
  return raw::SendFull(out_fd, &c, 1) == 0;
}

void Abort(int out_fd) {
  char c = 'A';
  raw::SendFull(out_fd, &c, 1);
}

}  // namespace mpvm::ckpt
