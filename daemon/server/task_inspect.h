// task_inspect.h — what a task is doing, and what it holds that a move
// would lose, read from /proc while the task is stopped. mpvmd asks a task
// to move only when the request interrupts nothing of the program's own (a
// sleep, a read, a poll), and refuses a move that would lose something the
// task holds (docs/design/migration.md, "What a move never disturbs").
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

namespace mpvm::inspect {

// /proc/PID/syscall: where the task's thread is.
struct SyscallState {
  enum class Kind { kUnknown, kRunning, kUser, kInCall };
  Kind kind = Kind::kUnknown;
  long nr = -1;           // kInCall: the system call's number
  uint64_t args[6] = {};  // kInCall: its arguments
};
SyscallState ParseSyscall(std::string_view text);
SyscallState ReadSyscall(int pid);

// /proc/PID/stat: the state letter ('R', 'S', 'T', ...; 0 when unreadable)
// and the parent's pid.
struct StatInfo {
  char state = 0;
  int ppid = 0;
};
StatInfo ParseStat(std::string_view text);
StatInfo ReadStat(int pid);

// One /proc table each: does `pid` hold a lock in /proc/locks (a waiter's
// "->" line holds nothing), a System V object in a /proc/sysvipc table
// (one of the named pid columns is `pid`), or a POSIX timer
// (/proc/PID/timers is not empty)?
bool HoldsFileLock(std::string_view proc_locks, int pid);
bool NamesPid(std::string_view sysvipc_table, int pid, std::string_view col_a,
              std::string_view col_b);
bool HasSysvShm(std::string_view proc_maps);
bool HasPosixTimers(std::string_view proc_timers);

// Reads /proc: "" if `pid` holds nothing a move would lose, else why, as
// the task's pinned reason ("it has a child process (pid 123) ...").
std::string WhatPinsTask(int pid);

}  // namespace mpvm::inspect
