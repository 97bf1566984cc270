// internal.cc — see internal.h. No libc: raw.h has the system calls.
#include "mpvm/ckpt/internal.h"

#include <cpuid.h>
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>

namespace mpvm::ckpt::internal {

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

void Why(char* why, size_t len, const char* a, const char* b, const char* c) {
  if (why == nullptr || len == 0) return;
  raw::CopyStr(why, len, a);
  raw::Append(why, len, b);
  raw::Append(why, len, c);
}

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

void Die(const char* what, const char* detail) {
  char msg[kWhySize + 64] = "mpvm restore: ";
  raw::Append(msg, sizeof msg, what);
  raw::Append(msg, sizeof msg, detail);
  raw::Append(msg, sizeof msg, "\n");
  raw::WriteFull(2, msg, raw::Len(msg));
  Sys(SYS_exit_group, 127);
  __builtin_unreachable();
}

}  // namespace mpvm::ckpt::internal
