// hostfile.h — PVM host files.
//
// A host file lists the hosts of a virtual machine, one per line:
//
//   # comment
//   * sp=1000 ep=$HOME/bin         defaults for the lines that follow
//   alpha                          a host
//   &beta sp=2000 lo=me            `&`: known, but not started with the VM
//   gamma ip=10.0.0.3 wd=/scratch dx=/opt/mpvm/bin/mpvmd
//   delta local=1                  mpvm: an emulated host on this machine
//
// Every option of PVM 3.4's host file (pvmd3(1)) is accepted: sp= relative
// speed (1..1000000, default 1000), ep= program search path (colon-separated),
// wd= working directory, lo= login name, so= start-up mode (`ms`: started by
// hand; `pw`: the remote shell asks for the password), dx= daemon path, ip=
// address to use, bx= debugger (kept, no effect in mpvm), id= virtual machine
// id (kept, no effect: mpvm tells VMs apart by MPVM_RUNDIR); and mpvm's own
// local= (emulate the host on this machine, 0/1). Anything else is an error
// naming the line, so a typo never passes silently.
//
// `$NAME` and `${NAME}` in ep=, wd=, dx= and bx= are expanded as PVM does,
// from the lookup given (the environment, where $PVM_ARCH defaults to
// mpvm's architecture name); a variable that is not set is an error naming it.
//
// ParseHostfile is a pure function: no file system, no network.
#pragma once

#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "mpvm/error.h"

namespace mpvm {

struct HostSpec {
  std::string name;
  int line = 0;              // where it was declared (1-based)
  bool deferred = false;     // `&name`
  int speed = 1000;          // sp=
  bool speed_given = false;  // sp= was written (for an emulated host: enforced)
  std::string ep;            // ep=
  std::string wd;            // wd=
  std::string login;         // lo=
  std::string startup;       // so=
  std::string daemon;        // dx=
  std::string ip;            // ip=
  std::string debugger;      // bx= (accepted, no effect)
  std::string vmid;          // id= (accepted, no effect)
  bool local = false;        // local=
};

// The value of a variable named in a host file, or nullopt if it is not set.
using VarLookup = std::function<std::optional<std::string>(std::string_view name)>;

// The process environment, with PVM_ARCH defaulting to mpvm's (LINUX64).
std::optional<std::string> EnvironmentVar(std::string_view name);

// `text` with each $NAME / ${NAME} replaced from `lookup`; the error names the
// first variable that is not set, or a `${` with no `}`.
mpvm::expected<std::string, std::string> ExpandVars(std::string_view text, const VarLookup& lookup);

struct HostfileError {
  int line = 0;
  std::string message;  // "line 3: sp= needs a positive integer, got 'fast'"
};

// Parses `text`; `origin` names the file in messages; `lookup` expands
// variables.
mpvm::expected<std::vector<HostSpec>, HostfileError> ParseHostfile(
    std::string_view text, std::string_view origin, const VarLookup& lookup = EnvironmentVar);

// Why `h` must be started by hand (so=ms, or so=pw: mpvm's daemon has no
// terminal to ask for a password), with how; "" when it is started itself.
std::string ManualStartHint(const HostSpec& h);

// The entry naming this host (its name, "localhost" or "."), if any.
std::optional<HostSpec> FindSelf(const std::vector<HostSpec>& hosts, std::string_view hostname);

}  // namespace mpvm
