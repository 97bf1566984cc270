// notify.h — pvm_notify: who wants to be told when a task ends, a host is
// deleted, or hosts are added; and the messages that tell them.
//
// The registry owns the requests. It does not know the task table or the
// hosts: the daemon says whether a target still exists when a request comes
// (one that is gone already is told at once, as PVM does), and reports the
// events (Fire, HostsAdded). The notify messages go into its outbox
// (Messages()), as the integers PVM packs into them. No I/O, no clock.
#pragma once

#include <utility>
#include <vector>

#include "mpvm/tid.h"

namespace mpvm {

// pvm3.h's notify kinds (the daemon does not include the C header).
inline constexpr int kNotifyTaskExit = 1, kNotifyHostDelete = 2, kNotifyHostAdd = 3;

struct NotifyReg {
  Tid watcher;
  int what = 0, tag = 0, ctx = 0;
  int target = 0;  // a tid, a host's daemon tid, or 0 for host-add
  int count = 1;   // host-add: how many more times (-1: for ever)
};

// A notify message to send: `ints` packed as PvmDataDefault integers.
struct NotifyMessage {
  Tid to;
  int tag = 0, ctx = 0;
  std::vector<int> ints;
};

class NotifyRegistry {
 public:
  // A task-exit or host-delete request; told at once if `target_exists` is
  // false.
  void Watch(const NotifyReg& reg, bool target_exists);
  // PvmHostAdd: replaces the watcher's host-add request (count 0 or cancel:
  // none).
  void WatchHostAdds(Tid watcher, int tag, int ctx, int count, bool cancel);
  // PvmNotifyCancel: the matching requests are told now, as if it happened
  // (tag < 0 matches any tag).
  void Cancel(Tid watcher, int what, int target, int tag);

  // `target` ended (kNotifyTaskExit) or its host was deleted (kNotifyHostDelete).
  void Fire(int what, int target);
  // Hosts were added (their daemon tids).
  void HostsAdded(const std::vector<int>& host_tids);

  // The watcher left the VM: its requests go.
  void DropWatcher(Tid watcher);
  // The watcher moved: its requests go with it (the new host watches).
  std::vector<NotifyReg> TakeWatcher(Tid watcher);
  // The tasks watched for their exit.
  std::vector<int> WatchedTasks() const;

  // The messages written since the last call, oldest first.
  std::vector<NotifyMessage> TakeMessages() { return std::exchange(out_, {}); }

 private:
  void Tell(const NotifyReg& r, int subject);

  std::vector<NotifyReg> regs_;
  std::vector<NotifyMessage> out_;
};

}  // namespace mpvm
