// vm_services.h — the virtual machine's services as requests: the mailbox
// (pvm_putinfo and friends), dynamic groups, notify and new contexts. On a
// multi-host VM the master serves them (a member passes such requests on).
// Each service's state is in CoreContext (Mailbox, GroupServer,
// NotifyRegistry), where others also reach it (a task that leaves is
// forgotten by all of them).
#pragma once

#include "control.pb.h"
#include "core/core_context.h"

namespace mpvm {

class VmServices {
 public:
  explicit VmServices(CoreContext& cx) : cx_(cx) {}

  // Handles a request for a service and returns true, or false for others.
  bool Handle(ConnId c, Tid who, const ctl::Envelope& env);

 private:
  void DoNotify(ConnId c, Tid who, const ctl::Envelope& env);

  CoreContext& cx_;
  int next_ctx_ = 1;
};

}  // namespace mpvm
