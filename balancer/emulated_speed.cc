#include "emulated_speed.h"

#include <fmt/format.h>

#include <algorithm>

namespace mpvm::balancer {

int EmulatedSpeedRoom(int cpus) { return 1000 * std::max(1, cpus) - 400; }

bool EmulatedSpeedsFit(int total, int cpus, std::string* warning) {
  const int room = EmulatedSpeedRoom(cpus);
  if (total <= room) return true;
  *warning = fmt::format(
      "the emulated hosts' speeds add up to {}, more than this machine's {} CPU{} can give "
      "while leaving room for the daemons ({}; 1000 is one CPU): hosts will run slower than "
      "their speeds say, and measurements will lie. Lower the speeds or use fewer hosts",
      total, cpus, cpus == 1 ? "" : "s", room);
  return false;
}

}  // namespace mpvm::balancer
