// load_reports.h — LoadReports for the load service's and balancer's tests.
#pragma once

#include <cstdint>
#include <vector>

#include "control.pb.h"

namespace mpvm {

// A host of `speed` whose tasks `tids`, all `age_ns` old, are ready to run.
inline ctl::LoadReport RunnableReport(int speed, const std::vector<int>& tids, int64_t age_ns) {
  ctl::LoadReport r;
  r.set_speed(speed);
  r.set_cores(1);
  for (int t : tids) {
    auto* l = r.add_tasks();
    l->set_tid(t);
    l->set_age_ns(age_ns);
    l->set_ready(1);
  }
  return r;
}

}  // namespace mpvm
