// paths.h — where a VM keeps its sockets and files on this host.
//
// One VM per user per runtime directory, as PVM used /tmp/pvmd.<uid>:
//   $MPVM_RUNDIR if set, else /tmp/mpvm.<uid>
// The directory is created with mode 0700 and refused if another user owns it
// or others can enter it, so same-host sockets are private to the user.
#pragma once

#include <string>

#include "mpvm/error.h"
#include "mpvm/tid.h"

namespace mpvm {

std::string RunDir();
// Creates RunDir() if needed and checks owner and mode. On failure returns a
// sentence saying what is wrong and how to fix it.
mpvm::expected<void, std::string> EnsureRunDir(const std::string& dir);

std::string DaemonSocketPath(const std::string& dir);
std::string DaemonLockPath(const std::string& dir);
std::string DaemonLogPath(const std::string& dir);
// Virtual-work mode: the host's speed and how many tasks work ("600 3\n").
std::string VirtualCpuPath(const std::string& dir);
std::string TaskSocketPath(const std::string& dir, Tid tid);

// PVM's architecture name for this host.
inline constexpr const char* kArch = "LINUX64";

// Directory of the running executable (readlink /proc/self/exe), "" if unknown.
std::string SelfExeDir();

}  // namespace mpvm
