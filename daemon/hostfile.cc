#include "hostfile.h"

#include <fmt/format.h>

#include <cctype>
#include <charconv>
#include <cstdlib>
#include <set>

#include "mpvm/paths.h"

namespace mpvm {
namespace {

std::vector<std::string_view> Words(std::string_view line) {
  std::vector<std::string_view> out;
  size_t i = 0;
  while (i < line.size()) {
    while (i < line.size() && (line[i] == ' ' || line[i] == '\t')) ++i;
    size_t j = i;
    while (j < line.size() && line[j] != ' ' && line[j] != '\t') ++j;
    if (j > i) out.push_back(line.substr(i, j - i));
    i = j;
  }
  return out;
}

constexpr std::string_view kAccepted = "sp= ep= wd= lo= so= dx= ip= bx= id= local=";

// The options whose value is kept as written, after variable expansion where
// PVM expands (paths).
struct TextOption {
  std::string_view key;
  std::string HostSpec::*field;
  bool expand;
};
constexpr TextOption kTextOptions[] = {
    {"ep", &HostSpec::ep, true},     {"wd", &HostSpec::wd, true},
    {"dx", &HostSpec::daemon, true}, {"bx", &HostSpec::debugger, true},
    {"lo", &HostSpec::login, false}, {"ip", &HostSpec::ip, false},
    {"id", &HostSpec::vmid, false},
};

std::string ApplySpeed(HostSpec& h, std::string_view val) {
  int v = 0;
  auto [p, ec] = std::from_chars(val.data(), val.data() + val.size(), v);
  if (ec != std::errc() || p != val.data() + val.size() || v <= 0 || v > 1000000)
    return fmt::format("sp= needs a positive integer (1..1000000), got '{}'", val);
  h.speed = v;
  h.speed_given = true;
  return "";
}

// Applies one `key=value` option; returns an error message or "".
std::string Apply(HostSpec& h, std::string_view opt, const VarLookup& lookup) {
  auto eq = opt.find('=');
  if (eq == std::string_view::npos || eq == 0)
    return fmt::format("'{}' is not an option of the form key=value (accepted: {})", opt,
                       kAccepted);
  std::string_view key = opt.substr(0, eq), val = opt.substr(eq + 1);
  if (key == "sp") return ApplySpeed(h, val);
  if (key == "local") {
    if (val != "0" && val != "1") return fmt::format("local= takes 0 or 1, got '{}'", val);
    h.local = val == "1";
    return "";
  }
  if (key == "so") {
    if (val != "ms" && val != "pw")
      return fmt::format("so= takes 'ms' (start by hand) or 'pw' (ask for a password), got '{}'",
                         val);
    h.startup = std::string(val);
    return "";
  }
  for (const auto& o : kTextOptions) {
    if (key != o.key) continue;
    if (val.empty()) return fmt::format("{}= needs a value", key);
    if (!o.expand) {
      h.*o.field = std::string(val);
      return "";
    }
    auto expanded = ExpandVars(val, lookup);
    if (!expanded) return fmt::format("{}=: {}", key, expanded.error());
    h.*o.field = std::move(*expanded);
    return "";
  }
  return fmt::format("unknown option '{}' (accepted: {})", key, kAccepted);
}

bool IsVarChar(char c) { return std::isalnum(static_cast<unsigned char>(c)) || c == '_'; }

}  // namespace

std::optional<std::string> EnvironmentVar(std::string_view name) {
  const std::string n(name);
  if (const char* v = std::getenv(n.c_str()); v != nullptr) return std::string(v);
  if (name == "PVM_ARCH") return std::string(kArch);
  return std::nullopt;
}

mpvm::expected<std::string, std::string> ExpandVars(std::string_view text,
                                                    const VarLookup& lookup) {
  std::string out;
  for (size_t i = 0; i < text.size();) {
    if (text[i] != '$' || i + 1 == text.size()) {
      out.push_back(text[i++]);
      continue;
    }
    std::string_view name;
    if (text[i + 1] == '{') {
      size_t close = text.find('}', i + 2);
      if (close == std::string_view::npos)
        return mpvm::unexpected(fmt::format("'${{' with no '}}' in '{}'", text));
      name = text.substr(i + 2, close - i - 2);
      i = close + 1;
    } else {
      size_t j = i + 1;
      while (j < text.size() && IsVarChar(text[j])) ++j;
      if (j == i + 1) {  // a lone '$' stays as it is
        out.push_back(text[i++]);
        continue;
      }
      name = text.substr(i + 1, j - i - 1);
      i = j;
    }
    auto value = lookup(name);
    if (!value) return mpvm::unexpected(fmt::format("${} is not set", name));
    out += *value;
  }
  return out;
}

namespace {

bool ValidHostName(std::string_view n) {
  if (n.empty() || n.size() > 255) return false;
  for (char c : n)
    if (!(std::isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '.' || c == '_'))
      return false;
  return true;
}

}  // namespace

mpvm::expected<std::vector<HostSpec>, HostfileError> ParseHostfile(std::string_view text,
                                                                   std::string_view origin,
                                                                   const VarLookup& lookup) {
  std::vector<HostSpec> hosts;
  HostSpec defaults;
  std::set<std::string, std::less<>> seen;
  int lineno = 0;
  size_t pos = 0;
  auto fail = [&](std::string msg) {
    return mpvm::unexpected(HostfileError{lineno, fmt::format("{}:{}: {}", origin, lineno, msg)});
  };
  while (pos <= text.size()) {
    size_t end = text.find('\n', pos);
    if (end == std::string_view::npos) end = text.size();
    std::string_view line = text.substr(pos, end - pos);
    pos = end + 1;
    ++lineno;
    if (auto hash = line.find('#'); hash != std::string_view::npos) line = line.substr(0, hash);
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    auto words = Words(line);
    if (words.empty()) continue;
    std::string_view name = words[0];
    if (name == "*") {  // not cumulative: each `*` line starts from PVM's defaults
      defaults = HostSpec{};
      for (size_t i = 1; i < words.size(); ++i)
        if (auto err = Apply(defaults, words[i], lookup); !err.empty()) return fail(err);
      continue;
    }
    HostSpec h = defaults;
    h.line = lineno;
    if (name.front() == '&') {
      h.deferred = true;
      name.remove_prefix(1);
    }
    if (!ValidHostName(name))
      return fail(fmt::format("'{}' is not a host name (letters, digits, '-', '.', '_')", name));
    if (seen.contains(name)) return fail(fmt::format("host '{}' is listed twice", name));
    seen.insert(std::string(name));
    h.name = std::string(name);
    for (size_t i = 1; i < words.size(); ++i)
      if (auto err = Apply(h, words[i], lookup); !err.empty()) return fail(err);
    hosts.push_back(std::move(h));
    if (end == text.size()) break;
  }
  return hosts;
}

std::string ManualStartHint(const HostSpec& h) {
  constexpr std::string_view kHow =
      "start its daemon by hand with `mpvmd --join ADDR:PORT --key FILE`";
  if (h.startup == "ms") return fmt::format("so=ms: {}", kHow);
  if (h.startup == "pw")
    return fmt::format(
        "so=pw: mpvm's daemon has no terminal to ask for a password; give the host an ssh key, "
        "or {}",
        kHow);
  return "";
}

std::optional<HostSpec> FindSelf(const std::vector<HostSpec>& hosts, std::string_view hostname) {
  for (const auto& h : hosts)
    if (!h.local && (h.name == hostname || h.name == "localhost" || h.name == "." ||
                     h.name.substr(0, h.name.find('.')) == hostname))
      return h;
  return std::nullopt;
}

}  // namespace mpvm
