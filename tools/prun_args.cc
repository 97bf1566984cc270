#include "prun_args.h"

#include <CLI/CLI.hpp>
#include <algorithm>
#include <cctype>
#include <cstdio>
#include <cstdlib>
#include <sstream>

namespace mpvm::prun {
namespace {

constexpr const char* kUsage = "prun [OPTIONS] PROGRAM [ARGS...]";

void Describe(CLI::App& app, PrunOptions& o, std::string& hosts) {
  app.footer(
      "Everything after PROGRAM (or after --) is passed to it unchanged. Tasks get this "
      "environment on this host; -x exports a variable to every host.");
  app.set_version_flag("--version", "prun (mpvm 0.1.0), PVM 3.4.6 API");
  app.add_option("PROGRAM", o.command, "the program, then its arguments (passed unchanged)");
  app.add_option("-n,--np", o.ntask, "number of instances (also -np N)")
      ->check(CLI::Range(1, 4096));
  app.add_option("--tag-output", o.tag_mode, "prefix of output lines: none, tid or rank")
      ->check(CLI::IsMember({"tid", "rank", "none"}))
      ->capture_default_str();
  app.add_flag("--verbose", o.verbose, "say what prun does (VM start, spawn, exits)");
  app.add_option("--host", o.where, "run on this host only (PvmTaskHost)");
  auto* file =
      app.add_option("--hostfile", o.hostfile,
                     "start a virtual machine of the hosts in this PVM host file for this job");
  app.add_option("--hosts", hosts,
                 "start emulated hosts of these speeds on this machine for this job, e.g. "
                 "'a:600,b:600,c:200' (1000 is one CPU here, enforced; the first host is prun's)")
      ->excludes(file);
  app.add_option("--cpu", o.cpu,
                 "how --hosts give their speeds: real (a CPU limit) or virtual (mpvm_work "
                 "advances at speed / tasks working, using no CPU: for many hosts)")
      ->check(CLI::IsMember({"real", "virtual"}))
      ->capture_default_str();
  app.add_option("--balance", o.balance,
                 "the balancer (on/off): move running tasks to hosts where they finish sooner. "
                 "A VM prun starts has it off unless given; on a running VM it switches it")
      ->check(CLI::IsMember({"on", "off"}));
  app.add_option("-x", o.exports, "export VAR (or VAR=VALUE) to the tasks on every host")
      ->allow_extra_args(false);
  app.add_option("--stdin", o.stdin_mode,
                 "who reads prun's standard input, a terminal too: rank0 (the others read "
                 "end-of-file; rank 0 then cannot move) or none")
      ->check(CLI::IsMember({"rank0", "none"}))
      ->capture_default_str();
  app.add_flag("--progress", o.progress,
               "a one-line status on stderr, refreshed each second: tasks running and done, "
               "moves, time elapsed");
  app.add_option("--trace", o.trace_file,
                 "write the run's events (tasks per host, migrations) to FILE as a "
                 "Chrome/Perfetto trace (open it in ui.perfetto.dev or chrome://tracing)");
}

// Whether `opt` (as written, e.g. "-n", "--np=3", "-n3") takes the next word
// as its value.
bool TakesNextWord(const CLI::Option& o, const std::string& word) {
  if (o.get_expected_max() == 0) return false;  // a flag
  if (word.find('=') != std::string::npos) return false;
  return word.rfind("--", 0) == 0 || word.size() == 2;  // "-n3" holds its value
}

// Splits argv into prun's own words and the command. Returns "" or the word
// that is not an option of prun's.
std::string Split(CLI::App& app, int argc, const char* const* argv, std::vector<std::string>& own,
                  std::vector<std::string>& command) {
  for (int i = 1; i < argc; ++i) {
    std::string w = argv[i];
    if (w == "--") {
      command.assign(argv + i + 1, argv + argc);
      return "";
    }
    if (w.size() < 2 || w[0] != '-') {
      command.assign(argv + i, argv + argc);
      return "";
    }
    if (w == "-np") w = "--np";  // mpirun's spelling
    const std::string name = w.rfind("--", 0) == 0 ? w.substr(0, w.find('=')) : w.substr(0, 2);
    const CLI::Option* o = app.get_option_no_throw(name);
    const bool builtin = name == "-h" || name == "--help" || name == "--version";
    if (o == nullptr && !builtin) return argv[i];
    own.push_back(w);
    if (o != nullptr && TakesNextWord(*o, w) && i + 1 < argc) own.push_back(argv[++i]);
  }
  return "";
}

}  // namespace

ParsedArgs ParsePrunArgs(int argc, const char* const* argv) {
  PrunOptions o;
  std::string hosts;
  CLI::App app{"prun: run N instances of a PVM program on the mpvm virtual machine", "prun"};
  Describe(app, o, hosts);
  std::vector<std::string> own;
  if (std::string bad = Split(app, argc, argv, own, o.command); !bad.empty()) {
    std::fprintf(stderr, "prun: unknown option '%s' (prun --help lists prun's options)\n",
                 bad.c_str());
    return 2;
  }
  std::reverse(own.begin(), own.end());  // CLI11 takes its words from the back
  try {
    app.parse(own);
  } catch (const CLI::CallForHelp&) {
    std::printf("%s", app.help().c_str());
    return 0;
  } catch (const CLI::CallForVersion&) {
    std::printf("%s\n", app.version().c_str());
    return 0;
  } catch (const CLI::ParseError& e) {
    std::fprintf(stderr, "prun: %s\n", e.what());
    return 2;
  }
  if (!hosts.empty()) {
    std::string error;
    auto list = ParseHostList(hosts, &error);
    if (!list) {
      std::fprintf(stderr, "prun: --hosts: %s\n", error.c_str());
      return 2;
    }
    o.hosts = std::move(*list);
  }
  if (o.command.empty()) {
    std::fprintf(stderr, "prun: no program given (usage: %s)\n", kUsage);
    return 2;
  }
  return o;
}

std::optional<std::vector<EmulatedHost>> ParseHostList(const std::string& text,
                                                       std::string* error) {
  std::vector<EmulatedHost> out;
  std::stringstream s(text);
  for (std::string item; std::getline(s, item, ',');) {
    EmulatedHost h;
    const auto colon = item.find(':');
    h.name = item.substr(0, colon);
    const bool name_ok = !h.name.empty() && std::all_of(h.name.begin(), h.name.end(), [](char c) {
      return std::isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '_';
    });
    if (!name_ok) {
      *error = "'" + item + "': a host is NAME or NAME:SPEED (letters, digits, - and _)";
      return std::nullopt;
    }
    if (colon != std::string::npos) {
      const std::string sp = item.substr(colon + 1);
      char* end = nullptr;
      const long v = std::strtol(sp.c_str(), &end, 10);
      if (sp.empty() || *end != '\0' || v < 1 || v > 1000000) {
        *error = "'" + item + "': the speed must be an integer from 1 to 1000000 (1000: one CPU)";
        return std::nullopt;
      }
      h.speed = static_cast<int>(v);
    }
    for (const auto& other : out)
      if (other.name == h.name) {
        *error = "host '" + h.name + "' is named twice";
        return std::nullopt;
      }
    out.push_back(h);
  }
  if (out.empty()) *error = "no hosts given (e.g. --hosts 'a:600,b:200')";
  return out.empty() ? std::nullopt : std::optional(out);
}

}  // namespace mpvm::prun
