// prun_args.h — prun's command line, read as mpirun users expect.
//
//   prun [PRUN OPTIONS] PROGRAM [PROGRAM ARGUMENTS...]
//   prun [PRUN OPTIONS] -- PROGRAM [PROGRAM ARGUMENTS...]
//
// prun's own options come first. The first word that is not one of them (or
// the word after `--`) is the program, and every word after it reaches the
// program verbatim, however much it looks like an option. An option prun
// does not know is an error that names it. mpirun's spellings work too:
// `-np N`, `--hostfile FILE`, `-x VAR[=VALUE]`, `--version`.
//
// ParsePrunArgs is pure apart from what it prints for --help, --version and
// usage errors.
#pragma once

#include <optional>
#include <string>
#include <variant>
#include <vector>

namespace mpvm::prun {

// An emulated host of `--hosts`: its name and speed (sp= units; 1000 is one
// CPU of this machine, enforced).
struct EmulatedHost {
  std::string name;
  int speed = 1000;
};

struct PrunOptions {
  int ntask = 1;
  std::string tag_mode = "none";  // none, tid or rank
  std::string where;              // --host: run on this host only
  bool verbose = false;
  std::string trace_file;            // --trace FILE
  bool progress = false;             // --progress: a status line on stderr each second
  std::string hostfile;              // --hostfile FILE: a VM of these hosts for this job
  std::vector<EmulatedHost> hosts;   // --hosts 'a:S,b:S': emulated hosts for this job
  std::string balance;               // --balance on|off ("": as the VM has it)
  std::string cpu = "real";          // --cpu real|virtual: how --hosts enforce speed
  std::vector<std::string> exports;  // -x VAR or -x VAR=VALUE, as given
  std::string stdin_mode = "rank0";  // --stdin: rank0 (as mpirun) or none
  std::vector<std::string> command;  // the program and its arguments
};

// What the command line asks: options to run with, or an exit status (0
// after --help or --version, 2 after a usage error, already explained).
using ParsedArgs = std::variant<PrunOptions, int>;

ParsedArgs ParsePrunArgs(int argc, const char* const* argv);

// "a:400,b:1000,c" (a speed defaults to 1000) as hosts; on a bad list,
// nothing and `*error` says what is wrong.
std::optional<std::vector<EmulatedHost>> ParseHostList(const std::string& text, std::string* error);

}  // namespace mpvm::prun
