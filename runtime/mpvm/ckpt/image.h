// image.h — the checkpoint image: what one process's state looks like on the
// wire, written by capture.cc and read by restore.cc.
//
// Stream layout: Header, then Region[header.nregions], then the contents of
// every kData region in table order, each as page runs: a PageRun, its
// bytes, the next PageRun, ..., and a PageRun of length 0. The pages of an
// anonymous region that were never touched (neither present nor swapped
// out: they read as zeros) are left out; a file-backed region goes whole,
// since its untouched pages would read from the file. Both ends run
// the same libpvm3 build, so structs go as raw bytes; `version` and
// `header_size` catch a mismatch.
#pragma once

#include <stddef.h>
#include <stdint.h>

namespace mpvm::ckpt {

inline constexpr uint64_t kMagic = 0x31474d4943564d50ull;  // "PMVCIMG1"
inline constexpr uint32_t kVersion = 3;
inline constexpr int kMaxRegions = 2048;
inline constexpr int kMaxFiles = 64;
inline constexpr int kPathMax = 480;

// Callee-saved registers and the return point of SaveContext (context.S).
struct Context {
  uint64_t rbx, rbp, r12, r13, r14, r15, rsp, rip;
  uint32_t mxcsr;
  uint16_t fpucw;
  uint16_t pad;
};

enum class RegionKind : uint32_t {
  kData = 1,      // contents follow in the stream
  kFile = 2,      // an unchanged file mapping: re-mapped, checked by hash
  kReserved = 3,  // ---p: address space only
  kVdso = 4,      // checked by hash, moved if it sits elsewhere
  kVvar = 5,      // moved with the vdso
};

struct Region {
  uint64_t start, end, offset, hash;
  uint32_t prot;  // PROT_* bits
  RegionKind kind;
  uint32_t is_heap : 1, is_stack : 1, anonymous : 1, unused : 29;  // anonymous: sent sparse
  uint32_t pad;
  char path[kPathMax];  // file path, or "[vdso]" / "[vvar]" / "[vvar_vclock]"
};

struct FileDesc {
  int32_t fd;
  int32_t flags;  // open(2) flags (F_GETFL)
  int64_t offset;
  char path[kPathMax];
};

struct KernelSigaction {
  uint64_t handler, flags, restorer, mask;
};

struct Header {
  uint64_t magic;
  uint32_t version, header_size;
  uint32_t nregions, nfiles;
  // What the destination must match.
  char kernel_release[65], kernel_version[65];
  uint8_t pad0[6];
  uint64_t vdso_hash, vdso_size;
  uint32_t cpuid1_ecx, cpuid1_edx, cpuid7_ebx, cpuid7_ecx, cpuid7_edx, xsave_size;
  uint64_t personality;
  uint64_t start_brk, brk;
  uint64_t stack_size;  // bytes of [stack] in use; RLIMIT_STACK must allow it
  // Where the kernel finds the arguments and environment (/proc/PID/cmdline,
  // ps): inside the restored stack.
  uint64_t arg_start, arg_end, env_start, env_end;
  // Kernel-side registrations that point into the TCB.
  uint64_t fs_base, tid_address, robust_head, robust_len;
  uint64_t rseq_area;
  uint32_t rseq_len, rseq_sig;
  // Signals and process attributes.
  uint64_t sigmask, sigpending;
  KernelSigaction actions[64];
  uint32_t umask;
  uint32_t pad1;
  char cwd[kPathMax];
  FileDesc files[kMaxFiles];
  uint64_t data_bytes;  // sum of kData region lengths (the most that follows the table)
  Context ctx;
};

// Checks an image's header and region table before anything is mapped:
// nullptr when well formed, else what is wrong. Structure only (what the
// destination must match, kernel and CPU, is checked by the restore).
// Allocates nothing and calls nothing, so the restore code may use it; the
// fuzzers (fuzz/image_fuzz.cc) and unit tests call it on any bytes.
// `scratch_start`/`scratch_end`: the restore area, which no region may touch.
inline const char* CheckImageLayout(const Header& h, const Region* regions, uint64_t scratch_start,
                                    uint64_t scratch_end) {
  if (h.magic != kMagic || h.version != kVersion || h.header_size != sizeof(Header))
    return "not an image of this mpvm version";
  if (h.nregions == 0 || h.nregions > static_cast<uint32_t>(kMaxRegions) ||
      h.nfiles > static_cast<uint32_t>(kMaxFiles))
    return "malformed image header (region or file count)";
  auto terminated = [](const char* s, int n) {
    for (int i = 0; i < n; ++i)
      if (s[i] == '\0') return true;
    return false;
  };
  if (!terminated(h.cwd, kPathMax) || !terminated(h.kernel_release, 65) ||
      !terminated(h.kernel_version, 65))
    return "malformed image header (unterminated text)";
  for (uint32_t i = 0; i < h.nfiles; ++i)
    if (!terminated(h.files[i].path, kPathMax) || h.files[i].fd < 0)
      return "malformed image header (open files)";
  constexpr uint64_t kPage = 4096, kUserEnd = 0x800000000000ull;
  uint64_t data = 0;
  for (uint32_t i = 0; i < h.nregions; ++i) {
    const Region& r = regions[i];
    if (r.start >= r.end || r.start % kPage != 0 || r.end % kPage != 0 || r.end > kUserEnd)
      return "malformed region table (bounds)";
    if (i > 0 && r.start < regions[i - 1].end) return "malformed region table (order or overlap)";
    if (r.start < scratch_end && r.end > scratch_start)
      return "the image overlaps the restore area";
    if (r.kind < RegionKind::kData || r.kind > RegionKind::kVvar)
      return "malformed region table (kind)";
    if ((r.prot & ~7u) != 0) return "malformed region table (protection)";
    if (!terminated(r.path, kPathMax)) return "malformed region table (path)";
    if (r.kind == RegionKind::kData) data += r.end - r.start;
  }
  if (data != h.data_bytes) return "malformed image header (data size)";
  return nullptr;
}

// One run of pages of a kData region in the stream: `len` bytes from
// region start + `offset` follow it. A run of length 0 ends the region.
struct PageRun {
  uint64_t offset, len;
};

// Checks a run before its bytes are read into a region of `region_len`
// bytes whose previous run ended at `prev_end` (0 for the first): nullptr
// when it is page-aligned, in order and inside the region, else what is
// wrong. Allocates nothing (the restore code uses it; so do the fuzzers).
inline const char* CheckPageRun(const PageRun& run, uint64_t prev_end, uint64_t region_len) {
  constexpr uint64_t kPage = 4096;
  if (run.offset % kPage != 0 || run.len % kPage != 0) return "malformed page run (alignment)";
  if (run.len == 0) return nullptr;
  if (run.offset < prev_end) return "malformed page run (order or overlap)";
  if (run.offset > region_len || run.len > region_len - run.offset)
    return "malformed page run (outside its region)";
  return nullptr;
}

}  // namespace mpvm::ckpt
