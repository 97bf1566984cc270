// move.h — one move at its source: who asked, where to, and where it is in
// the state machine of move_state.h.
#pragma once

#include <cstdint>

#include "core/env.h"
#include "core/move_state.h"
#include "mpvm/tid.h"

namespace mpvm {

struct Move {
  uint64_t id = 0;
  Tid tid;
  int dest = 0;
  Tid asker;  // 0: no one waits for the answer (the balancer, the test driver)
  uint64_t asker_rid = 0;
  MoveOrigin origin = MoveOrigin::kClient;
  std::string reason;  // the balancer's, for the log and the trace
  MoveState state = MoveState::kOffered;
  int64_t requested_ns = 0, accepted_ns = 0, frozen_ns = 0;  // monotonic
  int64_t requested_wall_ns = 0;
  int admin_messages = 0;
};

// Advances `mv` by `event` as kMoveTable allows, and logs the step (at info:
// a daemon killed outright leaves its log, and each move's steps in it
// explain what happened). False, and nothing changes, if it does not.
bool AdvanceMove(Move& mv, MoveEvent event, DaemonEnv& log);

}  // namespace mpvm
