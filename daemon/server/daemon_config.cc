#include "server/daemon_config.h"

#include <fmt/format.h>
#include <limits.h>
#include <spdlog/spdlog.h>
#include <stdlib.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <sstream>

#include "mpvm/paths.h"
#include "server/host_speed.h"
#include "server/host_topology.h"

extern char** environ;

namespace mpvm {
namespace {

// Logs once, at info, each PVM host file option that mpvm accepts but does
// not act on (bx=, id=).
void NoteOptionsWithoutEffect(const std::vector<HostSpec>& hosts, std::string_view origin) {
  bool bx = false, id = false;
  for (const auto& h : hosts) {
    bx = bx || !h.debugger.empty();
    id = id || !h.vmid.empty();
  }
  if (bx) spdlog::info("{}: bx= (debugger) is accepted and has no effect in mpvm", origin);
  if (id)
    spdlog::info(
        "{}: id= (virtual machine id) is accepted and has no effect: mpvm keeps virtual "
        "machines apart by MPVM_RUNDIR",
        origin);
}

// This host's name up to its first dot ("localhost" if it has none).
std::string ShortHostname() {
  char hn[256] = {};
  gethostname(hn, sizeof hn - 1);
  std::string h = hn;
  if (auto dot = h.find('.'); dot != std::string::npos) h.resize(dot);
  return h.empty() ? "localhost" : h;
}

// The hosts of a PVM host file, its options without effect noted in the log.
mpvm::expected<std::vector<HostSpec>, std::string> ReadHostfile(const std::string& path) {
  std::ifstream in(path);
  if (!in)
    return mpvm::unexpected(
        fmt::format("cannot read host file {}: {}", path, std::strerror(errno)));
  std::stringstream text;
  text << in.rdbuf();
  auto hosts = ParseHostfile(text.str(), path);
  if (!hosts) return mpvm::unexpected(hosts.error().message);
  NoteOptionsWithoutEffect(*hosts, path);
  return *hosts;
}

}  // namespace

std::optional<DaemonConfig> MakeDaemonConfig(ServerOptions& opts, std::string* error,
                                             std::vector<HostSpec>* others) {
  DaemonConfig cfg;
  cfg.rundir = opts.rundir;
  cfg.embedded = opts.embedded;
  cfg.hostname = opts.hostname.empty() ? ShortHostname() : opts.hostname;
  std::optional<HostSpec> self_spec;
  if (!opts.hostfile.empty()) {
    auto hosts = ReadHostfile(opts.hostfile);
    if (!hosts) {
      *error = hosts.error();
      return std::nullopt;
    }
    self_spec = FindSelf(*hosts, cfg.hostname);
    for (const auto& h : *hosts)
      if (!self_spec || h.line != self_spec->line) others->push_back(h);
  }
  if (self_spec) {
    cfg.speed = self_spec->speed;
    if (opts.ep.empty()) opts.ep = self_spec->ep;
    cfg.workdir = self_spec->wd;
  }
  if (!opts.wd.empty()) cfg.workdir = opts.wd;
  std::string exe_dir = SelfExeDir();
  char real[PATH_MAX];
  if (!exe_dir.empty() && realpath((exe_dir + "/../lib").c_str(), real) != nullptr)
    cfg.libdir = real;
  for (char** e = environ; *e != nullptr; ++e) {
    std::string kv = *e;
    if (kv.rfind("MPVM_TID=", 0) == 0) continue;
    cfg.base_env.push_back(kv);
  }
  if (opts.speed > 0) cfg.speed = opts.speed;
  const bool speed_given = opts.speed > 0 || (self_spec && self_spec->speed_given);
  if (!speed_given && !opts.emulate_speed && !opts.virtual_work) {
    cfg.speed = CalibrateHostSpeed();
    spdlog::info("this host's speed, measured: sp={} (--speed or a host file's sp= sets it)",
                 cfg.speed);
  }
  std::string why;
  cfg.cores = ReadHostTopology(&why).cores;
  if (!why.empty()) spdlog::warn("cannot read this host's topology ({}); counting one core", why);
  cfg.dead_after_ns = static_cast<int64_t>(opts.dead_after_s * 1e9);
  cfg.test_moves = opts.test_moves;
  cfg.placement = opts.placement;
  cfg.balance = opts.balance == "on";
  cfg.balance_period_ns = static_cast<int64_t>(opts.balance_period_s * 1e9);
  cfg.balance_min_age_ns = static_cast<int64_t>(opts.balance_residency_s * 1e9);
  cfg.balance_min_residency_ns = cfg.balance_min_age_ns;
  cfg.heartbeat_ns = static_cast<int64_t>(opts.heartbeat_s * 1e9);
  cfg.member = !opts.join.empty();
  return cfg;
}

}  // namespace mpvm
