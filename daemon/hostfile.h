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
// Options: sp= relative speed (positive integer, default 1000), ep= program
// search path (colon-separated), wd= working directory, lo= login name, so=
// start-up mode (`ms`: started by hand), dx= daemon path, ip= address to
// use, local= emulate the host on this machine (0/1). Anything else is an
// error naming the line, so a typo never passes silently.
//
// ParseHostfile is a pure function: no file system, no network.
#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "mpvm/error.h"

namespace mpvm {

struct HostSpec {
  std::string name;
  int line = 0;           // where it was declared (1-based)
  bool deferred = false;  // `&name`
  int speed = 1000;       // sp=
  std::string ep;         // ep=
  std::string wd;         // wd=
  std::string login;      // lo=
  std::string startup;    // so=
  std::string daemon;     // dx=
  std::string ip;         // ip=
  bool local = false;     // local=
};

struct HostfileError {
  int line = 0;
  std::string message;  // "line 3: sp= needs a positive integer, got 'fast'"
};

// Parses `text`; `origin` names the file in messages.
mpvm::expected<std::vector<HostSpec>, HostfileError> ParseHostfile(std::string_view text,
                                                                   std::string_view origin);

// The entry naming this host (its name, "localhost" or "."), if any.
std::optional<HostSpec> FindSelf(const std::vector<HostSpec>& hosts, std::string_view hostname);

}  // namespace mpvm
