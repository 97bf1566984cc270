// task_service.h — the life of this host's tasks: enrolment (pvm_mytid),
// their output and where it goes, signals and kills, pvm_pstat and
// pvm_exit, the end of a process, and a task leaving the VM (its watchers
// told, its services forgotten).
//
// Example:
//   tasks.DoEnrol(conn, envelope);       // answered now, or once its siblings are known
//   tasks.NoteExit(tid, 0, 0);           // the process ended ...
//   tasks.MaybeFinish(tid);              // ... and once its output is drained, it is gone
#pragma once

#include <optional>
#include <string_view>

#include "control.pb.h"
#include "core/core_context.h"

namespace mpvm {

class TaskService {
 public:
  explicit TaskService(CoreContext& cx) : cx_(cx) {}

  void DoEnrol(ConnId c, const ctl::Envelope& env);
  // pvm_pstat, the task's link port, pvm_exit.
  void OnTaskRequest(ConnId c, Tid who, const ctl::Envelope& env);
  void DoSetOutput(ConnId c, Tid who, const ctl::Envelope& env);
  void DoSignal(ConnId c, ctl::Envelope&& env);
  // A kill or signal from another daemon for a task here (or one that moved on).
  void OnPeerSignal(ctl::Envelope&& env);

  // Bytes a task wrote to its stdout, or its stderr; one stream closed.
  void OnOutput(Tid t, std::string_view bytes, bool is_stderr = false);
  void OnOutputClosed(Tid t);
  // The process ended; MaybeFinish forgets it once its output is drained.
  void NoteExit(Tid t, int exit_code, int term_signal);
  void MaybeFinish(Tid t);
  // pvm_exit or disconnect: it leaves the VM (notify, mailbox, groups).
  void TaskLeftVm(Task& t);

  // Connection `c` closed: was it the embedded VM's owner, a task's, or other?
  enum class Closed { kOther, kOwner, kTask };
  Closed OnConnClosed(ConnId c, const Conn& conn);
  // Halting: SIGTERM to every task but tools and `caller`.
  void SignalAllBut(Tid caller);
  // Fenced: SIGKILL to every task but tools.
  void KillAll();

 private:
  CoreContext& cx_;
  std::optional<ConnId> owner_;  // embedded VM: the tool that started it
};

}  // namespace mpvm
