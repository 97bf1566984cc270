// settings.cc — see settings.h. One table: each variable, what it takes, and
// where it goes.
#include "mpvm/settings.h"

#include <fmt/format.h>

#include <charconv>
#include <cstdlib>
#include <regex>
#include <string_view>

namespace mpvm {

namespace {

using Set = std::function<bool(Settings&, std::string_view)>;

struct Var {
  const char* name;
  const char* takes;  // for the error: what a good value is
  Set set;
  bool daemon_only = false;  // a task's library leaves a bad value to mpvmd
};

bool Number(std::string_view v, double& out) {
  const auto r = std::from_chars(v.data(), v.data() + v.size(), out);
  return r.ec == std::errc() && r.ptr == v.data() + v.size();
}

bool Integer(std::string_view v, int& out) {
  const auto r = std::from_chars(v.data(), v.data() + v.size(), out);
  return r.ec == std::errc() && r.ptr == v.data() + v.size();
}

// Seconds above `min` (or at least `min` when `or_equal`).
Set Seconds(std::optional<double> Settings::*field, double min, bool or_equal) {
  return [=](Settings& s, std::string_view v) {
    double x = 0;
    if (!Number(v, x) || x < min || (!or_equal && x == min) || x > 1e6) return false;
    s.*field = x;
    return true;
  };
}

Set Switch(bool Settings::*field) {
  return [=](Settings& s, std::string_view v) {
    if (v != "0" && v != "1") return false;
    s.*field = v == "1";
    return true;
  };
}

// Set means on, as these always were; "0" is off.
Set On(bool Settings::*field) {
  return [=](Settings& s, std::string_view v) {
    s.*field = v != "0";
    return true;
  };
}

Set Text(std::string Settings::*field) {
  return [=](Settings& s, std::string_view v) {
    s.*field = std::string(v);
    return true;
  };
}

const Var kVars[] = {
    {"MPVM_LINK_ENCRYPT", "0 or 1", Switch(&Settings::link_encrypt)},
    {"MPVM_DEBUG", "0 or 1", On(&Settings::debug)},
    {"MPVM_DIRECT_LINKS", "0 or 1", Switch(&Settings::direct_links)},
    {"MPVM_SPIN_US", "a whole number of microseconds, 0 to 1000000",
     [](Settings& s, std::string_view v) {
       int us = 0;
       if (!Integer(v, us) || us < 0 || us > 1'000'000) return false;
       s.spin_us = us;
       return true;
     }},
    {"MPVM_DAEMON", "the path of an mpvmd", Text(&Settings::daemon)},
    {"MPVM_DEAD_AFTER", "a number of seconds greater than 0",
     Seconds(&Settings::dead_after_s, 0, false), true},
    {"MPVM_BALANCE_PERIOD", "a number of seconds greater than 0",
     Seconds(&Settings::balance_period_s, 0, false), true},
    {"MPVM_BALANCE_RESIDENCY", "a number of seconds, 0 or more",
     Seconds(&Settings::balance_residency_s, 0, true), true},
    {"MPVM_LOG_LEVEL", "trace, debug, info, warn, error, critical or off",
     [](Settings& s, std::string_view v) {
       for (std::string_view l :
            {"trace", "debug", "info", "warn", "warning", "error", "err", "critical", "off"})
         if (v == l) {
           s.log_level = std::string(v);
           return true;
         }
       return false;
     },
     true},
    {"MPVM_KEEP_LOG", "0 or 1", On(&Settings::keep_log), true},
    {"MPVM_FAULT", "exit-on-STEP or kill-task-on-STEP",
     [](Settings& s, std::string_view v) {
       if (!v.starts_with("exit-on-") && !v.starts_with("kill-task-on-")) return false;
       s.fault = std::string(v);
       return true;
     },
     true},
    {"MPVM_TEST_MOVES", "a whole number, 0 or more",
     [](Settings& s, std::string_view v) { return Integer(v, s.test_moves) && s.test_moves >= 0; },
     true},
    {"MPVM_SPARES", "a whole number from 0 to 16",
     [](Settings& s, std::string_view v) {
       return Integer(v, s.spares) && s.spares >= 0 && s.spares <= 16;
     },
     true},
    {"MPVM_CPU_LIMIT", "duty",
     [](Settings& s, std::string_view v) { return (s.cpu_limit_duty = v == "duty"); }, true},
    {"MPVM_EMULATE", "loopback",
     [](Settings& s, std::string_view v) { return (s.emulate_loopback = v == "loopback"); }, true},
    {"MPVM_EMULATE_LINK", "a rate as tc writes it, for example 100mbit or 1gbit",
     [](Settings& s, std::string_view v) {
       static const std::regex kRate("[0-9]+(\\.[0-9]+)?(bit|kbit|mbit|gbit)");
       if (!std::regex_match(v.begin(), v.end(), kRate)) return false;
       s.emulate_link = std::string(v);
       return true;
     },
     true},
    {"PVM_TMP", "a directory", Text(&Settings::tmp)},
    {"PVM_RSH", "a command", Text(&Settings::rsh)},
    {"MPVM_RSH", "a command", Text(&Settings::rsh)},  // after PVM_RSH: it wins
};

}  // namespace

mpvm::expected<Settings, std::string> ReadSettings(const EnvLookup& lookup, SettingsFor who) {
  Settings s;
  std::string error;
  for (const Var& var : kVars) {
    const char* v = lookup(var.name);
    if (v == nullptr || *v == '\0') continue;  // unset or empty: the default
    if (var.set(s, v) || !error.empty()) continue;
    // Another process's setting (a daemon's, in a task) keeps its default.
    if (who == SettingsFor::kDaemon || !var.daemon_only)
      error = fmt::format("{}={}: not {}", var.name, v, var.takes);
  }
  if (!error.empty()) return mpvm::unexpected(error);
  return s;
}

const mpvm::expected<Settings, std::string>& ProcessSettings(SettingsFor who) {
  static const auto lookup = [](const char* n) { return std::getenv(n); };
  static const auto task = ReadSettings(lookup, SettingsFor::kTask);
  static const auto daemon = ReadSettings(lookup, SettingsFor::kDaemon);
  return who == SettingsFor::kDaemon ? daemon : task;
}

const Settings& CurrentSettings() {
  static const Settings defaults;
  const auto& s = ProcessSettings(SettingsFor::kTask);
  return s ? *s : defaults;
}

}  // namespace mpvm
