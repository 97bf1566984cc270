#include "core/move.h"

#include <fmt/format.h>

namespace mpvm {

bool AdvanceMove(Move& mv, MoveEvent event, DaemonEnv& log) {
  auto next = NextMoveState(mv.state, event);
  if (!next) {
    log.Debug(fmt::format("move {:x}: '{}' in state {} ignored", mv.id, MoveEventName(event),
                          MoveStateName(mv.state)));
    return false;
  }
  log.Info(fmt::format("move {:x} of {}: {} -> {} ({})", mv.id, mv.tid.str(),
                       MoveStateName(mv.state), MoveStateName(*next), MoveEventName(event)));
  mv.state = *next;
  return true;
}

}  // namespace mpvm
