// mpvmd — the mpvm daemon: one per host, serving the tasks of a virtual machine.
#include <spdlog/sinks/basic_file_sink.h>
#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>

#include <CLI/CLI.hpp>
#include <cstdio>
#include <cstdlib>

#include "mpvm/paths.h"
#include "mpvm/settings.h"
#include "server/server.h"

namespace {

// The command line's options, with defaults from the environment (a flag
// overrides): MPVM_BALANCE_PERIOD and MPVM_BALANCE_RESIDENCY (seconds) scale
// the balancer's clock for a VM prun starts (the benchmarks), and
// MPVM_DEAD_AFTER lets a whole VM, started by the console or
// prun, use a longer failure timeout.
void Describe(CLI::App& app, mpvm::ServerOptions& opts, std::string& level,
              const mpvm::Settings& env) {
  if (env.balance_period_s) opts.balance_period_s = *env.balance_period_s;
  if (env.balance_residency_s) opts.balance_residency_s = *env.balance_residency_s;
  if (env.dead_after_s) opts.dead_after_s = *env.dead_after_s;
  opts.fault = env.fault;
  if (env.cpu_limit_duty) opts.cpu_limit_mode = "duty";
  opts.test_moves = env.test_moves;
  opts.spares = env.spares;
  if (!env.log_level.empty()) level = env.log_level;
  app.add_option("--rundir", opts.rundir, "runtime directory of this virtual machine")
      ->capture_default_str();
  app.add_option("--ready-fd", opts.ready_fd, "write 'ok' here once serving (used by starters)");
  app.add_flag("--embedded", opts.embedded,
               "halt when the tool that started the daemon disconnects (prun)");
  app.add_option("--hostname", opts.hostname, "name this host reports");
  app.add_option("--ep", opts.ep,
                 "colon-separated directories to search for spawned programs (PVM's ep=)");
  app.add_option("hostfile,--hostfile", opts.hostfile,
                 "PVM host file; this host's line sets its speed (sp=), program path (ep=) "
                 "and working directory (wd=)")
      ->check(CLI::ExistingFile);
  app.add_option("--wd", opts.wd, "working directory of spawned tasks (PVM's wd=)");
  app.add_option("--speed", opts.speed, "this host's relative speed (default 1000)")
      ->check(CLI::Range(1, 1000000));
  app.add_option(
         "--placement", opts.placement,
         "where spawned tasks go: round-robin (PVM's) or speed-aware (by speed / (load + 1))")
      ->check(CLI::IsMember({"round-robin", "speed-aware"}))
      ->capture_default_str();
  app.add_option("--balance", opts.balance,
                 "the balancer: move running tasks to hosts where they finish sooner (on/off; "
                 "`mpvm balance on|off` switches it on a running VM)")
      ->check(CLI::IsMember({"on", "off"}))
      ->capture_default_str();
  app.add_option("--balance-period", opts.balance_period_s, "seconds between balancer decisions")
      ->check(CLI::Range(0.05, 3600.0))
      ->capture_default_str();
  app.add_option("--balance-residency", opts.balance_residency_s,
                 "seconds a task runs after its spawn or last move before the balancer may move it")
      ->check(CLI::Range(0.0, 3600.0))
      ->capture_default_str();
  app.add_option("--log-level", level, "trace, debug, info, warn, error")->capture_default_str();
}

// The options of an emulated host (the master gives them to those it starts).
void DescribeEmulation(CLI::App& app, mpvm::ServerOptions& opts) {
  app.add_flag("--virtual-work", opts.virtual_work,
               "an emulated host in virtual-work mode: mpvm_work advances at speed / (tasks "
               "working) and uses no CPU (emulated hosts this master starts get it too)");
  app.add_option("--emulate-cpu", opts.emulate_cpu,
                 "with --emulate-speed of 1000 or less: run this host's tasks on this CPU only "
                 "(the master picks one for each emulated host it starts)")
      ->check(CLI::Range(0, 4095));
  app.add_option("--hash-cache", opts.hash_cache,
                 "share this file hash cache of the tasks' mapped files (the emulated hosts a "
                 "master starts share its own)");
  app.add_flag("--emulated", opts.emulated,
               "an emulated host on a machine shared with others (the master starts them with "
               "it): its background load is what runs in its CPU group, not the machine's");
  app.add_flag("--emulate-speed", opts.emulate_speed,
               "an emulated host: give this host's tasks together speed/1000 of one CPU of this "
               "machine (a cgroup CPU quota, else SIGSTOP/SIGCONT duty cycling)");
}

// The options of a multi-host VM.
void DescribeHosts(CLI::App& app, mpvm::ServerOptions& opts) {
  app.add_option("--listen", opts.listen,
                 "be the master of a multi-host VM: accept daemons at ADDR:PORT (port 0: any)");
  app.add_option("--join", opts.join, "join the VM whose master listens at ADDR:PORT");
  app.add_option("--key", opts.key,
                 "the VM key file (mode 0600); the master makes one if absent. A member given "
                 "`-` reads the key from standard input");
  app.add_option("--dead-after", opts.dead_after_s,
                 "seconds of silence after which a host is declared dead")
      ->check(CLI::Range(0.2, 3600.0))
      ->capture_default_str();
  app.add_option("--heartbeat", opts.heartbeat_s, "seconds between heartbeats")
      ->check(CLI::Range(0.05, 600.0))
      ->capture_default_str();
}

// The log: stderr for an embedded daemon (quiet unless asked), else the
// runtime directory's mpvmd.log.
void SetUpLog(const mpvm::ServerOptions& opts, std::string level) {
  std::shared_ptr<spdlog::logger> log;
  if (opts.embedded) {
    log = spdlog::stderr_color_mt("mpvmd");
    if (level == "info") level = "warn";  // keep prun's terminal quiet
  } else if (auto r = mpvm::EnsureRunDir(opts.rundir); r) {
    log = spdlog::basic_logger_mt("mpvmd", mpvm::DaemonLogPath(opts.rundir));
  } else {
    log = spdlog::stderr_color_mt("mpvmd");
  }
  log->set_level(spdlog::level::from_str(level));
  log->flush_on(spdlog::level::info);
  spdlog::set_default_logger(log);
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{
      "mpvmd: the mpvm daemon. Usually started for you by prun, the mpvm console "
      "or pvm_start_pvmd()."};
  const auto& settings = mpvm::ProcessSettings(mpvm::SettingsFor::kDaemon);
  if (!settings) {
    std::fprintf(stderr, "mpvmd: %s\n", settings.error().c_str());
    return 2;
  }
  mpvm::ServerOptions opts;
  opts.rundir = mpvm::RunDir();
  std::string level = "info";
  Describe(app, opts, level, *settings);
  DescribeHosts(app, opts);
  DescribeEmulation(app, opts);
  CLI11_PARSE(app, argc, argv);
  SetUpLog(opts, level);
  mpvm::Server server(opts);
  return server.Run();
}
