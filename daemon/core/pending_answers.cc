#include "pending_answers.h"

namespace mpvm {

template <typename Pred>
std::vector<PendingAnswer> PendingAnswers::TakeIf(Pred pred) {
  std::vector<PendingAnswer> out;
  for (auto it = pending_.begin(); it != pending_.end();) {
    if (pred(it->second)) {
      out.push_back(it->second);
      it = pending_.erase(it);
    } else {
      ++it;
    }
  }
  return out;
}

void PendingAnswers::Forget(Tid asker) {
  TakeIf([&](const PendingAnswer& p) { return p.asker == asker; });
}

std::vector<PendingAnswer> PendingAnswers::Expired(int64_t now) {
  return TakeIf([&](const PendingAnswer& p) { return now > p.deadline_ns; });
}

std::vector<PendingAnswer> PendingAnswers::HostGone(int host) {
  return TakeIf([&](const PendingAnswer& p) { return p.host == host; });
}

}  // namespace mpvm
