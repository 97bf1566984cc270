// image.h — the checkpoint image: what one process's state looks like on the
// wire, written by capture.cc and read by restore.cc.
//
// Stream layout: Header, then Region[header.nregions], then the contents of
// every kData region in table order (page-aligned lengths). Both ends run
// the same libpvm3 build, so structs go as raw bytes; `version` and
// `header_size` catch a mismatch.
#pragma once

#include <stddef.h>
#include <stdint.h>

namespace mpvm::ckpt {

inline constexpr uint64_t kMagic = 0x31474d4943564d50ull;  // "PMVCIMG1"
inline constexpr uint32_t kVersion = 1;
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
  uint32_t is_heap : 1, is_stack : 1, unused : 30;
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
  uint64_t data_bytes;  // sum of kData region lengths (what follows the table)
  Context ctx;
};

}  // namespace mpvm::ckpt
