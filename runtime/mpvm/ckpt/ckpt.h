// ckpt.h — capture a running single-threaded process into a stream, and
// restore it inside a fresh process of the same executable (or a spare:
// one whose task of the same executable has moved away).
//
// This is the engine under transparent migration (docs/design/migration.md).
// The task runtime drives it; nothing here knows about PVM.
//
//   source process                        restore process (same executable,
//                                         ADDR_NO_RANDOMIZE, started by a daemon)
//   Capture(opts) ── header, table ──────▶ checks kernel, vdso, CPU, layout
//                ◀──────── 'G' | 'R'+why ──
//                ── region contents ──────▶ stages them, rebuilds the address space
//                ◀──────── 'K' | 'R'+why ──
//   returns kSaved
//   Commit()     ── 'C' ──────────────────▶ resumes inside Capture (kResumed)
//   or Abort()   ── 'A' ──────────────────▶ exits 127
//
// What the source sends is sealed under the move's key (seal.h): only the
// restore process that holds the key can read it. Capture uses raw system
// calls only and allocates nothing, so it may run in a signal handler that
// interrupted arbitrary code (even malloc). Restore runs from a constructor
// (RestoreIfRequested) before main.
#pragma once

#include <stddef.h>
#include <stdint.h>

namespace mpvm::ckpt {

// Where capture and restore keep their working memory: never part of an image.
inline constexpr uint64_t kScratchAddr = 0x100000000000ull;
inline constexpr size_t kScratchSize = 8u << 20;
inline constexpr size_t kKeySize = 32;  // the move's key (seal.h)
inline constexpr size_t kWhySize = 240;

enum class CaptureResult {
  kSaved = 0,     // the image is restored at the destination (call Commit or Abort)
  kResumed = 1,   // we are the restored process
  kRefused = -1,  // the process cannot be captured or the destination refused; see why
  kFailed = -2,   // the stream broke; see why
};

struct CaptureOptions {
  int out_fd = -1;               // connected stream to the restore process (blocking)
  const uint8_t* key = nullptr;  // kKeySize bytes: the move's key (nullptr: a plain stream)
  const int* own_fds = nullptr;  // the caller's own descriptors: re-created by it
  int n_own_fds = 0;
  uint64_t* bytes_sent = nullptr;  // if set: the size of the image streamed
  const char* rundir = nullptr;    // this host's runtime directory: its file hash cache
  int64_t* sent_ns = nullptr;      // if set: CLOCK_REALTIME when the last byte was sent
};

// Captures this process into opts.out_fd. `why` receives the reason of a
// refusal or failure (kWhySize bytes is enough). Blocks all signals while it runs.
CaptureResult Capture(const CaptureOptions& opts, char* why, size_t why_len);
// After kSaved: let the restored process run (the caller then exits without
// flushing anything), or tell it to give up (the caller carries on).
bool Commit(int out_fd);
void Abort(int out_fd);

// Called from a constructor: if MPVM_RESTORE_FD (a connected stream) or
// MPVM_RESTORE_LISTEN_FD (a listening socket; the first connection whose
// stream authenticates is taken) is set, reads an image and becomes it.
// MPVM_RESTORE_KEY_FD, if set, is a pipe holding the move's key. Does not return then: it either
// resumes the image or exits 127 after printing why to stderr.
void RestoreIfRequested();

// A spare: a process whose task has just moved away (after the commit),
// kept by its daemon to restore the next task of the same program that
// arrives on this host, in place of a fresh process (that saves the exec,
// the dynamic linking and their page faults: most of the CPU a small
// task's move costs). ServeAsSpare closes every descriptor but `order_fd`
// (its connection to the daemon's migrate.sock), blocks all signals, and
// waits for one order: a SpareOrder, then env_size bytes (the new task's
// environment: NUL-terminated strings, then an empty one), with
// kSpareOrderFds descriptors attached to the SpareOrder's bytes: stdin,
// stdout, stderr, the image listener, the ready pipe and the key pipe (as
// MPVM_RESTORE_LISTEN_FD, _READY_FD and _KEY_FD). Then it restores as
// RestoreIfRequested does. The end of `order_fd` without an order ends
// the process.
struct SpareOrder {
  uint32_t magic;
  uint32_t env_size;
};
inline constexpr uint32_t kSpareMagic = 0x45524150;  // "PARE"
inline constexpr int kSpareOrderFds = 6;
inline constexpr size_t kSpareEnvMax = 32 * 1024;  // env_size and two NULs fit in it
[[noreturn]] void ServeAsSpare(int order_fd);

// In a resumed process: the environment the restore process was started
// with (the new host's settings), else nullptr.
const char* ResumeEnv(const char* name);
// How many times this process image has been resumed (0: never moved).
int ResumeCount();

}  // namespace mpvm::ckpt
