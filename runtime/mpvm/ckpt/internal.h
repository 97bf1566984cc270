// internal.h — what the checkpoint engine's capture (capture.cc), restore
// (restore.cc) and spares (spare.cc) share: the scratch area and what
// lives in it, reading /proc without libc, and the host's file hash cache.
// Only for mpvm/ckpt/; built like them (see capture.cc).
#pragma once

#include <stddef.h>
#include <stdint.h>

#include "mpvm/ckpt/ckpt.h"
#include "mpvm/ckpt/image.h"
#include "mpvm/ckpt/pages.h"
#include "mpvm/ckpt/raw.h"
#include "mpvm/ckpt/seal.h"

namespace mpvm::ckpt::internal {

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

inline Scratch* S() { return reinterpret_cast<Scratch*>(kScratchAddr); }

// Survives in the image: the restore process's environment after a resume.
extern char g_resume_env[kEnvSize];
extern int g_resume_count;

// The scratch area at kScratchAddr: mapped (false if something is there),
// unmapped, and the parts a capture or a restore uses populated at once.
bool MapScratch();
void UnmapScratch();
void PopulateScratch(bool restore);

// why = a + b + c, cut to `len`.
void Why(char* why, size_t len, const char* a, const char* b = "", const char* c = "");
// Says why on stderr and exits 127 (a restore that cannot go on).
[[noreturn]] void Die(const char* what, const char* detail = "");

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

void SkipSpaces(const char*& s);
bool IsMapsHeader(const char* l);
// "start-end perms offset dev inode path" -> m. Returns false if malformed.
bool ParseMapsLine(const char* l, CurMap& m);
// Reads /proc/self/maps into S()->cur.
bool ReadCurrentMaps();
// Field `n` (1-based, as in proc(5)) of /proc/self/stat.
uint64_t StatField(int n);
void CpuFeatures(Header& h);

// The host's file hash cache (internal.cc): `<rundir>/hash-cache`.
void SetHashCache(const char* rundir);
void LoadHashCache();
bool FileKey(const char* path, uint64_t dev, uint64_t ino, uint64_t offset, uint64_t len,
             HashRecord& k);
bool CachedHash(HashRecord& k);
void RememberHash(const HashRecord& k);
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

// `name`'s value in an environment block (NUL-terminated strings, then an
// empty one), or nullptr.
const char* FindEnv(const char* block, const char* name);

// Where a restore's image comes from: a connected stream, or a listener
// (the first connection that authenticates); the key's and the ready pipes.
struct RestoreFrom {
  int fd = -1;
  int lfd = -1;
  int key_fd = -1;
  int ready_fd = -1;
};
// Reads the image and becomes it; S() is mapped and S()->env holds the new
// host's environment (restore.cc).
[[noreturn]] void Restore(const RestoreFrom& from);

}  // namespace mpvm::ckpt::internal
