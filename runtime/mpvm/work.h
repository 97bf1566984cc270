// work.h — mpvm_work(units): a fixed amount of computing, the unit of work
// of the balancer's benchmarks. One unit is one millisecond of one CPU of
// this machine (speed 1000).
//
// On an emulated host in virtual-work mode (mode V of the balancer's
// experiments, docs/design/balancer.md) the task uses no CPU: it sleeps in
// quanta of 10 ms, and a quantum of wall time dt advances its work by
// dt * speed / 1000 / (tasks working on its host), both read from the
// host's vcpu file at every quantum. Each quantum enters the library, so a
// pending move happens there, and a moved task reads its new host's file; a
// move's blackout is not counted as work. Elsewhere the task computes: it
// spins until its CPU time has grown by the units (an emulated host's CPU
// limit then slows it to the host's speed).
#pragma once

#include <cstdint>
#include <optional>
#include <string>

namespace mpvm {

inline constexpr int64_t kWorkQuantumNs = 10'000'000;

struct VirtualCpu {
  int speed = 1000;  // sp=: 1000 is one CPU
  int working = 1;   // tasks inside mpvm_work on the host
};

// The host's virtual CPU, or nothing when `rundir` is no virtual-work host.
std::optional<VirtualCpu> ReadVirtualCpu(const std::string& rundir);

// Units of work one task does in `wall_ns` of wall time on `v`.
double VirtualProgress(const VirtualCpu& v, int64_t wall_ns);

// Spins until this process has used `ms` more milliseconds of CPU.
void Spin(double ms);

}  // namespace mpvm
