// ckpt.cc — capture and restore of a single-threaded process (see ckpt.h).
//
// Built with -fno-stack-protector -fno-builtin -fno-tree-loop-distribute-patterns
// and without sanitizers: the restore half replaces libc's memory (including
// the stack canary) while it runs, and the capture half runs in signal
// handlers. Neither calls libc; raw.h has the system calls.
//
// What is saved and how (the facts come from docs/design/migration.md):
//   writable, anonymous, [heap], [stack], COW-dirtied file pages -> contents
//   unchanged file mappings (text, rodata, locale files)           -> path + hash
//   ---p                                                            -> reserved range
//   [vdso] / [vvar*]                                                -> hash / moved
// plus registers, signal state, brk, the TCB registrations (fs base, TID
// address, robust list, rseq), umask, cwd and regular-file descriptors.
#include "mpvm/ckpt/ckpt.h"

#include <asm/prctl.h>
#include <cpuid.h>
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
#include <sys/sysmacros.h>
#include <sys/time.h>
#include <sys/utsname.h>
#include <unistd.h>

#include "mpvm/ckpt/image.h"
#include "mpvm/ckpt/pages.h"
#include "mpvm/ckpt/raw.h"
#include "mpvm/ckpt/seal.h"

extern "C" {
__attribute__((returns_twice)) int mpvm_ckpt_save_context(mpvm::ckpt::Context* c);
[[noreturn]] void mpvm_ckpt_resume_context(const mpvm::ckpt::Context* c);
// glibc >= 2.35: where the rseq area sits relative to the thread pointer.
extern const ptrdiff_t __rseq_offset __attribute__((weak));
extern const unsigned int __rseq_size __attribute__((weak));
// Present when built with AddressSanitizer: its shadow cannot be moved.
void __asan_init() __attribute__((weak));
}

