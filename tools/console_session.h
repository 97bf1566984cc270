// console_session.h — the console's own state and PVM's session commands:
// its command words (quotes and comments, as PVM's console reads them),
// aliases (alias, unalias), the environment its tasks are spawned with
// (setenv, export, unexport: PVM_EXPORT names the variables a spawn
// passes on), and id and echo. Output as PVM 3.4's console prints it.
#pragma once

#include <map>
#include <string>
#include <vector>

#include "mpvm/error.h"
#include "mpvm/tid.h"

namespace mpvm::console {

// A command line's words: split at blanks; "..." and '...' keep blanks, a
// backslash takes the next character as it is, a word starting with # ends
// the line. An unmatched quote is the error.
mpvm::expected<std::vector<std::string>, std::string> Words(const std::string& line);

class Session {
 public:
  // `w` with an alias for w[0] replaced by its words (once: the expansion's
  // first word is not looked up again, as in PVM).
  std::vector<std::string> Expand(const std::vector<std::string>& w) const;
  // Runs `w` if it is one of these commands (and returns true); *status is
  // 2 for a usage error.
  bool Run(const std::vector<std::string>& w, Tid me, int* status);

 private:
  void Alias(const std::vector<std::string>& w);
  void SetEnv(const std::vector<std::string>& w);
  static void Export(const std::vector<std::string>& w, bool add);

  std::map<std::string, std::vector<std::string>> aliases_;  // name -> its words, sorted
};

}  // namespace mpvm::console
