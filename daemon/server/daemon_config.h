// daemon_config.h — the core's configuration from mpvmd's options, its host
// file (this host's line: sp=, ep=, wd=; the others are the hosts a master
// starts), its environment and this machine's topology.
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "core/env.h"
#include "hostfile.h"
#include "server/options.h"

namespace mpvm {

// The configuration, or nothing with why in `error`. `opts.ep` takes the
// host file's ep= when not given; `others` gets the host file's other hosts.
std::optional<DaemonConfig> MakeDaemonConfig(ServerOptions& opts, std::string* error,
                                             std::vector<HostSpec>* others);

}  // namespace mpvm
