// tid.h — task identifiers.
//
// A Tid has PVM's shape: bits 18..29 name the host where the task was born,
// bits 0..17 are a per-host counter. The host field is an identity, never a
// location (a migrated task keeps its tid). Daemons are "host tids": the host
// field with a zero local part, as PVM's pvmds are (t40000 for host 1).
//
// Example:
//   Tid t = Tid::Make(HostIndex{1}, 5);   // t40005
//   t.str() == "t40005"; t.host() == HostIndex{1}
#pragma once

#include <fmt/format.h>

#include <compare>
#include <cstdint>
#include <string>

namespace mpvm {

struct HostIndex {
  int value = 0;
  auto operator<=>(const HostIndex&) const = default;
};

class Tid {
 public:
  static constexpr int kHostShift = 18;
  static constexpr int32_t kLocalMask = 0x3ffff;
  static constexpr int32_t kHostMask = 0x3ffc0000;
  static constexpr int kMaxHosts = 0xfff;

  constexpr Tid() = default;
  constexpr explicit Tid(int32_t raw) : raw_(raw) {}
  static constexpr Tid Make(HostIndex h, int32_t local) {
    return Tid((h.value << kHostShift) | (local & kLocalMask));
  }
  static constexpr Tid DaemonOf(HostIndex h) { return Make(h, 0); }

  constexpr int32_t raw() const { return raw_; }
  constexpr HostIndex host() const { return HostIndex{(raw_ & kHostMask) >> kHostShift}; }
  constexpr int32_t local() const { return raw_ & kLocalMask; }
  constexpr bool is_daemon() const { return raw_ > 0 && local() == 0; }
  // A tid a task could have: positive, with a host and a local part.
  constexpr bool is_task() const {
    return raw_ > 0 && (raw_ & ~(kHostMask | kLocalMask)) == 0 && host().value > 0 && local() > 0;
  }
  std::string str() const { return fmt::format("t{:x}", raw_); }

  auto operator<=>(const Tid&) const = default;

 private:
  int32_t raw_ = 0;
};

}  // namespace mpvm

template <>
struct std::hash<mpvm::Tid> {
  size_t operator()(mpvm::Tid t) const noexcept { return std::hash<int32_t>{}(t.raw()); }
};
