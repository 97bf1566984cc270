// move_source.h — a move at its source daemon: the request (a client's, the
// balancer's or the test driver's), the offer to the destination, stopping
// the task, the commit, and every way it can fail back to the task running
// on here. Each move follows the state machine of move_state.h; the server
// does the image transfer and reports each step (OnMoveFrozen, MayCommit,
// OnMoveCommitted, OnMoveFailed).
//
// Example:
//   source.RequestBalancerMove(tid, dest, reason);   // no one waits for the answer
//   ... the server reports OnMoveFrozen(tid), then OnMoveCommitted(tid, times)
#pragma once

#include <cstdint>
#include <map>
#include <string>

#include "control.pb.h"
#include "core/core_context.h"
#include "core/forwarding.h"
#include "core/move.h"

namespace mpvm {

class MoveSource {
 public:
  // How long a request that left this host may wait for its answer.
  static constexpr int64_t kMoveAnswerNs = 120'000'000'000;

  MoveSource(CoreContext& cx, Forwarder& forwarder) : cx_(cx), forwarder_(forwarder) {}

  // pvm_migrate / mpvm migrate / the balancer: run the move here if the task
  // is here, else pass the request to where it is.
  void DoMigrate(Tid who, ctl::Envelope&& env);
  void RequestBalancerMove(Tid t, int dest, const std::string& reason = "");
  // A task that enrolled or arrived: the test driver (MPVM_TEST_MOVES) moves it on.
  void MaybeTestMove(const Task& task);
  // A request from this host's task `who` that leaves this host: it is
  // answered once, by the task's host or here (PendingAnswers).
  void ExpectMoveAnswer(Tid who, uint64_t rid, const ctl::MigrateRequest& m);

  void OnAccept(const ctl::MigrateAccept& a);
  void OnMoveFrozen(Tid t);
  void OnMoveFailed(Tid t, const std::string& why, bool pinned, MoveEvent event);
  bool MayCommit(Tid t) const;
  ConnId OnMoveCommitted(Tid t, const MoveTimes& times);
  // Offers unanswered and tasks that do not stop, in time, fail.
  void CheckMoveTimeouts();
  // Host `index` left: moves to it that have not frozen their task fail.
  void HostGone(int index);
  // Task `t` ended: a move that had not stopped it fails.
  void TaskEnded(Tid t);

 private:
  // Why task `task` cannot move now ("" if it can); `lasting`: it never
  // will (the balancer pins it).
  struct Refusal {
    std::string why;
    bool lasting = false;
  };
  Refusal WhyCannotMove(const Task& task) const;
  // The offer to the destination: what it needs to restart the task.
  void FillOffer(const Task& task, uint64_t id, ctl::MigrateOffer* o) const;
  // The address at which this host reaches host `dest`'s daemons: where it
  // connects for a move's image (the restore process listens there only).
  std::string ImageAddr(int dest) const;
  void StartMove(Tid t, int dest, Tid asker, uint64_t asker_rid,
                 MoveOrigin origin = MoveOrigin::kClient, const std::string& reason = "");
  void FinishMove(uint64_t id, int code, const std::string& detail);
  // A move that did not happen: a "move-failed" trace event, and its
  // outcome to the master's load service.
  void ReportFailure(const Move& mv, int code, const std::string& why);
  // The commit's news for the registry; what `t` asked to be told goes with
  // it (taken from this host's notify registry).
  void FillTaskMoved(Tid t, const Move& mv, const MoveTimes& times, ctl::TaskMoved* m);

  CoreContext& cx_;
  Forwarder& forwarder_;
  std::map<uint64_t, Move> moves_;  // by id
  uint64_t next_move_ = 1;
};

}  // namespace mpvm
