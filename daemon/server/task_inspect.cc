// task_inspect.cc — /proc, read for a move (task_inspect.h).
#include "server/task_inspect.h"

#include <dirent.h>
#include <fmt/format.h>
#include <unistd.h>

#include <charconv>
#include <cstdlib>
#include <fstream>
#include <sstream>
#include <vector>

namespace mpvm::inspect {

namespace {

std::string ReadAll(const std::string& path) {
  std::ifstream f(path);
  std::ostringstream s;
  s << f.rdbuf();
  return s.str();
}

std::vector<std::string_view> Words(std::string_view line) {
  std::vector<std::string_view> out;
  size_t i = 0;
  while (i < line.size()) {
    while (i < line.size() && (line[i] == ' ' || line[i] == '\t')) ++i;
    const size_t start = i;
    while (i < line.size() && line[i] != ' ' && line[i] != '\t') ++i;
    if (i > start) out.push_back(line.substr(start, i - start));
  }
  return out;
}

template <typename F>
void ForEachLine(std::string_view text, F&& f) {
  while (!text.empty()) {
    const size_t nl = text.find('\n');
    f(text.substr(0, nl));
    if (nl == std::string_view::npos) break;
    text.remove_prefix(nl + 1);
  }
}

bool ParseLong(std::string_view w, long& out, int base = 10) {
  if (base == 16 && w.starts_with("0x")) w.remove_prefix(2);
  const auto r = std::from_chars(w.data(), w.data() + w.size(), out, base);
  return r.ec == std::errc() && r.ptr == w.data() + w.size();
}

bool ParseHex(std::string_view w, uint64_t& out) {
  if (!w.starts_with("0x")) return false;
  w.remove_prefix(2);
  const auto r = std::from_chars(w.data(), w.data() + w.size(), out, 16);
  return r.ec == std::errc() && r.ptr == w.data() + w.size();
}

// The first child of `pid`, or 0: from its threads' /proc children lists
// (a few small reads), or, where the kernel has none, a scan of /proc.
int FindChild(int pid) {
  const std::string tasks = fmt::format("/proc/{}/task", pid);
  if (DIR* d = opendir(tasks.c_str()); d != nullptr) {
    int child = 0;
    bool listed = false;
    while (const dirent* e = readdir(d)) {
      if (e->d_name[0] == '.') continue;
      const std::string path = tasks + "/" + e->d_name + "/children";
      if (access(path.c_str(), R_OK) != 0) continue;
      listed = true;
      long c = 0;
      const std::string text = ReadAll(path);
      const auto w = Words(text);
      if (!w.empty() && ParseLong(w[0], c)) child = static_cast<int>(c);
      if (child != 0) break;
    }
    closedir(d);
    if (listed) return child;
  }
  DIR* d = opendir("/proc");
  if (d == nullptr) return 0;
  int child = 0;
  while (const dirent* e = readdir(d)) {
    long p = 0;
    if (!ParseLong(e->d_name, p) || p == pid) continue;
    if (ParseStat(ReadAll(fmt::format("/proc/{}/stat", p))).ppid == pid) {
      child = static_cast<int>(p);
      break;
    }
  }
  closedir(d);
  return child;
}

}  // namespace

SyscallState ParseSyscall(std::string_view text) {
  SyscallState s;
  const auto w = Words(text.substr(0, text.find('\n')));
  if (w.empty()) return s;
  if (w[0] == "running") {
    s.kind = SyscallState::Kind::kRunning;
    return s;
  }
  long nr = 0;
  if (!ParseLong(w[0], nr)) return s;
  if (nr < 0) {  // "-1 SP PC": stopped outside any system call
    s.kind = SyscallState::Kind::kUser;
    return s;
  }
  if (w.size() < 7) return s;  // NR, six arguments, then SP and PC
  for (size_t i = 0; i < 6; ++i)
    if (!ParseHex(w[i + 1], s.args[i])) return s;
  s.kind = SyscallState::Kind::kInCall;
  s.nr = nr;
  return s;
}

SyscallState ReadSyscall(int pid) {
  return ParseSyscall(ReadAll(fmt::format("/proc/{}/syscall", pid)));
}

StatInfo ParseStat(std::string_view text) {
  // "PID (COMM) S PPID ...": COMM may hold spaces and parentheses.
  const size_t close = text.rfind(')');
  if (close == std::string_view::npos) return {};
  const auto w = Words(text.substr(close + 1, 64));
  StatInfo st;
  long ppid = 0;
  if (w.size() < 2 || w[0].size() != 1 || !ParseLong(w[1], ppid)) return {};
  st.state = w[0][0];
  st.ppid = static_cast<int>(ppid);
  return st;
}

StatInfo ReadStat(int pid) { return ParseStat(ReadAll(fmt::format("/proc/{}/stat", pid))); }

bool HoldsFileLock(std::string_view proc_locks, int pid) {
  bool held = false;
  ForEachLine(proc_locks, [&](std::string_view line) {
    const auto w = Words(line);  // "1: POSIX ADVISORY WRITE PID MAJ:MIN:INODE START END"
    long p = 0;
    if (w.size() >= 5 && w[1] != "->" && ParseLong(w[4], p) && p == pid) held = true;
  });
  return held;
}

bool NamesPid(std::string_view sysvipc_table, int pid, std::string_view col_a,
              std::string_view col_b) {
  std::vector<size_t> cols;
  bool found = false, header = true;
  ForEachLine(sysvipc_table, [&](std::string_view line) {
    const auto w = Words(line);
    if (header) {  // the first line names the columns
      for (size_t i = 0; i < w.size(); ++i)
        if (w[i] == col_a || w[i] == col_b) cols.push_back(i);
      header = false;
      return;
    }
    for (size_t i : cols) {
      long p = 0;
      if (i < w.size() && ParseLong(w[i], p) && p == pid) found = true;
    }
  });
  return found;
}

bool HasSysvShm(std::string_view proc_maps) {
  bool found = false;
  ForEachLine(proc_maps, [&](std::string_view line) {
    if (line.find(" /SYSV") != std::string_view::npos) found = true;
  });
  return found;
}

bool HasPosixTimers(std::string_view proc_timers) {
  return proc_timers.find("ID:") != std::string_view::npos;
}

std::string WhatPinsTask(int pid) {
  const char* kLost = "; it would not carry over, so the task stays where it is";
  if (const int child = FindChild(pid); child != 0)
    return fmt::format("it has a child process (pid {}){}", child, kLost);
  if (HasPosixTimers(ReadAll(fmt::format("/proc/{}/timers", pid))))
    return fmt::format("it has a POSIX timer (timer_create){}", kLost);
  if (HoldsFileLock(ReadAll("/proc/locks"), pid))
    return fmt::format("it holds a file lock (fcntl, flock or lockf){}", kLost);
  if (HasSysvShm(ReadAll(fmt::format("/proc/{}/maps", pid))))
    return fmt::format("it has System V shared memory attached{}", kLost);
  if (NamesPid(ReadAll("/proc/sysvipc/msg"), pid, "lspid", "lrpid"))
    return fmt::format("it uses a System V message queue{}", kLost);
  return "";
}

}  // namespace mpvm::inspect
