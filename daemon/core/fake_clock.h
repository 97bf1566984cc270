// fake_clock.h — a Clock for tests: it says what the test set, and moves
// only when the test moves it.
#pragma once

#include "core/env.h"

namespace mpvm {

class FakeClock : public virtual Clock {
 public:
  int64_t WallNs() override { return wall_ns; }
  int64_t wall_ns = 1'700'000'000'000'000'000;  // any fixed instant
};

}  // namespace mpvm
