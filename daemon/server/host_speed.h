// host_speed.h — this host's speed in PVM's sp= units, measured at start when
// neither --speed nor the host file's sp= gives it (and the host is not
// emulated, whose speed is what it was asked to be).
//
// The measure is the best of a few short runs of a fixed arithmetic loop
// (a dependent chain of integer and floating-point operations, no memory
// traffic), in this thread's CPU time, so that other processes on the host
// do not make it look slower. 1000 is one core of the reference machine the
// constant was taken on (docs/design/balancer.md). It ranks hosts for the
// balancer; it is not a benchmark of the machine.
#pragma once

#include <cstdint>

namespace mpvm {

// The speed (10..1000000, a multiple of 10) for a best run of `best_ns` of
// thread CPU time.
int SpeedFromRunTime(int64_t best_ns);

// Runs the loop (about 15 ms of CPU on the reference machine) and returns
// SpeedFromRunTime of its best run.
int CalibrateHostSpeed();

}  // namespace mpvm
