// pending_answers.h — requests that this daemon's tasks wait on from other
// hosts (moves, today), so that each is answered exactly once: by the real
// answer, or, when the host that had to answer leaves the virtual machine or
// the bound passes, by this daemon with the reason.
//
// The daemon notes a request when its task asks, clears it when the answer
// reaches the task, and answers what Expired() and HostGone() return. No
// I/O; the time comes with each call.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <utility>
#include <vector>

#include "mpvm/tid.h"

namespace mpvm {

struct PendingAnswer {
  Tid asker;
  uint64_t rid = 0;
  Tid subject;   // the task the request is about
  int host = 0;  // the host that must answer (where the subject ran)
  int64_t deadline_ns = 0;
};

class PendingAnswers {
 public:
  void Expect(const PendingAnswer& p) { pending_[{p.asker.raw(), p.rid}] = p; }
  // The answer to (asker, rid) reached the asker.
  void Answered(Tid asker, uint64_t rid) { pending_.erase({asker.raw(), rid}); }
  // The asker left this host (it ended, or moved away): its requests go.
  void Forget(Tid asker);
  // Requests past their deadline, and those whose host left: removed and
  // returned, for the daemon to answer.
  std::vector<PendingAnswer> Expired(int64_t now);
  std::vector<PendingAnswer> HostGone(int host);
  bool empty() const { return pending_.empty(); }

 private:
  template <typename Pred>
  std::vector<PendingAnswer> TakeIf(Pred pred);

  std::map<std::pair<int, uint64_t>, PendingAnswer> pending_;
};

}  // namespace mpvm
