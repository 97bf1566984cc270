// processes.h — the processes of this host's tasks: starting them (fork and
// exec, with their output on pipes), finding programs as PVM does, reading
// their output, and knowing which task a reaped pid was.
#pragma once

#include <sys/types.h>
#include <zmq.h>

#include <array>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "core/env.h"
#include "mpvm/tid.h"
#include "server/cpu_limit.h"

namespace mpvm {

class TaskProcesses {
 public:
  // Output of a task: bytes from its stdout, or its stderr.
  using OutputFn = std::function<void(Tid, std::string_view, bool is_stderr)>;

  explicit TaskProcesses(std::string rundir) : rundir_(std::move(rundir)) {}
  // PVM's ep=: directories searched after $HOME/pvm3/bin/LINUX64.
  void set_ep(std::string ep) { ep_ = std::move(ep); }
  // An emulated host's speed: every process started here joins `limit`.
  void set_cpu_limit(CpuLimit* limit) { limit_ = limit; }

  // Starts a task process; the descriptors in `keep` stay open in it.
  Result<int> Spawn(const SpawnSpec& spec, std::vector<int> keep = {});
  // Makes spare process `pid` (spares.h), waiting on `order_fd`, the
  // restore process of task spec.tid: sends it the task's environment and
  // stdio and `keep` (image listener, ready pipe, key pipe). Fails if the
  // spare has gone; the caller then Spawns.
  Result<int> Revive(pid_t pid, int order_fd, const SpawnSpec& spec,
                     const std::array<int, 3>& keep);
  // Full path of `file` as spawn would run it, or "".
  std::string Resolve(const std::string& file, const std::string& path_env,
                      const std::string& cwd) const;
  void RemoveTaskSocket(Tid t) const;

  // Output pipes: poll items (their serials beside them), one read, the end.
  void AppendPollItems(std::vector<zmq_pollitem_t>& items, std::vector<uint64_t>& ids) const;
  // Reads what pipe `id` has; false when it is at its end.
  bool ReadPipe(uint64_t id, const OutputFn& out);
  // Closes pipe `id`; returns its task (nothing if it was closed already).
  std::optional<Tid> ClosePipe(uint64_t id);
  // Task `t`'s pipes read to their end and closed (a commit: the old process).
  void Drain(Tid t, const OutputFn& out);

  // The task whose process `pid` was reaped (nothing if not a task's).
  std::optional<Tid> Reaped(pid_t pid);
  // Process `pid` of task `t` is no longer ours to report.
  void Forget(pid_t pid, Tid t);
  void CloseAll();
  // Process `pid` as /proc/PID/stat shows it now.
  static ProcessSample Sample(int pid);
  // Threads ready to run on this machine now (/proc/stat procs_running), -1
  // if unknown.
  static int MachineRunning();

 private:
  // Process `pid` is task t's, its output on these pipes' read ends.
  void Adopt(pid_t pid, Tid t, int out_read, int err_read);

  struct Pipe {
    Tid tid;
    int fd;
    bool is_stderr = false;
  };
  std::string rundir_;
  std::string ep_;
  // By a serial number, never reused: a commit may drain and remove a
  // task's pipes in the middle of a poll round.
  std::map<uint64_t, Pipe> pipes_;
  uint64_t next_pipe_ = 1;
  std::map<pid_t, Tid> pids_;
  CpuLimit* limit_ = nullptr;
};

}  // namespace mpvm