namespace mpvm::ckpt {
namespace {

constexpr uint32_t kRseqSig = 0x53053053;  // glibc's RSEQ_SIG on x86

using raw::Sys;

struct CurMap {  // a mapping of the process that runs the restore
  uint64_t start, end, offset;
  uint64_t dev, ino;  // of the mapped file (0 for anonymous mappings)
  uint32_t prot;
  bool shared;
  char path[kPathMax];
};

constexpr size_t kEnvSize = kSpareEnvMax;
// The restore area: the scratch memory, then the staging area where the
// image's data lands before the address space is rebuilt. No image region
// may lie in it.
constexpr uint64_t kStagingAddr = kScratchAddr + kScratchSize;
constexpr uint64_t kRestoreAreaEnd = kScratchAddr + (32ull << 40);
constexpr size_t kStackSize = 1u << 20;
constexpr uint32_t kMaxCopyRuns = 8192;

// A file hash cache record (see FileHash below).
struct HashRecord {
  uint64_t dev, ino, size, mtime_ns, ctime_ns, offset, len, hash;
};
constexpr int kHashCacheRecords = 4096;
constexpr long kHashCacheMax = kHashCacheRecords * static_cast<long>(sizeof(HashRecord));

// The working memory at kScratchAddr.
struct Scratch {
  Header hdr;
  Region regions[kMaxRegions];
  CurMap cur[kMaxRegions];
  int ncur;
  char io[64 * 1024];
  char line[4096];
  char env[kEnvSize];
  char why[kWhySize];
  uint8_t key[kSealKeySize];
  SealOut out;  // capture: the image stream
  SealIn in;    // restore: the image stream
  int image_fd;
  uint32_t rseq_len_registered;
  HashRecord hashes[kHashCacheRecords];  // the host's file hash cache, read once
  int nhashes;
  bool hashes_read;
  // A spare's read-only file mappings that its old task changed (through
  // mprotect): they must be mapped afresh, not kept (their starts).
  uint64_t changed[kMaxRegions];
  int nchanged;
  // The heap's and the stack's page runs in the image: copied into place
  // run by run (no scan for zero pages, which faults on each page not sent).
  PageRun heap_runs[kMaxCopyRuns], stack_runs[kMaxCopyRuns];
  RunList heap_list, stack_list;
};
static_assert(sizeof(Scratch) + kStackSize < kScratchSize, "scratch too small");

Scratch* S() { return reinterpret_cast<Scratch*>(kScratchAddr); }

// Survives in the image: the restore process's environment after a resume.
char g_resume_env[kEnvSize];
int g_resume_count = 0;

bool MapScratch() {
  long r = Sys(SYS_mmap, kScratchAddr, kScratchSize, PROT_READ | PROT_WRITE,
               MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE | MAP_NORESERVE, -1, 0);
  return r == static_cast<long>(kScratchAddr);
}
void UnmapScratch() { Sys(SYS_munmap, kScratchAddr, kScratchSize); }

// Populates [p, p + n) of the scratch area in one call: the first touch of
// each page one by one costs a fault (10-20 us on a virtual machine), and a
// capture or a restore touches a few hundred KiB of it.
void Populate(const void* p, size_t n) {
  const uint64_t from = reinterpret_cast<uint64_t>(p) & ~4095ull;
  const uint64_t to = (reinterpret_cast<uint64_t>(p) + n + 4095) & ~4095ull;
  Sys(SYS_madvise, static_cast<long>(from), static_cast<long>(to - from), raw::kMadvPopulateWrite);
}

// What a capture or a restore uses of the scratch area (the first
// kTypicalRegions of each table: a process with more faults the rest in),
// and the top of the restore's stack.
constexpr int kTypicalRegions = 160;
void PopulateScratch(bool restore) {
  Scratch* s = S();
  Populate(&s->hdr, sizeof s->hdr);
  Populate(s->regions, sizeof(Region) * kTypicalRegions);
  Populate(s->cur, sizeof(CurMap) * kTypicalRegions);
  Populate(s->io, sizeof s->io);
  Populate(s->line, sizeof s->line);
  if (restore) {
    Populate(&s->in, sizeof s->in);
    Populate(reinterpret_cast<const void*>(kScratchAddr + kScratchSize - (64u << 10)), 64u << 10);
  } else {
    Populate(&s->out, sizeof s->out);
  }
}

void Why(char* why, size_t len, const char* a, const char* b = "", const char* c = "") {
  if (why == nullptr || len == 0) return;
  raw::CopyStr(why, len, a);
  raw::Append(why, len, b);
  raw::Append(why, len, c);
}

// --- reading /proc files line by line, without libc ----------------------
struct LineReader {
  int fd;
  char* buf;
  size_t cap, start = 0, end = 0;
  char* out;
  size_t out_cap;
  // The next line (without '\n'), or nullptr at the end.
  const char* Next() {
    size_t n = 0;
    for (;;) {
      if (start == end) {
        long r = raw::Read(fd, buf, cap);
        if (r <= 0) {
          if (n == 0) return nullptr;
          break;
        }
        start = 0;
        end = static_cast<size_t>(r);
      }
      char ch = buf[start++];
      if (ch == '\n') break;
      if (n + 1 < out_cap) out[n++] = ch;
    }
    out[n] = '\0';
    return out;
  }
};

void SkipSpaces(const char*& s) {
  while (*s == ' ' || *s == '\t') ++s;
}

bool IsMapsHeader(const char* l) { return (*l >= '0' && *l <= '9') || (*l >= 'a' && *l <= 'f'); }

// "start-end perms offset dev inode path" -> m. Returns false if malformed.
bool ParseMapsLine(const char* l, CurMap& m) {
  m.start = raw::ParseHex(l);
  if (*l++ != '-') return false;
  m.end = raw::ParseHex(l);
  SkipSpaces(l);
  m.prot = 0;
  if (l[0] == 'r') m.prot |= PROT_READ;
  if (l[1] == 'w') m.prot |= PROT_WRITE;
  if (l[2] == 'x') m.prot |= PROT_EXEC;
  m.shared = l[3] == 's';
  l += 4;
  SkipSpaces(l);
  m.offset = raw::ParseHex(l);
  SkipSpaces(l);
  const uint64_t major = raw::ParseHex(l);
  if (*l == ':') ++l;
  const uint64_t minor = raw::ParseHex(l);
  m.dev = makedev(major, minor);
  SkipSpaces(l);
  m.ino = raw::ParseDec(l);
  SkipSpaces(l);
  raw::CopyStr(m.path, sizeof m.path, l);
  return m.end > m.start;
}

// ---- File hash cache ----------------------------------------------------
// Hashing every unchanged file mapping (the program and its libraries, ~10
// MiB) costs milliseconds on each side of a move, inside the blackout. A
// host keeps the hashes it computed in `<rundir>/hash-cache`: fixed records
// keyed by the file's identity and change times, so a file that changed in
// any way (ctime moves on every change and cannot be set back) misses.

char g_hash_cache[kPathMax];  // the cache file's path, or ""

bool FileKey(const char* path, uint64_t dev, uint64_t ino, uint64_t offset, uint64_t len,
             HashRecord& k) {
  struct stat st;
  if (g_hash_cache[0] == '\0' ||
      Sys(SYS_newfstatat, -100, reinterpret_cast<long>(path), reinterpret_cast<long>(&st), 0) != 0)
    return false;
  // The path must still name the mapped file (not a newer one put there).
  if ((dev != 0 || ino != 0) && (st.st_dev != dev || st.st_ino != ino)) return false;
  k = HashRecord{st.st_dev,
                 st.st_ino,
                 static_cast<uint64_t>(st.st_size),
                 static_cast<uint64_t>(st.st_mtim.tv_sec) * 1000000000 + st.st_mtim.tv_nsec,
                 static_cast<uint64_t>(st.st_ctim.tv_sec) * 1000000000 + st.st_ctim.tv_nsec,
                 offset,
                 len,
                 0};
  return true;
}

// Reads the host's file hash cache into the scratch area, once per capture
// or restore.
void LoadHashCache() {
  Scratch* s = S();
  if (s->hashes_read) return;
  s->hashes_read = true;
  long fd = raw::Open(g_hash_cache, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return;
  long got = 0;
  for (long n; got < kHashCacheMax &&
               (n = raw::Read(static_cast<int>(fd), reinterpret_cast<char*>(s->hashes) + got,
                              static_cast<size_t>(kHashCacheMax - got))) > 0;)
    got += n;
  s->nhashes = static_cast<int>(got / static_cast<long>(sizeof(HashRecord)));
  raw::Close(static_cast<int>(fd));
}

bool CachedHash(HashRecord& k) {
  Scratch* s = S();
  LoadHashCache();
  for (int i = 0; i < s->nhashes; ++i) {
    const HashRecord& r = s->hashes[i];
    if (r.dev == k.dev && r.ino == k.ino && r.size == k.size && r.mtime_ns == k.mtime_ns &&
        r.ctime_ns == k.ctime_ns && r.offset == k.offset && r.len == k.len) {
      k.hash = r.hash;
      return true;
    }
  }
  return false;
}

void RememberHash(const HashRecord& k) {
  long fd = raw::Open(g_hash_cache, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0600);
  if (fd < 0) return;
  struct stat st;
  if (Sys(SYS_fstat, fd, reinterpret_cast<long>(&st)) == 0 && st.st_size >= kHashCacheMax)
    Sys(SYS_ftruncate, fd, 0);  // full: start again (appends are single records)
  raw::Write(static_cast<int>(fd), &k, sizeof k);
  raw::Close(static_cast<int>(fd));
  Scratch* s = S();
  if (s->nhashes < kHashCacheRecords) s->hashes[s->nhashes++] = k;
}

// The content hash of bytes [offset, offset + len) of file `path` (mapped as
// dev:ino when known), from the cache, or compute() and remember it.
template <typename F>
uint64_t FileHash(const char* path, uint64_t dev, uint64_t ino, uint64_t offset, uint64_t len,
                  F compute) {
  HashRecord k;
  if (!FileKey(path, dev, ino, offset, len, k)) return compute();
  if (CachedHash(k)) return k.hash;
  k.hash = compute();
  RememberHash(k);
  return k.hash;
}

void SetHashCache(const char* rundir) {
  g_hash_cache[0] = '\0';
  if (rundir == nullptr || *rundir == '\0') return;
  raw::CopyStr(g_hash_cache, sizeof g_hash_cache, rundir);
  const size_t n = raw::Len(g_hash_cache);
  if (n + 12 >= sizeof g_hash_cache) {
    g_hash_cache[0] = '\0';
    return;
  }
  raw::CopyStr(g_hash_cache + n, sizeof g_hash_cache - n, "/hash-cache");
}

// Reads /proc/self/maps into S()->cur.
bool ReadCurrentMaps() {
  Scratch* s = S();
  long fd = raw::Open("/proc/self/maps", O_RDONLY | O_CLOEXEC);
  if (fd < 0) return false;
  LineReader lr{static_cast<int>(fd), s->io, sizeof s->io, 0, 0, s->line, sizeof s->line};
  s->ncur = 0;
  bool ok = true;
  while (const char* l = lr.Next()) {
    if (s->ncur == kMaxRegions) {
      ok = false;
      break;
    }
    if (ParseMapsLine(l, s->cur[s->ncur])) ++s->ncur;
  }
  raw::Close(static_cast<int>(fd));
  return ok;
}

// Field `n` (1-based, as in proc(5)) of /proc/self/stat.
uint64_t StatField(int n) {
  char buf[1024];
  long fd = raw::Open("/proc/self/stat", O_RDONLY | O_CLOEXEC);
  if (fd < 0) return 0;
  long r = raw::Read(static_cast<int>(fd), buf, sizeof buf - 1);
  raw::Close(static_cast<int>(fd));
  if (r <= 0) return 0;
  buf[r] = '\0';
  const char* p = buf;
  for (const char* q = buf; *q != '\0'; ++q)
    if (*q == ')') p = q + 1;  // the command name may hold spaces and ')'
  int field = 2;
  while (*p != '\0' && field < n) {
    SkipSpaces(p);
    ++field;
    if (field == n) break;
    while (*p != '\0' && *p != ' ') ++p;
  }
  SkipSpaces(p);
  bool neg = *p == '-';
  if (neg) ++p;
  uint64_t v = raw::ParseDec(p);
  return neg ? 0 : v;
}

void CpuFeatures(Header& h) {
  unsigned a, b, c, d;
  __cpuid_count(1, 0, a, b, c, d);
  h.cpuid1_ecx = c & ~(1u << 27);  // OSXSAVE is per-boot state, not a feature
  h.cpuid1_edx = d;
  __cpuid_count(7, 0, a, b, c, d);
  h.cpuid7_ebx = b;
  h.cpuid7_ecx = c;
  h.cpuid7_edx = d;
  __cpuid_count(0xd, 0, a, b, c, d);
  h.xsave_size = b;
}

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
  auto finish = [&]() -> bool {
    if (!have) return true;
    have = false;
    if (m.start >= kScratchAddr && m.end <= kScratchAddr + kScratchSize) return true;
    if (raw::Eq(m.path, "[vsyscall]")) return true;
    if (n == kMaxRegions) {
      Why(why, len, "too many memory mappings to move");
      return false;
    }
    Region& r = s->regions[n];
    raw::Zero(&r, sizeof r);
    r.start = m.start;
    r.end = m.end;
    r.offset = m.offset;
    r.prot = m.prot;
    raw::CopyStr(r.path, sizeof r.path, m.path);
    bool file = m.path[0] == '/';
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
      r.hash = FileHash(m.path, m.dev, m.ino, m.offset, m.end - m.start, [&] {
        return raw::Hash(reinterpret_cast<void*>(m.start), m.end - m.start);
      });
    } else if (m.prot == 0) {
      r.kind = RegionKind::kReserved;
    } else if ((m.prot & PROT_READ) == 0) {
      Why(why, len, "unreadable mapping ", m.path, " cannot move");
      return false;
    } else if (file && (m.prot & PROT_WRITE) == 0 && anon_kb == 0) {
      r.kind = RegionKind::kFile;
      r.hash = FileHash(m.path, m.dev, m.ino, m.offset, m.end - m.start, [&] {
        return raw::Hash(reinterpret_cast<void*>(m.start), m.end - m.start);
      });
    } else {
      r.kind = RegionKind::kData;
      r.is_heap = raw::Eq(m.path, "[heap]");
      r.is_stack = raw::Eq(m.path, "[stack]");
      r.anonymous = !file;  // its untouched pages read as zeros: sent sparse
      if (r.is_stack) h.stack_size = m.end - m.start;
      h.data_bytes += m.end - m.start;
    }
    ++n;
    return true;
  };
  while (const char* l = lr.Next()) {
    if (IsMapsHeader(l)) {
      if (!(ok = finish())) break;
      have = ParseMapsLine(l, m);
      anon_kb = 0;
    } else if (raw::StartsWith(l, "Anonymous:")) {
      const char* p = l + 10;
      SkipSpaces(p);
      anon_kb = raw::ParseDec(p);
    }
  }
  if (ok) ok = finish();
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

// --- restore --------------------------------------------------------------

[[noreturn]] void Die(const char* what, const char* detail = "") {
  char msg[kWhySize + 64] = "mpvm restore: ";
  raw::Append(msg, sizeof msg, what);
  raw::Append(msg, sizeof msg, detail);
  raw::Append(msg, sizeof msg, "\n");
  raw::WriteFull(2, msg, raw::Len(msg));
  Sys(SYS_exit_group, 127);
  __builtin_unreachable();
}

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

// Phase 2, on the scratch stack with all signals blocked: no way back.
[[noreturn, gnu::noinline]] void Rebuild() {
  Scratch* s = S();
  Header& h = s->hdr;
  const int fd = s->image_fd;
  // rseq: the kernel writes into the area on every return to user space, so
  // it must not point into memory about to be replaced.
  if (h.rseq_area != 0) {
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
  if (!ReadCurrentMaps()) Die("cannot read /proc/self/maps");
  // Drop every mapping the image does not share with this process.
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
  if (static_cast<uint64_t>(Sys(SYS_brk, h.brk)) != h.brk) Die("cannot set the program break");
  uint64_t staged = kStagingAddr;  // where the next kData region's contents wait
  for (uint32_t i = 0; i < h.nregions; ++i) {
    const Region& r = s->regions[i];
    const uint64_t len = r.end - r.start;
    switch (r.kind) {
      case RegionKind::kData: {
        PlaceData(r, staged);
        staged += len;
        break;
      }
      case RegionKind::kFile: {
        if (Kept(r)) break;
        long f = raw::Open(r.path, O_RDONLY | O_CLOEXEC);
        if (f < 0) Die("cannot open mapped file ", r.path);
        long m = Sys(SYS_mmap, r.start, len, r.prot, MAP_PRIVATE | MAP_FIXED, f, r.offset);
        raw::Close(static_cast<int>(f));
        if (m != static_cast<long>(r.start)) Die("cannot map ", r.path);
        break;
      }
      case RegionKind::kReserved: {
        long m = Sys(SYS_mmap, r.start, len, PROT_NONE,
                     MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED | MAP_NORESERVE, -1, 0);
        if (m != static_cast<long>(r.start)) Fail("reserving address space", m);
        break;
      }
      case RegionKind::kVdso:
      case RegionKind::kVvar:
        break;
    }
  }
  if (h.data_bytes > 0) Sys(SYS_munmap, kStagingAddr, h.data_bytes);  // what was copied from
  SetArgEnvRanges(h);
  // The thread's kernel registrations, pointed at the restored TCB.
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
  // Descriptors: only the image stream survives, then the task's files come back.
  long keep = Sys(SYS_fcntl, fd, F_DUPFD_CLOEXEC, 1000);
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
    Scratch* s = S();
    const Header& h = s->hdr;
    long e = SealBegin(s->out, o.out_fd, o.key);
    if (e == 0) e = SealPut(s->out, &h, sizeof h);
    if (e == 0) e = SealPut(s->out, s->regions, sizeof(Region) * h.nregions);
    if (e == 0) e = SealFlush(s->out);
    if (e != 0) {
      Why(why, len, "cannot send the image (the destination went away)");
      result = CaptureResult::kFailed;
    } else if (!Verdict(o.out_fd, 'G', why, len)) {
      result = CaptureResult::kRefused;
    } else {
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
        result = CaptureResult::kFailed;
      } else if (!Verdict(o.out_fd, 'K', why, len)) {
        result = CaptureResult::kFailed;
      }
    }
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

namespace {

// `name`'s value in an environment block (NUL-terminated strings, then an
// empty one), or nullptr.
const char* FindEnv(const char* block, const char* name) {
  const size_t n = raw::Len(name);
  for (const char* e = block; *e != '\0'; e += raw::Len(e) + 1) {
    bool match = true;
    for (size_t i = 0; i < n && match; ++i) match = e[i] == name[i];
    if (match && e[n] == '=') return e + n + 1;
  }
  return nullptr;
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

// Where a restore's image comes from: a connected stream, or a listener
// (the first connection that authenticates); the key's and the ready pipes.
struct RestoreFrom {
  int fd = -1;
  int lfd = -1;
  int key_fd = -1;
  int ready_fd = -1;
};

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

void ServeAsSpare(int order_fd) {
  const int order = BecomeSpare(order_fd);
  if (!MapScratch()) Die("the restore area at 0x100000000000 is in use");
  NoteChangedFileMappings();
  const RestoreFrom from = ReceiveOrder(order);
  DiscardPendingSignals();
  Restore(from);
}

const char* ResumeEnv(const char* name) {
  if (g_resume_count == 0) return nullptr;
  return FindEnv(g_resume_env, name);
}

int ResumeCount() { return g_resume_count; }

}  // namespace mpvm::ckpt
