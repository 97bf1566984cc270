#include "mpvm/error.h"

#include <array>

namespace mpvm {
namespace {

struct Entry {
  Err err;
  int code;
  std::string_view text;
};

// The one mapping between mpvm's errors and PVM 3.4's codes.
constexpr std::array<Entry, kErrCount> kTable = {{
    {Err::kBadParam, -2, "Bad parameter"},
    {Err::kMismatch, -3, "Parameter mismatch"},
    {Err::kOverflow, -4, "Value too large"},
    {Err::kNoData, -5, "End of buffer"},
    {Err::kNoHost, -6, "No such host"},
    {Err::kNoFile, -7, "No such file"},
    {Err::kDenied, -8, "Permission denied"},
    {Err::kNoMem, -10, "Malloc failed"},
    {Err::kBadMsg, -12, "Can't decode message"},
    {Err::kSysErr, -14, "Can't contact local daemon"},
    {Err::kNoBuf, -15, "No current buffer"},
    {Err::kNoSuchBuf, -16, "No such buffer"},
    {Err::kNullGroup, -17, "Null group name"},
    {Err::kDupGroup, -18, "Already in group"},
    {Err::kNoGroup, -19, "No such group"},
    {Err::kNotInGroup, -20, "Not in group"},
    {Err::kNoInst, -21, "No such instance"},
    {Err::kHostFail, -22, "Host failed"},
    {Err::kNoParent, -23, "No parent task"},
    {Err::kNotImpl, -24, "Not implemented"},
    {Err::kDSysErr, -25, "Pvmd system error"},
    {Err::kBadVersion, -26, "Version mismatch"},
    {Err::kOutOfRes, -27, "Out of resources"},
    {Err::kDupHost, -28, "Duplicate host"},
    {Err::kCantStart, -29, "Can't start pvmd"},
    {Err::kAlready, -30, "Already in progress"},
    {Err::kNoTask, -31, "No such task"},
    {Err::kNotFound, -32, "Not Found"},
    {Err::kExists, -33, "Already exists"},
    {Err::kHostrNMstr, -34, "Hoster run on non-master host"},
    {Err::kParentNotSet, -35, "Spawning parent set PvmNoSpawnParent"},
    {Err::kIPLoopback, -36, "Master Host IP is Loopback"},
}};

}  // namespace

int ToPvmCode(Err e) { return kTable[static_cast<int>(e)].code; }

Err FromPvmCode(int code) {
  for (const Entry& e : kTable)
    if (e.code == code) return e.err;
  return Err::kDSysErr;
}

std::string_view PvmErrorText(int code) {
  if (code == 0) return "Ok";
  for (const Entry& e : kTable)
    if (e.code == code) return e.text;
  return "Unknown error";
}

}  // namespace mpvm
