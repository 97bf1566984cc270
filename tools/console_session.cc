// console_session.cc — see console_session.h.
#include "console_session.h"

#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <sstream>

extern char** environ;

namespace mpvm::console {

namespace {

std::string Join(const std::vector<std::string>& w, size_t from) {
  std::string out;
  for (size_t i = from; i < w.size(); ++i) out += (i > from ? " " : "") + w[i];
  return out;
}

// PVM_EXPORT's names, in order.
std::vector<std::string> ExportList() {
  std::vector<std::string> names;
  const char* v = std::getenv("PVM_EXPORT");  // the live list: this console edits it
  std::istringstream in(v != nullptr ? v : "");
  std::string n;
  while (std::getline(in, n, ':'))
    if (!n.empty()) names.push_back(n);
  return names;
}

void SetExportList(const std::vector<std::string>& names) {
  std::string v;
  for (const auto& n : names) v += (v.empty() ? "" : ":") + n;
  setenv("PVM_EXPORT", v.c_str(), 1);
}

}  // namespace

mpvm::expected<std::vector<std::string>, std::string> Words(const std::string& line) {
  std::vector<std::string> out;
  std::string word;
  bool in_word = false;
  char quote = 0;
  for (size_t i = 0; i < line.size(); ++i) {
    const char c = line[i];
    if (quote != 0) {
      if (c == quote)
        quote = 0;
      else
        word += c;
    } else if (c == '"' || c == '\'') {
      quote = c;
      in_word = true;
    } else if (c == '\\' && i + 1 < line.size()) {
      word += line[++i];
      in_word = true;
    } else if (c == ' ' || c == '\t' || c == '\n' || c == '\r') {
      if (in_word) out.push_back(std::move(word));
      word.clear();
      in_word = false;
    } else if (c == '#' && !in_word) {
      break;  // a comment, to the end of the line
    } else {
      word += c;
      in_word = true;
    }
  }
  if (quote != 0) return mpvm::unexpected(std::string("unmatched ") + quote);
  if (in_word) out.push_back(std::move(word));
  return out;
}

std::vector<std::string> Session::Expand(const std::vector<std::string>& w) const {
  if (w.empty()) return w;
  auto it = aliases_.find(w[0]);
  if (it == aliases_.end()) return w;
  std::vector<std::string> out = it->second;  // its words as typed: quoted ones stay whole
  out.insert(out.end(), w.begin() + 1, w.end());
  return out;
}

bool Session::Run(const std::vector<std::string>& w, Tid me, int* status) {
  const std::string& cmd = w[0];
  if (cmd == "id") {
    std::printf("%s\n", me.str().c_str());
  } else if (cmd == "echo") {
    std::printf("%s\n", Join(w, 1).c_str());
  } else if (cmd == "alias") {
    Alias(w);
  } else if (cmd == "unalias") {
    if (w.size() < 2) {
      std::fprintf(stderr, "unalias: give one or more alias names (alias lists them)\n");
      *status = 2;
    }
    for (size_t i = 1; i < w.size(); ++i) aliases_.erase(w[i]);
  } else if (cmd == "setenv") {
    SetEnv(w);
  } else if (cmd == "export" || cmd == "unexport") {
    Export(w, cmd == "export");
  } else {
    return false;
  }
  return true;
}

// alias: lists them ("name<TAB>command", by name); alias NAME COMMAND...
// defines one (an alias may shadow a command); alias NAME alone lists all.
void Session::Alias(const std::vector<std::string>& w) {
  if (w.size() >= 3) {
    aliases_[w[1]].assign(w.begin() + 2, w.end());
    return;
  }
  for (const auto& [name, words] : aliases_)
    std::printf("%s\t%s\n", name.c_str(), Join(words, 0).c_str());
}

// setenv: every variable; setenv NAME: its value (nothing if unset);
// setenv NAME VALUE...: sets it, for the tasks this console spawns.
void Session::SetEnv(const std::vector<std::string>& w) {
  if (w.size() == 1) {
    for (char** e = environ; *e != nullptr; ++e) std::printf("%s\n", *e);
  } else if (w.size() == 2) {
    if (const char* v = std::getenv(w[1].c_str()); v != nullptr) std::printf("%s\n", v);
  } else {
    setenv(w[1].c_str(), Join(w, 2).c_str(), 1);
  }
}

// export: prints PVM_EXPORT; export NAMES: adds them to it (once each);
// unexport NAMES: takes them out.
void Session::Export(const std::vector<std::string>& w, bool add) {
  std::vector<std::string> names = ExportList();
  if (w.size() == 1) {
    if (add) {
      std::string v;
      for (const auto& n : names) v += (v.empty() ? "" : ":") + n;
      std::printf("PVM_EXPORT=%s\n", v.c_str());
    }
    return;
  }
  for (size_t i = 1; i < w.size(); ++i) {
    auto at = std::find(names.begin(), names.end(), w[i]);
    if (add && at == names.end()) names.push_back(w[i]);
    if (!add && at != names.end()) names.erase(at);
  }
  SetExportList(names);
}

}  // namespace mpvm::console
