// settings.h — mpvm's configuration from the environment, read in one
// place, once, into typed fields. Every variable has a type and a default;
// a value that does not parse is an error that names the variable, the
// value and what it takes ("MPVM_DEAD_AFTER=3x: not a number of seconds
// greater than 0"). docs/user-guide.md, "Tuning and diagnostics", lists them.
//
// Not settings, and not here: which VM a process belongs to (MPVM_RUNDIR,
// which prun sets for itself as it starts one: paths.h reads it each time),
// what mpvm hands its own processes (MPVM_TID, MPVM_RANK, MPVM_SIZE,
// MPVM_RESTORE_*), what a program sets for its children as it runs
// (PVM_EXPORT, read at each spawn), and the variables a host file names
// ($HOME in ep=, read when the file is read).
#pragma once

#include <functional>
#include <optional>
#include <string>

#include "mpvm/error.h"

namespace mpvm {

struct Settings {
  // Every process of a VM.
  bool link_encrypt = false;  // MPVM_LINK_ENCRYPT=0|1: encrypt direct task links
  bool debug = false;         // MPVM_DEBUG (set, not 0): the library says why links close
  // Tasks.
  bool direct_links = true;    // MPVM_DIRECT_LINKS=0|1: 0 relays across hosts
  std::optional<int> spin_us;  // MPVM_SPIN_US: how long a receive busy-polls
  std::string daemon;          // MPVM_DAEMON: the mpvmd an embedded VM runs
  // Daemons.
  std::optional<double> dead_after_s;         // MPVM_DEAD_AFTER: failure timeout
  std::optional<double> balance_period_s;     // MPVM_BALANCE_PERIOD
  std::optional<double> balance_residency_s;  // MPVM_BALANCE_RESIDENCY
  std::string log_level;                      // MPVM_LOG_LEVEL ("": info)
  bool keep_log = false;                      // MPVM_KEEP_LOG (set, not 0): keep mpvmd.log
  std::string fault;                          // MPVM_FAULT: a fault to inject (tests)
  int test_moves = 0;                         // MPVM_TEST_MOVES: moves a test asks for
  int spares = 2;                             // MPVM_SPARES: spare processes kept per program
  bool cpu_limit_duty = false;                // MPVM_CPU_LIMIT=duty
  bool emulate_loopback = false;              // MPVM_EMULATE=loopback
  std::string emulate_link;                   // MPVM_EMULATE_LINK: a tc rate ("100mbit")
  std::string rsh;                            // MPVM_RSH, else PVM_RSH ("": ssh)
  std::string tmp = "/tmp";                   // PVM_TMP: pvmgettmp()'s directory
};

// Whose settings are checked: a task's library leaves the daemon's own to
// mpvmd (a bad one keeps its default there); mpvmd checks them all.
enum class SettingsFor { kTask, kDaemon };

// Reads the settings through `lookup` (getenv by default). The first bad
// value (of `who`'s) is the error.
using EnvLookup = std::function<const char*(const char*)>;
mpvm::expected<Settings, std::string> ReadSettings(const EnvLookup& lookup,
                                                   SettingsFor who = SettingsFor::kDaemon);

// This process's settings, read from its environment at the first call and
// kept. Programs check them at start: mpvmd exits with the error, a task's
// first PVM call (and so prun's and the console's) fails with it.
const mpvm::expected<Settings, std::string>& ProcessSettings(SettingsFor who);
// ProcessSettings(kTask) when it holds settings, else the defaults.
const Settings& CurrentSettings();

}  // namespace mpvm
