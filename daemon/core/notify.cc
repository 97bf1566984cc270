#include "notify.h"

#include <algorithm>

namespace mpvm {

void NotifyRegistry::Tell(const NotifyReg& r, int subject) {
  // A cancelled host-add request says: no new hosts.
  out_.push_back({r.watcher, r.tag, r.ctx, {r.what == kNotifyHostAdd ? 0 : subject}});
}

void NotifyRegistry::Watch(const NotifyReg& reg, bool target_exists) {
  if (target_exists) {
    regs_.push_back(reg);
  } else {
    Tell(reg, reg.target);  // already gone: tell at once
  }
}

void NotifyRegistry::WatchHostAdds(Tid watcher, int tag, int ctx, int count, bool cancel) {
  std::erase_if(
      regs_, [&](const NotifyReg& r) { return r.watcher == watcher && r.what == kNotifyHostAdd; });
  if (!cancel && count != 0) regs_.push_back({watcher, kNotifyHostAdd, tag, ctx, 0, count});
}

void NotifyRegistry::Cancel(Tid watcher, int what, int target, int tag) {
  std::vector<NotifyReg> gone;
  std::erase_if(regs_, [&](const NotifyReg& r) {
    const bool match =
        r.watcher == watcher && r.what == what && r.target == target && (tag < 0 || r.tag == tag);
    if (match) gone.push_back(r);
    return match;
  });
  for (const auto& r : gone) Tell(r, target);
}

void NotifyRegistry::Fire(int what, int target) {
  std::vector<NotifyReg> fire;
  std::erase_if(regs_, [&](const NotifyReg& r) {
    const bool match = r.what == what && r.target == target;
    if (match) fire.push_back(r);
    return match;
  });
  for (const auto& r : fire) Tell(r, target);
}

void NotifyRegistry::HostsAdded(const std::vector<int>& host_tids) {
  if (host_tids.empty()) return;
  std::vector<int> ints = {static_cast<int>(host_tids.size())};
  ints.insert(ints.end(), host_tids.begin(), host_tids.end());
  for (auto& r : regs_) {
    if (r.what != kNotifyHostAdd || r.count == 0) continue;
    out_.push_back({r.watcher, r.tag, r.ctx, ints});
    if (r.count > 0) --r.count;
  }
  std::erase_if(regs_, [](const NotifyReg& r) { return r.what == kNotifyHostAdd && r.count == 0; });
}

void NotifyRegistry::DropWatcher(Tid watcher) {
  std::erase_if(regs_, [&](const NotifyReg& r) { return r.watcher == watcher; });
}

std::vector<NotifyReg> NotifyRegistry::TakeWatcher(Tid watcher) {
  std::vector<NotifyReg> taken;
  std::erase_if(regs_, [&](const NotifyReg& r) {
    if (r.watcher == watcher) taken.push_back(r);
    return r.watcher == watcher;
  });
  return taken;
}

std::vector<int> NotifyRegistry::WatchedTasks() const {
  std::vector<int> out;
  for (const auto& r : regs_)
    if (r.what == kNotifyTaskExit) out.push_back(r.target);
  return out;
}

}  // namespace mpvm
