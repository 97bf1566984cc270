// error.h — mpvm's internal error codes and their one mapping to PVM codes.
//
// Components return `Result<T>` (std::expected<T, Err>); only the C API shell
// turns an Err into PVM's negative int with ToPvmCode(). The table in error.cc
// is the single place where the mapping lives, and it is tested entry by entry.
#pragma once

#include <expected>
#include <string_view>

namespace mpvm {

enum class Err {
  kBadParam,
  kMismatch,
  kOverflow,
  kNoData,
  kNoHost,
  kNoFile,
  kDenied,
  kNoMem,
  kBadMsg,
  kSysErr,
  kNoBuf,
  kNoSuchBuf,
  kNullGroup,
  kDupGroup,
  kNoGroup,
  kNotInGroup,
  kNoInst,
  kHostFail,
  kNoParent,
  kNotImpl,
  kDSysErr,
  kBadVersion,
  kOutOfRes,
  kDupHost,
  kCantStart,
  kAlready,
  kNoTask,
  kNotFound,
  kExists,
  kHostrNMstr,
  kParentNotSet,
  kIPLoopback,
};
inline constexpr int kErrCount = static_cast<int>(Err::kIPLoopback) + 1;

template <typename T>
using Result = std::expected<T, Err>;
using Status = std::expected<void, Err>;

inline std::unexpected<Err> Fail(Err e) { return std::unexpected<Err>(e); }

// PVM's negative code for `e` (PvmBadParam = -2, ...).
int ToPvmCode(Err e);
// The Err for a PVM code; kDSysErr for codes PVM does not define.
Err FromPvmCode(int code);
// PVM's short text for a code ("Bad parameter"); "Unknown error" otherwise.
std::string_view PvmErrorText(int code);

}  // namespace mpvm
