// move_state.h — the source side of a migration as an explicit state
// machine: its states, the events that move it on, and the one table that
// says which event is allowed in which state. The daemon's migration code
// holds a MoveState per move and advances it only through Advance(); an
// event the table does not allow (a late answer, a duplicate report) is
// refused, and the caller ignores it. docs/design/migration.md draws the
// table; move_state_test.cc has a test per row.
//
//   kOffered   the destination was asked (MigrateOffer sent)
//   kAccepted  it accepted and started a restore process; the task is asked
//              to stop at its next boundary (or by its signal)
//   kFrozen    the task stopped and is sending its image
//   kCommitted the image is restored there and the commit written: the task
//              runs there now; this host forwards what still comes for it
//   kDone      the move's record is reported (terminal)
//   kFailed    it did not happen; the task runs on here (terminal)
#pragma once

#include <optional>
#include <string_view>

namespace mpvm {

// Who asked for a move: a client (pvm_migrate, mpvm migrate), the balancer,
// or the test driver (MPVM_TEST_MOVES). Only a client waits for an answer.
enum class MoveOrigin { kClient, kBalancer, kTest };

enum class MoveState { kOffered, kAccepted, kFrozen, kCommitted, kDone, kFailed };

enum class MoveEvent {
  kAccepted,         // MigrateAccept with code 0
  kRefused,          // MigrateAccept with an error
  kFrozen,           // the server: the task stopped and handed over
  kRestored,         // the server: the destination restored it; commit written
  kReported,         // the commit's record is logged and traced
  kTaskFailed,       // the task refused (threads, ...) or could not be asked
  kTaskEnded,        // the task ended before it stopped for the move
  kOfferTimeout,     // no answer to the offer in time
  kFreezeTimeout,    // the task did not stop in time
  kDestinationDied,  // the destination host left the VM
};

struct MoveTransition {
  MoveState from;
  MoveEvent event;
  MoveState to;
};

// Every allowed transition; anything else is refused.
inline constexpr MoveTransition kMoveTable[] = {
    {MoveState::kOffered, MoveEvent::kAccepted, MoveState::kAccepted},
    {MoveState::kOffered, MoveEvent::kRefused, MoveState::kFailed},
    {MoveState::kOffered, MoveEvent::kOfferTimeout, MoveState::kFailed},
    {MoveState::kOffered, MoveEvent::kDestinationDied, MoveState::kFailed},
    {MoveState::kOffered, MoveEvent::kTaskEnded, MoveState::kFailed},
    {MoveState::kAccepted, MoveEvent::kFrozen, MoveState::kFrozen},
    {MoveState::kAccepted, MoveEvent::kTaskFailed, MoveState::kFailed},
    {MoveState::kAccepted, MoveEvent::kTaskEnded, MoveState::kFailed},
    {MoveState::kAccepted, MoveEvent::kFreezeTimeout, MoveState::kFailed},
    {MoveState::kAccepted, MoveEvent::kDestinationDied, MoveState::kFailed},
    {MoveState::kFrozen, MoveEvent::kRestored, MoveState::kCommitted},
    {MoveState::kFrozen, MoveEvent::kTaskFailed, MoveState::kFailed},
    {MoveState::kFrozen, MoveEvent::kDestinationDied, MoveState::kFailed},
    {MoveState::kCommitted, MoveEvent::kReported, MoveState::kDone},
};

// The state after `event` in `state`, or nullopt if the table does not
// allow it.
std::optional<MoveState> NextMoveState(MoveState state, MoveEvent event);

// Whether the task still runs here and the move may yet fail back to it.
inline bool MovePending(MoveState s) {
  return s == MoveState::kOffered || s == MoveState::kAccepted || s == MoveState::kFrozen;
}

std::string_view MoveStateName(MoveState s);
std::string_view MoveEventName(MoveEvent e);

}  // namespace mpvm
