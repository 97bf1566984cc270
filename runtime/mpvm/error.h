// error.h — mpvm's internal error codes and their one mapping to PVM codes.
//
// Components return `Result<T>` (mpvm::expected<T, Err>); only the C API shell
// turns an Err into PVM's negative int with ToPvmCode(). The table in error.cc
// is the single place where the mapping lives, and it is tested entry by entry.
#pragma once

#include <string_view>
#include <version>

// std::expected where the standard library has it (GCC 12, C++23); Debian's
// tl::expected otherwise (clang with libstdc++ 12, used for libFuzzer builds).
#if defined(__cpp_lib_expected)
#include <expected>
namespace mpvm {
template <typename T, typename E>
using expected = std::expected<T, E>;
using std::unexpected;
}  // namespace mpvm
#else
#include <tl/expected.hpp>
namespace mpvm {
template <typename T, typename E>
using expected = tl::expected<T, E>;
using tl::unexpected;
}  // namespace mpvm
#endif

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
using Result = mpvm::expected<T, Err>;
using Status = mpvm::expected<void, Err>;

inline mpvm::unexpected<Err> Fail(Err e) { return mpvm::unexpected<Err>(e); }

// PVM's negative code for `e` (PvmBadParam = -2, ...).
int ToPvmCode(Err e);
// The Err for a PVM code; kDSysErr for codes PVM does not define.
Err FromPvmCode(int code);
// PVM's short text for a code ("Bad parameter"); "Unknown error" otherwise.
std::string_view PvmErrorText(int code);

}  // namespace mpvm
