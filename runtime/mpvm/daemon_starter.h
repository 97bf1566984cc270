// daemon_starter.h — starting a local mpvmd from a task, prun or the console.
#pragma once

#include <sys/types.h>

#include <string>
#include <vector>

#include "mpvm/error.h"

namespace mpvm {

// True if a daemon answers on `rundir`'s socket.
bool DaemonRunning(const std::string& rundir);

// Starts mpvmd for `rundir` and returns once it serves (it reports readiness
// through a pipe; no polling). With `embedded`, the daemon is this process's
// child and halts when its owner disconnects; otherwise it is detached.
// Errors: kDupHost (one already runs), kCantStart (the reason is printed).
Result<pid_t> StartDaemon(const std::string& rundir, const std::vector<std::string>& args,
                          bool embedded);

// Path of the mpvmd executable: $MPVM_DAEMON, beside the running program,
// beside the library (../bin), or on PATH.
std::string FindDaemonBinary();

}  // namespace mpvm
