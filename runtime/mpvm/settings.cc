// settings.cc — see settings.h. One table: each variable, what it takes, and
// where it goes.
#include "mpvm/settings.h"

#include <fmt/format.h>

#include <charconv>
#include <cstdlib>
#include <string_view>

namespace mpvm {

namespace {

using Set = std::function<bool(Settings&, std::string_view)>;

struct Var {
  const char* name;
  const char* takes;  // for the error: what a good value is
  Set set;
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

Set Text(std::string Settings::*field) {
  return [=](Settings& s, std::string_view v) {
    s.*field = std::string(v);
    return true;
  };
}

const Var kVars[] = {
    {"MPVM_LINK_ENCRYPT", "0 or 1", Switch(&Settings::link_encrypt)},
    {"MPVM_DEBUG", "0 or 1", Switch(&Settings::debug)},
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
     Seconds(&Settings::dead_after_s, 0, false)},
    {"MPVM_BALANCE_PERIOD", "a number of seconds greater than 0",
     Seconds(&Settings::balance_period_s, 0, false)},
    {"MPVM_BALANCE_RESIDENCY", "a number of seconds, 0 or more",
     Seconds(&Settings::balance_residency_s, 0, true)},
    {"MPVM_LOG_LEVEL", "trace, debug, info, warn, error, critical or off",
     [](Settings& s, std::string_view v) {
       for (std::string_view l : {"trace", "debug", "info", "warn", "error", "critical", "off"})
         if (v == l) {
           s.log_level = std::string(v);
           return true;
         }
       return false;
     }},
    {"MPVM_KEEP_LOG", "0 or 1", Switch(&Settings::keep_log)},
    {"MPVM_FAULT", "exit-on-STEP or kill-task-on-STEP",
     [](Settings& s, std::string_view v) {
       if (!v.starts_with("exit-on-") && !v.starts_with("kill-task-on-")) return false;
       s.fault = std::string(v);
       return true;
     }},
    {"MPVM_TEST_MOVES", "a whole number, 0 or more",
     [](Settings& s, std::string_view v) { return Integer(v, s.test_moves) && s.test_moves >= 0; }},
    {"MPVM_CPU_LIMIT", "duty",
     [](Settings& s, std::string_view v) { return (s.cpu_limit_duty = v == "duty"); }},
    {"MPVM_EMULATE", "loopback",
     [](Settings& s, std::string_view v) { return (s.emulate_loopback = v == "loopback"); }},
    {"MPVM_EMULATE_LINK", "a rate as tc writes it, for example 100mbit or 1gbit",
     [](Settings& s, std::string_view v) {
       size_t digits = 0;
       while (digits < v.size() && ((v[digits] >= '0' && v[digits] <= '9') || v[digits] == '.'))
         ++digits;
       const std::string_view unit = v.substr(digits);
       if (digits == 0 || (unit != "bit" && unit != "kbit" && unit != "mbit" && unit != "gbit"))
         return false;
       s.emulate_link = std::string(v);
       return true;
     }},
    {"PVM_TMP", "a directory", Text(&Settings::tmp)},
    {"PVM_RSH", "a command", Text(&Settings::rsh)},
    {"MPVM_RSH", "a command", Text(&Settings::rsh)},  // after PVM_RSH: it wins
};

}  // namespace

mpvm::expected<Settings, std::string> ReadSettings(const EnvLookup& lookup) {
  Settings s;
  for (const Var& var : kVars) {
    const char* v = lookup(var.name);
    if (v == nullptr || *v == '\0') continue;  // unset or empty: the default
    if (!var.set(s, v))
      return mpvm::unexpected(fmt::format("{}={}: not {}", var.name, v, var.takes));
  }
  return s;
}

const mpvm::expected<Settings, std::string>& ProcessSettings() {
  static const auto settings = ReadSettings([](const char* n) { return std::getenv(n); });
  return settings;
}

const Settings& CurrentSettings() {
  static const Settings defaults;
  const auto& s = ProcessSettings();
  return s ? *s : defaults;
}

}  // namespace mpvm
