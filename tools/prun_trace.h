// prun_trace.h — a run's daemon events as a Chrome / Perfetto trace
// (prun --trace FILE).
//
// The daemons send prun JSON events (start, end, migration, resumed,
// forwarding); ChromeTrace turns them into the Trace Event format: one
// process per host, one thread per task, a task's time on each host as a
// slice, each migration as a slice on the source host (the blackout) with all
// its numbers, and an arrow to where the task resumed. Pure: no I/O.
#pragma once

#include <nlohmann/json.hpp>
#include <vector>

namespace mpvm::prun {

nlohmann::json ChromeTrace(const std::vector<nlohmann::json>& events);

}  // namespace mpvm::prun
