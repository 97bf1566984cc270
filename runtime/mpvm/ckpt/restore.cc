// restore.cc — restoring a captured process in this one (ckpt.h): checks
// that refuse before anything changes, then the rebuild of the address
// space on the scratch stack. Built like capture.cc, for the same reasons.
#include <asm/prctl.h>
#include <fcntl.h>
#include <linux/rseq.h>
#include <sched.h>
#include <signal.h>
#include <stdlib.h>
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
[[noreturn]] void mpvm_ckpt_resume_context(const mpvm::ckpt::Context* c);
extern const unsigned int __rseq_size __attribute__((weak));
}

namespace mpvm::ckpt {
using namespace internal;
namespace {

// Refuses before anything was changed: tells the source why, then exits.
[[noreturn]] void Refuse(int fd, const char* a, const char* b = "") {
  char reason[kWhySize];
  raw::Zero(reason, sizeof reason);
  Why(reason, sizeof reason, a, b);
  char r = 'R';
  raw::SendFull(fd, &r, 1);
  raw::SendFull(fd, reason, sizeof reason);
  Die(a, b);
}

const CurMap* FindCur(uint64_t addr) {
  Scratch* s = S();
  for (int i = 0; i < s->ncur; ++i)
    if (addr >= s->cur[i].start && addr < s->cur[i].end) return &s->cur[i];
  return nullptr;
}
const CurMap* FindCurNamed(const char* name) {
  Scratch* s = S();
  for (int i = 0; i < s->ncur; ++i)
    if (raw::Eq(s->cur[i].path, name)) return &s->cur[i];
  return nullptr;
}
bool SameMapping(const CurMap& c, const Region& r) {
  return c.start == r.start && c.end == r.end && c.offset == r.offset && c.prot == r.prot &&
         raw::Eq(c.path, r.path);
}
bool Changed(uint64_t start) {
  Scratch* s = S();
  for (int i = 0; i < s->nchanged; ++i)
    if (s->changed[i] == start) return true;
  return false;
}
// An image file region that the restore process already has, byte for byte.
bool Kept(const Region& r) {
  if (r.kind != RegionKind::kFile || Changed(r.start)) return false;
  const CurMap* c = FindCur(r.start);
  return c != nullptr && SameMapping(*c, r);
}

uint64_t HashFileRange(const char* path, uint64_t offset, uint64_t len, bool* ok) {
  *ok = false;
  long fd = raw::Open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return 0;
  long p = Sys(SYS_mmap, 0, len, PROT_READ, MAP_PRIVATE, fd, offset);
  raw::Close(static_cast<int>(fd));
  if (p < 0 && p > -4096) return 0;
  uint64_t h = raw::Hash(reinterpret_cast<void*>(p), len);
  Sys(SYS_munmap, p, len);
  *ok = true;
  return h;
}

// Phase 1 checks: everything that can refuse before memory is touched.
void Check(int fd) {
  Scratch* s = S();
  Header& h = s->hdr;
  struct utsname u;
  Sys(SYS_uname, reinterpret_cast<long>(&u));
  if (!raw::Eq(u.release, h.kernel_release) || !raw::Eq(u.version, h.kernel_version))
    Refuse(fd, "a different kernel here: ", u.release);
  if (!ReadCurrentMaps()) Refuse(fd, "cannot read /proc/self/maps");
  const CurMap* vdso = FindCurNamed("[vdso]");
  if (h.vdso_size != 0 &&
      (vdso == nullptr || vdso->end - vdso->start != h.vdso_size ||
       raw::Hash(reinterpret_cast<void*>(vdso->start), h.vdso_size) != h.vdso_hash))
    Refuse(fd, "a different vdso here (another kernel build)");
  Header mine{};
  CpuFeatures(mine);
  auto superset = [](uint32_t have, uint32_t need) { return (have & need) == need; };
  if (!superset(mine.cpuid1_ecx, h.cpuid1_ecx) || !superset(mine.cpuid1_edx, h.cpuid1_edx) ||
      !superset(mine.cpuid7_ebx, h.cpuid7_ebx) || !superset(mine.cpuid7_ecx, h.cpuid7_ecx) ||
      !superset(mine.cpuid7_edx, h.cpuid7_edx))
    Refuse(fd, "this CPU lacks features the task's CPU has");
  if (mine.xsave_size != h.xsave_size) Refuse(fd, "a different XSAVE area size on this CPU");
  long pers = Sys(SYS_personality, 0xffffffff);
  if ((pers & ADDR_NO_RANDOMIZE) == 0 || (h.personality & ADDR_NO_RANDOMIZE) == 0)
    Refuse(fd, "address-space randomisation is on");
  if (StatField(47) != h.start_brk)
    Refuse(fd, "the program's data segment starts elsewhere (another executable?)");
  struct rlimit rl;
  Sys(SYS_prlimit64, 0, RLIMIT_STACK, 0, reinterpret_cast<long>(&rl));
  if (rl.rlim_cur != RLIM_INFINITY && rl.rlim_cur < h.stack_size)
    Refuse(fd, "RLIMIT_STACK here is smaller than the task's stack");
  // The code running this restore must stay where it is.
  const CurMap* self = FindCur(reinterpret_cast<uint64_t>(&Check));
  bool found = false;
  for (uint32_t i = 0; i < h.nregions && self != nullptr; ++i)
    if (SameMapping(*self, s->regions[i])) found = true;
  if (!found) Refuse(fd, "libpvm3 is loaded at another address here (different libraries?)");
  for (uint32_t i = 0; i < h.nregions; ++i) {
    const Region& r = s->regions[i];
    if (r.start < kScratchAddr + kScratchSize && r.end > kScratchAddr)
      Refuse(fd, "the image overlaps the restore area");
    if (r.kind != RegionKind::kFile) continue;
    bool ok = true;
    const CurMap* held = Kept(r) ? FindCur(r.start) : nullptr;
    const uint64_t got = FileHash(
        r.path, held ? held->dev : 0, held ? held->ino : 0, r.offset, r.end - r.start, [&] {
          return held ? raw::Hash(reinterpret_cast<void*>(r.start), r.end - r.start)
                      : HashFileRange(r.path, r.offset, r.end - r.start, &ok);
        });
    if (!ok) Refuse(fd, "cannot map ", r.path);
    if (got != r.hash) Refuse(fd, "a different file content here: ", r.path);
  }
}

// Sets one of the kernel's [start, end) ranges of this process. The kernel
// checks start <= end after each call, so the order that keeps that true
// depends on where the new range lies: try start, end, then start again.
void SetMmRange(int start_opt, int end_opt, uint64_t start, uint64_t end) {
  if (start == 0 || end < start) return;
  const bool first = Sys(SYS_prctl, PR_SET_MM, start_opt, static_cast<long>(start), 0, 0) == 0;
  Sys(SYS_prctl, PR_SET_MM, end_opt, static_cast<long>(end), 0, 0);
  if (!first) Sys(SYS_prctl, PR_SET_MM, start_opt, static_cast<long>(start), 0, 0);
}

// Points the kernel's argument and environment ranges at the task's own, so
// ps and /proc/PID/cmdline show the program as it was started. PR_SET_MM_MAP
// sets every range at once and needs no capability (it was made for
// unprivileged checkpoint/restore); the other ranges keep their current
// values. Where the kernel lacks it, the single-field calls need
// CAP_SYS_RESOURCE.
void SetArgEnvRanges(const Header& h) {
  if (h.arg_start == 0 || h.arg_end < h.arg_start || h.env_end < h.env_start) return;
  struct prctl_mm_map m {};
  m.start_code = StatField(26);
  m.end_code = StatField(27);
  m.start_stack = StatField(28);
  m.start_data = StatField(45);
  m.end_data = StatField(46);
  m.start_brk = StatField(47);
  m.brk = static_cast<uint64_t>(Sys(SYS_brk, 0));
  m.arg_start = h.arg_start;
  m.arg_end = h.arg_end;
  m.env_start = h.env_start;
  m.env_end = h.env_end;
  m.exe_fd = static_cast<uint32_t>(-1);
  if (Sys(SYS_prctl, PR_SET_MM, PR_SET_MM_MAP, reinterpret_cast<long>(&m), sizeof m, 0) == 0)
    return;
  SetMmRange(PR_SET_MM_ARG_START, PR_SET_MM_ARG_END, h.arg_start, h.arg_end);
  SetMmRange(PR_SET_MM_ENV_START, PR_SET_MM_ENV_END, h.env_start, h.env_end);
}

void Fail(const char* what, long err) {
  char num[24] = "";
  raw::AppendNum(num, sizeof num, err);
  char msg[kWhySize];
  Why(msg, sizeof msg, what, " failed: ", num);
  Die(msg);
}

long MaybeMoveSpecial(const Region& r) {
  const CurMap* c = FindCurNamed(r.path);
  if (c == nullptr || c->start == r.start) return 0;
  return Sys(SYS_mremap, c->start, c->end - c->start, r.end - r.start,
             MREMAP_MAYMOVE | MREMAP_FIXED, r.start);
}

// A kData region's contents, from the staging area (`from`) to its place.
// An ordinary mapping is moved there whole (mremap: no copy); the heap and
// the stack, whose mappings the kernel keeps its own marks on, get the
// pages that hold data copied in.
void PlaceData(const Region& r, uint64_t from) {
  const Header& h = S()->hdr;
  const uint64_t len = r.end - r.start;
  if (r.is_stack) {
    // Grow [stack] down to the saved extent, one page at a time.
    const CurMap* st = FindCurNamed("[stack]");
    uint64_t low = st != nullptr ? st->start : r.end;
    for (uint64_t p = low; p > r.start; p -= 4096) *reinterpret_cast<volatile char*>(p - 4096) = 0;
  } else if (r.is_heap) {
    // [heap] may have merged with the bss below the program break.
    uint64_t brk_page = (h.start_brk + 4095) & ~4095ull;
    if (r.start < brk_page) {
      long m = Sys(SYS_mmap, r.start, brk_page - r.start, PROT_READ | PROT_WRITE,
                   MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1, 0);
      if (m != static_cast<long>(r.start)) Fail("mapping memory", m);
    }
  } else {
    long m = Sys(SYS_mremap, from, len, len, MREMAP_MAYMOVE | MREMAP_FIXED, r.start);
    if (m != static_cast<long>(r.start)) Fail("moving memory into place", m);
    if (len >= (4u << 20)) Sys(SYS_madvise, r.start, len, MADV_HUGEPAGE);
  }
  if (r.is_stack || r.is_heap) {
    // The pages the image leaves out must read as zeros, not as this
    // process's own heap or stack.
    Sys(SYS_madvise, r.start, len, MADV_DONTNEED);
    CopyPageRuns(r.start, from, len, r.is_heap ? S()->heap_list : S()->stack_list);
    Sys(SYS_munmap, from, len);  // at once: never two copies of a large heap at a time
  }
  Sys(SYS_mprotect, r.start, len, r.prot);
}

// rseq: the kernel writes into the area on every return to user space, so
// it must not point into memory about to be replaced.
void UnregisterRseq(Scratch* s, const Header& h) {
  if (h.rseq_area == 0) return;
  uint64_t fs = 0;
  Sys(SYS_arch_prctl, ARCH_GET_FS, reinterpret_cast<long>(&fs));
  uint64_t area = fs + static_cast<uint64_t>(h.rseq_area - h.fs_base);
  s->rseq_len_registered = 0;
  // glibc registers 32 bytes even where __rseq_size says 20.
  const uint32_t lens[2] = {32u, static_cast<uint32_t>(__rseq_size)};
  for (uint32_t len : lens) {
    if (Sys(SYS_rseq, area, len, RSEQ_FLAG_UNREGISTER, h.rseq_sig) == 0) {
      s->rseq_len_registered = len;
      break;
    }
  }
}

// Drops every mapping the image does not share with this process; moves
// the vdso and vvar where the image has them.
void DropForeignMappings(Scratch* s, const Header& h) {
  if (!ReadCurrentMaps()) Die("cannot read /proc/self/maps");
  for (int i = 0; i < s->ncur; ++i) {
    const CurMap& c = s->cur[i];
    if (c.start == kScratchAddr) continue;
    if (raw::Eq(c.path, "[vsyscall]") || raw::Eq(c.path, "[heap]") || raw::Eq(c.path, "[stack]") ||
        raw::Eq(c.path, "[vdso]") || raw::StartsWith(c.path, "[vvar"))
      continue;
    bool keep = false;
    for (uint32_t j = 0; j < h.nregions && !keep; ++j)
      keep = s->regions[j].kind == RegionKind::kFile && SameMapping(c, s->regions[j]);
    if (!keep) Sys(SYS_munmap, c.start, c.end - c.start);
  }
  for (uint32_t i = 0; i < h.nregions; ++i) {
    const Region& r = s->regions[i];
    if (r.kind == RegionKind::kVdso || r.kind == RegionKind::kVvar) {
      long e = MaybeMoveSpecial(r);
      if (e < 0 && e > -4096) Fail("moving the vdso", e);
    }
  }
}

// Every region of the image in its place: data from the staging area, file
// mappings not kept mapped again, reserved ranges reserved.
void PlaceRegions(Scratch* s, const Header& h) {
  uint64_t staged = kStagingAddr;  // where the next kData region's contents wait
  for (uint32_t i = 0; i < h.nregions; ++i) {
    const Region& r = s->regions[i];
    const uint64_t len = r.end - r.start;
    if (r.kind == RegionKind::kData) {
      PlaceData(r, staged);
      staged += len;
    } else if (r.kind == RegionKind::kFile && !Kept(r)) {
      long f = raw::Open(r.path, O_RDONLY | O_CLOEXEC);
      if (f < 0) Die("cannot open mapped file ", r.path);
      long m = Sys(SYS_mmap, r.start, len, r.prot, MAP_PRIVATE | MAP_FIXED, f, r.offset);
      raw::Close(static_cast<int>(f));
      if (m != static_cast<long>(r.start)) Die("cannot map ", r.path);
    } else if (r.kind == RegionKind::kReserved) {
      long m = Sys(SYS_mmap, r.start, len, PROT_NONE,
                   MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED | MAP_NORESERVE, -1, 0);
      if (m != static_cast<long>(r.start)) Fail("reserving address space", m);
    }
  }
  if (h.data_bytes > 0) Sys(SYS_munmap, kStagingAddr, h.data_bytes);  // what was copied from
}

// The thread's kernel registrations, pointed at the restored TCB, and the
// signal actions. Returns the thread's id.
long RestoreThreadState(const Scratch* s, const Header& h) {
  Sys(SYS_arch_prctl, ARCH_SET_FS, h.fs_base);
  long tid = Sys(SYS_set_tid_address, h.tid_address);
  if (h.tid_address != 0)
    *reinterpret_cast<volatile int32_t*>(h.tid_address) = static_cast<int32_t>(tid);
  if (h.robust_head != 0) Sys(SYS_set_robust_list, h.robust_head, h.robust_len);
  if (h.rseq_area != 0 && s->rseq_len_registered != 0) {
    auto* area = reinterpret_cast<volatile struct rseq*>(h.rseq_area);
    area->cpu_id = RSEQ_CPU_ID_UNINITIALIZED;
    area->rseq_cs = 0;
    Sys(SYS_rseq, h.rseq_area, s->rseq_len_registered, 0, h.rseq_sig);
  }
  for (int sig = 1; sig <= 64; ++sig) {
    if (sig == SIGKILL || sig == SIGSTOP) continue;
    Sys(SYS_rt_sigaction, sig, reinterpret_cast<long>(&h.actions[sig - 1]), 0, 8);
  }
  return tid;
}

// Descriptors: only the image stream survives, then the task's files come
// back; its working directory and umask too.
void RestoreFiles(Scratch* s, const Header& h) {
  long keep = Sys(SYS_fcntl, s->image_fd, F_DUPFD_CLOEXEC, 1000);
  if (keep < 0) Fail("moving the image descriptor", keep);
  Sys(SYS_close_range, 3, keep - 1, 0);
  Sys(SYS_close_range, keep + 1, ~0u, 0);
  s->image_fd = static_cast<int>(keep);
  for (uint32_t i = 0; i < h.nfiles; ++i) {
    const FileDesc& f = h.files[i];
    long o = raw::Open(f.path, f.flags & ~(O_CREAT | O_TRUNC | O_EXCL));
    if (o < 0) Die("cannot reopen ", f.path);
    if (o != f.fd) {
      Sys(SYS_dup3, o, f.fd, f.flags & O_CLOEXEC);
      raw::Close(static_cast<int>(o));
    }
    if (f.offset > 0) Sys(SYS_lseek, f.fd, f.offset, SEEK_SET);
  }
  if (h.cwd[0] != '\0') Sys(SYS_chdir, reinterpret_cast<long>(h.cwd));
  Sys(SYS_umask, h.umask);
}

// Phase 2, on the scratch stack with all signals blocked: no way back.
[[noreturn, gnu::noinline]] void Rebuild() {
  Scratch* s = S();
  Header& h = s->hdr;
  UnregisterRseq(s, h);
  DropForeignMappings(s, h);
  if (static_cast<uint64_t>(Sys(SYS_brk, h.brk)) != h.brk) Die("cannot set the program break");
  PlaceRegions(s, h);
  SetArgEnvRanges(h);
  const long tid = RestoreThreadState(s, h);
  RestoreFiles(s, h);
  raw::Copy(g_resume_env, s->env, kEnvSize);
  ++g_resume_count;
  // Restored: tell the source, and run only once it commits.
  char k = 'K';
  if (raw::SendFull(s->image_fd, &k, 1) != 0) Die("the source went away before the commit");
  char c = 0;
  if (raw::ReadFull(s->image_fd, &c, 1) != 0 || c != 'C') Die("the source did not commit");
  raw::Close(s->image_fd);
  long pid = Sys(SYS_getpid);
  for (int sig = 1; sig < 32; ++sig)
    if ((h.sigpending & (1ull << (sig - 1))) != 0) Sys(SYS_tgkill, pid, tid, sig);
  mpvm_ckpt_resume_context(&h.ctx);
}

int EnvInt(const char* name, int dflt) {
  const char* v = getenv(name);
  if (v == nullptr || *v == '\0') return dflt;
  return atoi(v);
}

// The restore's environment (S()->env, the new host's settings): a number.
int ScratchEnvInt(const char* name, int dflt) {
  const char* v = FindEnv(S()->env, name);
  if (v == nullptr || *v == '\0') return dflt;
  return static_cast<int>(raw::ParseDec(v));
}

// What the restore process can do before the image arrives (before the
// source freezes its task), so that the blackout does not pay for it: the
// host's file hash cache read (and the scratch memory populated, Restore).
// (Populating the file mappings ahead was tried too: no difference in the
// blackout beyond the noise, bench/migrate_cost.py.)
void Prewarm() {
  SetHashCache(FindEnv(S()->env, "MPVM_RUNDIR"));  // this host's (the new one)
  LoadHashCache();
}

// Tells the daemon this process waits for the image: only now does the
// source freeze its task (daemon/core/env.h, RestoreStart).
void SayReady(int ready) {
  if (ready < 0) return;
  const char r = 'r';
  raw::Write(ready, &r, 1);
  raw::Close(ready);
}

int64_t MonotonicMs() {
  struct timespec ts {};
  Sys(SYS_clock_gettime, 1 /* CLOCK_MONOTONIC */, reinterpret_cast<long>(&ts));
  return static_cast<int64_t>(ts.tv_sec) * 1000 + ts.tv_nsec / 1000000;
}

void SetReceiveTimeout(int fd, long seconds) {
  struct timeval tv {
    seconds, 0
  };
  Sys(SYS_setsockopt, fd, SOL_SOCKET, SO_RCVTIMEO, reinterpret_cast<long>(&tv), sizeof tv);
}

// The move's key, from the pipe the daemon wrote it to, or nullptr (no
// pipe): a plain stream (the engine's own tests).
const uint8_t* ReadKey(int kfd) {
  if (kfd < 0) return nullptr;
  uint8_t* key = S()->key;
  if (raw::ReadFull(kfd, key, kSealKeySize) != 0) Die("cannot read the move's key");
  raw::Close(kfd);
  return key;
}

// Starts reading the image on `fd`: its first record, the header.
const char* BeginImage(int fd, const uint8_t* key) {
  Scratch* s = S();
  if (const char* bad = SealInBegin(s->in, fd, key)) return bad;
  return SealGet(s->in, &s->hdr, sizeof s->hdr);
}

// The image stream: the first connection to listener `lfd` whose header
// record authenticates under the move's key, in time. Anyone else who
// connects is dropped, and cannot make the move fail.
int AcceptImageStream(int lfd, const uint8_t* key) {
  struct pollfd {
    int fd;
    short events, revents;
  } p{lfd, 1 /* POLLIN */, 0};
  // The source connects once its task may stream, which may be up to its
  // freeze time-out (30 s, core/move_source.cc) after the accept.
  const int64_t deadline = MonotonicMs() + ScratchEnvInt("MPVM_RESTORE_TIMEOUT_MS", 35000);
  for (;;) {
    const int64_t left = deadline - MonotonicMs();
    long r = left > 0 ? Sys(SYS_poll, reinterpret_cast<long>(&p), 1, left) : 0;
    if (r == -4) continue;
    if (r <= 0) Die("no image arrived in time");
    const int fd = static_cast<int>(Sys(SYS_accept4, lfd, 0, 0, SOCK_CLOEXEC));
    if (fd < 0) continue;
    SetReceiveTimeout(fd, 5);  // a connection that says nothing is dropped
    const char* bad = BeginImage(fd, key);
    if (bad == nullptr) {
      SetReceiveTimeout(fd, 0);
      raw::Close(lfd);
      return fd;
    }
    char msg[kWhySize + 64] = "mpvm restore: dropped a connection: ";
    raw::Append(msg, sizeof msg, bad);
    raw::Append(msg, sizeof msg, "\n");
    raw::WriteFull(2, msg, raw::Len(msg));
    raw::Close(fd);
  }
}

// Reserves the staging area for the image's data (no memory committed).
bool MapStaging() {
  const uint64_t span = S()->hdr.data_bytes;
  if (span == 0) return true;
  long m = Sys(SYS_mmap, kStagingAddr, span, PROT_READ | PROT_WRITE,
               MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE | MAP_NORESERVE, -1, 0);
  return m == static_cast<long>(kStagingAddr);
}

// After 'G': every kData region's page runs, into the staging area (the
// region's place there: the regions laid end to end). Rebuild moves them.
void ReceiveData() {
  Scratch* s = S();
  const Header& h = s->hdr;
  uint64_t at = kStagingAddr;
  for (uint32_t i = 0; i < h.nregions; ++i) {
    const Region& r = s->regions[i];
    if (r.kind != RegionKind::kData) continue;
    RunList* list = r.is_heap ? &s->heap_list : r.is_stack ? &s->stack_list : nullptr;
    if (list != nullptr) *list = RunList{r.is_heap ? s->heap_runs : s->stack_runs, kMaxCopyRuns, 0};
    if (const char* bad = ReadPageRuns(s->in, at, at + (r.end - r.start), list)) Die(bad);
    at += r.end - r.start;
  }
}

}  // namespace

namespace internal {

// Reads the image and becomes it; S() is mapped and S()->env holds the new
// host's environment. Never returns.
[[noreturn]] void Restore(const RestoreFrom& from) {
  Scratch* s = S();
  PopulateScratch(true);
  Prewarm();
  if (sodium_init() < 0) Die("libsodium failed to start");
  SayReady(from.ready_fd);
  const uint8_t* key = ReadKey(from.key_fd);
  int fd = from.fd;
  if (fd < 0) {
    fd = AcceptImageStream(from.lfd, key);
  } else if (const char* bad = BeginImage(fd, key)) {
    Die(bad);
  }
  s->image_fd = fd;
  Header& h = s->hdr;  // read by BeginImage
  if (h.magic != kMagic || h.version != kVersion || h.header_size != sizeof(Header))
    Refuse(fd, "not an image of this mpvm version");
  if (h.nregions > static_cast<uint32_t>(kMaxRegions) ||
      h.nfiles > static_cast<uint32_t>(kMaxFiles))
    Refuse(fd, "malformed image header");
  if (const char* bad = SealGet(s->in, s->regions, sizeof(Region) * h.nregions)) Die(bad);
  if (const char* bad = CheckImageLayout(h, s->regions, kScratchAddr, kRestoreAreaEnd))
    Refuse(fd, bad);
  if (h.data_bytes > kRestoreAreaEnd - kStagingAddr || !MapStaging())
    Refuse(fd, "cannot reserve address space to receive the image");
  Check(fd);
  char go = 'G';
  if (raw::SendFull(fd, &go, 1) != 0) Die("the source went away");
  ReceiveData();
  uint64_t all = ~0ull;
  Sys(SYS_rt_sigprocmask, SIG_SETMASK, reinterpret_cast<long>(&all), 0, 8);
  uint64_t top = kScratchAddr + kScratchSize - 64;
  __asm__ volatile(
      "mov %0, %%rsp\n\t"
      "xor %%ebp, %%ebp\n\t"
      "call *%1\n\t"
      "ud2"
      :
      : "r"(top), "r"(&Rebuild)
      : "memory");
  __builtin_unreachable();
}

}  // namespace internal

void RestoreIfRequested() {
  int fd = EnvInt("MPVM_RESTORE_FD", -1);
  int lfd = EnvInt("MPVM_RESTORE_LISTEN_FD", -1);
  if (fd < 0 && lfd < 0) return;
  if (!MapScratch()) Die("the restore area at 0x100000000000 is in use");
  // The new host's settings, for the runtime once it runs again.
  Scratch* s = S();
  size_t used = 0;
  for (char** e = environ; *e != nullptr; ++e) {
    size_t n = raw::Len(*e) + 1;
    if (used + n + 1 > kEnvSize) break;
    raw::Copy(s->env + used, *e, n);
    used += n;
  }
  s->env[used] = '\0';
  Restore(
      RestoreFrom{fd, lfd, EnvInt("MPVM_RESTORE_KEY_FD", -1), EnvInt("MPVM_RESTORE_READY_FD", -1)});
}

const char* ResumeEnv(const char* name) {
  if (g_resume_count == 0) return nullptr;
  return FindEnv(g_resume_env, name);
}

int ResumeCount() { return g_resume_count; }

}  // namespace mpvm::ckpt
