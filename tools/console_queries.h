// console_queries.h — the console's commands about tasks, hosts and the
// mailbox, as PVM 3.4's console has them: mstat, pstat, sig, reset, put
// and names. Results print as PVM's console prints them; errors go to
// stderr with what to do.
#pragma once

#include <string>
#include <vector>

#include "mpvm/task_runtime.h"

namespace mpvm::console {

// Runs `w` if it is one of these commands (and returns true); *status is 1
// if something failed, 2 for a usage error.
bool RunQuery(const std::vector<std::string>& w, TaskRuntime& rt, int* status);

// A task id as the console takes it: hex, with or without a leading 't'.
// 0 if it is none.
int ParseTid(const std::string& s);

}  // namespace mpvm::console
