// console_queries.cc — see console_queries.h.
#include "console_queries.h"

#include <fmt/format.h>
#include <fnmatch.h>

#include <cstdio>
#include <cstdlib>
#include <set>

#include "mpvm/control.h"
#include "mpvm/message.h"

namespace mpvm::console {

namespace {

std::string ErrText(Err e) { return std::string(PvmErrorText(ToPvmCode(e))); }

void Usage(const char* text, int* status) {
  std::fprintf(stderr, "%s\n", text);
  *status = 2;
}

// mstat HOST...: "<name>  ok" or "<name>  No such host", a line each.
void Mstat(const std::vector<std::string>& w, TaskRuntime& rt, int* status) {
  if (w.size() < 2) return Usage("mstat: give one or more host names (see conf)", status);
  for (size_t i = 1; i < w.size(); ++i) {
    auto st = rt.Mstat(w[i]);
    std::printf("%24s  %s\n", w[i].c_str(), st ? "ok" : ErrText(st.error()).c_str());
    if (!st) *status = 1;
  }
}

// pstat TID...: "t   40002  run", or why not.
void Pstat(const std::vector<std::string>& w, TaskRuntime& rt, int* status) {
  if (w.size() < 2) return Usage("pstat: give one or more task ids (see ps)", status);
  for (size_t i = 1; i < w.size(); ++i) {
    const int t = ParseTid(w[i]);
    auto st = t > 0 ? rt.Pstat(Tid(t)) : Status(mpvm::unexpected(Err::kBadParam));
    std::printf("t%8x  %s\n", t, st ? "run" : ErrText(st.error()).c_str());
    if (!st) *status = 1;
  }
}

// sig SIGNUM TID...
void Sig(const std::vector<std::string>& w, TaskRuntime& rt, int* status) {
  char* end = nullptr;
  const long sig = w.size() >= 3 ? std::strtol(w[1].c_str(), &end, 10) : 0;
  if (w.size() < 3 || end == nullptr || *end != '\0' || sig < 1 || sig > 64)
    return Usage("sig: usage: sig SIGNUM TID... (a signal number, 1 to 64, then task ids)", status);
  for (size_t i = 2; i < w.size(); ++i) {
    const int t = ParseTid(w[i]);
    auto st = t > 0 ? rt.SendSig(Tid(t), static_cast<int>(sig))
                    : Status(mpvm::unexpected(Err::kBadParam));
    if (!st) {
      std::fprintf(stderr, "sig %s: %s\n", w[i].c_str(), ErrText(st.error()).c_str());
      *status = 1;
    }
  }
}

// reset: ends every task (not the tools: consoles, prun), and deletes the
// mailbox entries whose owners are gone. Hosts and aliases stay.
void Reset(const std::vector<std::string>& w, TaskRuntime& rt, int* status) {
  if (w.size() != 1) return Usage("reset: takes no arguments", status);
  auto tasks = rt.Tasks(0);
  if (!tasks) {
    std::fprintf(stderr, "reset: %s\n", ErrText(tasks.error()).c_str());
    *status = 1;
    return;
  }
  std::set<int> alive;
  for (const auto& e : tasks->tasks()) {
    alive.insert(e.tid());
    if ((e.flag() & 0x100) == 0 && e.tid() != rt.tid().raw()) (void)rt.Kill(Tid(e.tid()));
  }
  auto info = rt.MboxInfo("*");
  if (!info) return;
  for (const auto& c : info->classes())
    for (int i = 0; i < c.indices_size() && i < c.owners_size(); ++i)
      if (!alive.contains(c.owners(i))) (void)rt.DelInfo(c.name(), c.indices(i), 0);
}

// put NAME FLAGS DATA: a mailbox entry holding the string DATA.
void Put(const std::vector<std::string>& w, TaskRuntime& rt, int* status) {
  char* end = nullptr;
  const long flags = w.size() == 4 ? std::strtol(w[2].c_str(), &end, 10) : -1;
  if (w.size() != 4 || end == nullptr || *end != '\0' || flags < 0)
    return Usage("put: usage: put NAME FLAGS DATA (FLAGS: PvmMbox* bits, as a number)", status);
  auto buf = rt.MkBuf(0);  // PvmDataDefault
  Result<int> r = mpvm::unexpected(Err::kNoMem);
  if (buf) {
    if (auto m = rt.Buffer(*buf); m && (*m)->PackStr(w[3].c_str()))
      r = rt.PutInfo(w[1], *buf, static_cast<int>(flags));
    (void)rt.FreeBuf(*buf);
  }
  if (!r) {
    std::fprintf(stderr, "put %s: %s\n", w[1].c_str(),
                 rt.last_detail().empty() ? ErrText(r.error()).c_str() : rt.last_detail().c_str());
    *status = 1;
  }
}

// names [PATTERN]: each mailbox name, then its entries.
void Names(const std::vector<std::string>& w, TaskRuntime& rt, int* status) {
  if (w.size() > 2) return Usage("names: usage: names [PATTERN]", status);
  auto info = rt.MboxInfo(w.size() == 2 ? w[1] : "*");
  if (!info) {
    std::fprintf(stderr, "names: %s\n", ErrText(info.error()).c_str());
    *status = 1;
    return;
  }
  for (const auto& c : info->classes()) {
    std::printf("<%s>:\n", c.name().c_str());
    for (int i = 0; i < c.indices_size(); ++i) {
      const int owner = i < c.owners_size() ? c.owners(i) : 0;
      std::printf("\tindex=%d owner=0x%x/%d flags=0x%x\n", c.indices(i), owner, owner,
                  i < c.flags_size() ? c.flags(i) : 0);
    }
    std::printf("\n");
  }
}

}  // namespace

int ParseTid(const std::string& s) {
  std::string h = s;
  if (!h.empty() && (h[0] == 't' || h[0] == 'T')) h = h.substr(1);
  char* end = nullptr;
  long v = std::strtol(h.c_str(), &end, 16);
  return (end != nullptr && *end == '\0' && !h.empty()) ? static_cast<int>(v) : 0;
}

bool RunQuery(const std::vector<std::string>& w, TaskRuntime& rt, int* status) {
  using Fn = void (*)(const std::vector<std::string>&, TaskRuntime&, int*);
  static const std::pair<const char*, Fn> kQueries[] = {
      {"mstat", Mstat}, {"pstat", Pstat}, {"sig", Sig},
      {"reset", Reset}, {"put", Put},     {"names", Names},
  };
  for (const auto& [name, fn] : kQueries)
    if (w[0] == name) {
      fn(w, rt, status);
      return true;
    }
  return false;
}

}  // namespace mpvm::console
