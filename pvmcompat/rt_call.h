// rt_call.h — how the C API reaches the process's one TaskRuntime.
//
// Rt() returns an RtCall: while it lives, the task is inside the library, so
// a migration asked for by signal waits for the next boundary (see
// runtime/mpvm/task_migrate.cc). Entering the library is itself a boundary.
#pragma once

#include "mpvm/task_runtime.h"

namespace mpvm_compat {

mpvm::TaskRuntime& RuntimeObject();

class RtCall {
 public:
  RtCall() { mpvm::LibraryEnter(); }
  ~RtCall() { mpvm::LibraryLeave(); }
  RtCall(const RtCall&) = delete;
  RtCall& operator=(const RtCall&) = delete;
  mpvm::TaskRuntime* operator->() const { return &RuntimeObject(); }
};

inline RtCall Rt() { return RtCall(); }

}  // namespace mpvm_compat
