#include "mpvm/error.h"

#include <gtest/gtest.h>

namespace mpvm {
namespace {

// Every entry of the one error table, checked against PVM 3.4.6's codes.
TEST(ErrorTable, MapsEveryErrorToPvmsCode) {
  const std::pair<Err, int> expected[] = {
      {Err::kBadParam, -2},      {Err::kMismatch, -3},    {Err::kOverflow, -4},
      {Err::kNoData, -5},        {Err::kNoHost, -6},      {Err::kNoFile, -7},
      {Err::kDenied, -8},        {Err::kNoMem, -10},      {Err::kBadMsg, -12},
      {Err::kSysErr, -14},       {Err::kNoBuf, -15},      {Err::kNoSuchBuf, -16},
      {Err::kNullGroup, -17},    {Err::kDupGroup, -18},   {Err::kNoGroup, -19},
      {Err::kNotInGroup, -20},   {Err::kNoInst, -21},     {Err::kHostFail, -22},
      {Err::kNoParent, -23},     {Err::kNotImpl, -24},    {Err::kDSysErr, -25},
      {Err::kBadVersion, -26},   {Err::kOutOfRes, -27},   {Err::kDupHost, -28},
      {Err::kCantStart, -29},    {Err::kAlready, -30},    {Err::kNoTask, -31},
      {Err::kNotFound, -32},     {Err::kExists, -33},     {Err::kHostrNMstr, -34},
      {Err::kParentNotSet, -35}, {Err::kIPLoopback, -36},
  };
  ASSERT_EQ(std::size(expected), static_cast<size_t>(kErrCount));
  for (auto [e, code] : expected) {
    EXPECT_EQ(ToPvmCode(e), code);
    EXPECT_EQ(FromPvmCode(code), e);
    EXPECT_NE(PvmErrorText(code), "Unknown error");
  }
}

TEST(ErrorTable, UnknownCodesAreDaemonErrors) {
  EXPECT_EQ(FromPvmCode(-9), Err::kDSysErr);
  EXPECT_EQ(FromPvmCode(-999), Err::kDSysErr);
  EXPECT_EQ(PvmErrorText(-999), "Unknown error");
  EXPECT_EQ(PvmErrorText(0), "Ok");
}

TEST(ErrorTable, TextsMatchPvm) {
  EXPECT_EQ(PvmErrorText(-2), "Bad parameter");
  EXPECT_EQ(PvmErrorText(-5), "End of buffer");
  EXPECT_EQ(PvmErrorText(-14), "Can't contact local daemon");
  EXPECT_EQ(PvmErrorText(-31), "No such task");
}

}  // namespace
}  // namespace mpvm
