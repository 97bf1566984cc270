// forwarding.h — what a move's source keeps after the commit: the move's
// record (logged and traced once the commit is done), the frames it still
// forwards to where the task is now, and the task links it held here, read
// by this daemon and forwarded until they close (DEMOS/MP's forwarding
// address, with the link update done by kMoved on each link).
#pragma once

#include <cstdint>
#include <string>
#include <unordered_map>

#include "core/core_context.h"
#include "core/move.h"

namespace mpvm {

struct Forwarding {
  uint64_t move_id = 0;
  int event_sink = 0;
  Move move;  // for its record
  MoveTimes times;
  std::string to;
  int64_t commit_wall_ns = 0, commit_ns = 0;
  uint64_t forwarded = 0;
  int link_updates = 0, open_links = 0, encrypted_links = 0;
  bool reported = false;
};

class Forwarder {
 public:
  explicit Forwarder(CoreContext& cx) : cx_(cx) {}

  // Task `t` was committed elsewhere: its record starts.
  void Begin(Tid t, Forwarding rec);
  // A frame that was on its way to `t` when it moved: sent on to where it is now.
  void Reroute(Tid t, Frame&& f);
  // `c` is a task link that `t` had, now read by this daemon.
  void OnForwardLink(ConnId c, Tid t, bool encrypted);
  // A frame for `tid` that came here and went on.
  void Forwarded(int tid);
  // One of the links `tid` held here closed.
  void LinkClosed(int tid);
  // Everything of the commit is handed on: the record is logged and traced.
  void OnCommitDone(Tid t);
  // Its held links are closed, or it ended: the last event of its record.
  void EndForwarding(int tid);
  size_t size() const { return forwarding_.size(); }

 private:
  CoreContext& cx_;
  std::unordered_map<int, Forwarding> forwarding_;
};

}  // namespace mpvm
