#include "move_state.h"

namespace mpvm {

std::optional<MoveState> NextMoveState(MoveState state, MoveEvent event) {
  for (const auto& t : kMoveTable)
    if (t.from == state && t.event == event) return t.to;
  return std::nullopt;
}

std::string_view MoveStateName(MoveState s) {
  switch (s) {
    case MoveState::kOffered:
      return "offered";
    case MoveState::kAccepted:
      return "accepted";
    case MoveState::kFrozen:
      return "frozen";
    case MoveState::kCommitted:
      return "committed";
    case MoveState::kDone:
      return "done";
    case MoveState::kFailed:
      return "failed";
  }
  return "?";
}

std::string_view MoveEventName(MoveEvent e) {
  switch (e) {
    case MoveEvent::kAccepted:
      return "accepted";
    case MoveEvent::kRefused:
      return "refused";
    case MoveEvent::kFrozen:
      return "frozen";
    case MoveEvent::kRestored:
      return "restored";
    case MoveEvent::kReported:
      return "reported";
    case MoveEvent::kTaskFailed:
      return "task failed";
    case MoveEvent::kTaskEnded:
      return "task ended";
    case MoveEvent::kOfferTimeout:
      return "offer timeout";
    case MoveEvent::kFreezeTimeout:
      return "freeze timeout";
    case MoveEvent::kDestinationDied:
      return "destination died";
  }
  return "?";
}

}  // namespace mpvm
