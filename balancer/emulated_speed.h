// emulated_speed.h — whether a set of emulated hosts fits on this machine.
// An emulated host of speed S gets S/1000 of one CPU here (the daemon
// enforces it: daemon/server/cpu_limit.h). Where the speeds add up to more
// than the machine can give, with room left for the daemons and tools, the
// hosts run slower than their speeds say and every measurement lies.
#pragma once

#include <string>

namespace mpvm::balancer {

// The sp= units the emulated hosts may add up to on `cpus` CPUs: all but
// 0.4 CPU (on 2 CPUs, 1600), the daemons' and tools' headroom.
int EmulatedSpeedRoom(int cpus);

// Whether `total` fits in EmulatedSpeedRoom(cpus); if not, `*warning` says
// so and what to do.
bool EmulatedSpeedsFit(int total, int cpus, std::string* warning);

}  // namespace mpvm::balancer
