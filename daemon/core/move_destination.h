// move_destination.h — a move at its destination daemon (the offer, the
// restore process, the arrival after the commit, a restore that is never
// committed) and, on the master, the registry's side of every commit: where
// the task runs now, moves in transit between members, and a task whose
// source died mid-move (limbo: lost unless it arrives in time).
#pragma once

#include <cstdint>

#include "control.pb.h"
#include "core/core_context.h"

namespace mpvm {

class MoveDestination {
 public:
  explicit MoveDestination(CoreContext& cx) : cx_(cx) {}

  void OnOffer(const FrameHeader& h, const ctl::MigrateOffer& o);
  void OnAbort(const ctl::MigrateAbort& a);
  // A commit: on the master, the registry records it (and tells the new
  // host); at the new host, the copy becomes the task.
  void OnTaskMoved(const ctl::TaskMoved& m);
  // The source died after the commit: this host registers the copy.
  void ClaimArrival(Tid t);
  // Master: a move passing through it between members.
  void NoteTransit(const Frame& f);
  // Each tick: tasks in limbo too long are lost; stale restores are dropped.
  void CheckLimbo();
  void CheckRestores();
  // Host `index` left: copies from it are claimed or given a short deadline.
  void HostGone(int index);
  // The restore process of `t` waits for the image: the source may freeze
  // its task now (the accept goes out).
  void OnRestoreReady(Tid t);
  // The process of `t` ended: if it was a restore not ready yet, the source
  // hears that the move cannot be made (the task runs on there).
  void OnRestoreEnded(Tid t);

 private:
  // The task record of a copy being restored by process `pid`, from host `from`.
  Task RestoringTask(const ctl::MigrateOffer& o, const SpawnSpec& spec, int pid, int from) const;
  void Arrived(Tid t);
  // Answers an offer of task `t`: the accept (code 0) or a refusal.
  void Answer(const Task::PendingAccept& to, Tid t, int code, const std::string& detail);

  static constexpr int64_t kOrphanRestoreNs = 5'000'000'000;  // its source died
  CoreContext& cx_;
};

}  // namespace mpvm
