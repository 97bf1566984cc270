#include "hostfile.h"

#include <fmt/format.h>

#include <charconv>
#include <set>

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

constexpr std::string_view kAccepted = "sp= ep= wd= lo= so= dx= ip= local=";

// Applies one `key=value` option; returns an error message or "".
std::string Apply(HostSpec& h, std::string_view opt) {
  auto eq = opt.find('=');
  if (eq == std::string_view::npos || eq == 0)
    return fmt::format("'{}' is not an option of the form key=value (accepted: {})", opt,
                       kAccepted);
  std::string_view key = opt.substr(0, eq), val = opt.substr(eq + 1);
  if (key == "sp") {
    int v = 0;
    auto [p, ec] = std::from_chars(val.data(), val.data() + val.size(), v);
    if (ec != std::errc() || p != val.data() + val.size() || v <= 0 || v > 1000000)
      return fmt::format("sp= needs a positive integer (1..1000000), got '{}'", val);
    h.speed = v;
  } else if (key == "local") {
    if (val != "0" && val != "1") return fmt::format("local= takes 0 or 1, got '{}'", val);
    h.local = val == "1";
  } else if (val.empty()) {
    return fmt::format("{}= needs a value", key);
  } else if (key == "ep") {
    h.ep = val;
  } else if (key == "wd") {
    h.wd = val;
  } else if (key == "lo") {
    h.login = val;
  } else if (key == "so") {
    if (val != "ms" && val != "pw")
      return fmt::format("so= takes 'ms' (start by hand) or 'pw', got '{}'", val);
    h.startup = val;
  } else if (key == "dx") {
    h.daemon = val;
  } else if (key == "ip") {
    h.ip = val;
  } else {
    return fmt::format("unknown option '{}' (accepted: {})", key, kAccepted);
  }
  return "";
}

bool ValidHostName(std::string_view n) {
  if (n.empty() || n.size() > 255) return false;
  for (char c : n)
    if (!(std::isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '.' || c == '_'))
      return false;
  return true;
}

}  // namespace

mpvm::expected<std::vector<HostSpec>, HostfileError> ParseHostfile(std::string_view text,
                                                                   std::string_view origin) {
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
    if (name == "*") {
      for (size_t i = 1; i < words.size(); ++i)
        if (auto err = Apply(defaults, words[i]); !err.empty()) return fail(err);
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
    h.name = name;
    for (size_t i = 1; i < words.size(); ++i)
      if (auto err = Apply(h, words[i]); !err.empty()) return fail(err);
    hosts.push_back(std::move(h));
    if (end == text.size()) break;
  }
  return hosts;
}

std::optional<HostSpec> FindSelf(const std::vector<HostSpec>& hosts, std::string_view hostname) {
  for (const auto& h : hosts)
    if (!h.local && (h.name == hostname || h.name == "localhost" || h.name == "." ||
                     h.name.substr(0, h.name.find('.')) == hostname))
      return h;
  return std::nullopt;
}

}  // namespace mpvm
