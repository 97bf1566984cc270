// The host's measured speed: the scale, and the loop measured on this machine.
#include "server/host_speed.h"

#include <gtest/gtest.h>

namespace mpvm {
namespace {

TEST(HostSpeed, TheReferenceRunIsAThousandAndTwiceAsLongIsHalf) {
  EXPECT_EQ(SpeedFromRunTime(1'800'000), 1000);
  EXPECT_EQ(SpeedFromRunTime(3'600'000), 500);
  EXPECT_EQ(SpeedFromRunTime(600'000), 3000);
  EXPECT_EQ(SpeedFromRunTime(1'790'000), 1010);  // to a multiple of 10
}

TEST(HostSpeed, StaysInsidePvmsRange) {
  EXPECT_EQ(SpeedFromRunTime(0), 1'000'000);
  EXPECT_EQ(SpeedFromRunTime(1), 1'000'000);
  EXPECT_EQ(SpeedFromRunTime(int64_t{1} << 40), 10);
}

TEST(HostSpeed, MeasuringTwiceAgreesWithinAFifth) {
  // The best of several runs, in thread CPU time: other work on the machine
  // does not halve it. Bounds wide enough for any machine this builds on.
  const int a = CalibrateHostSpeed();
  const int b = CalibrateHostSpeed();
  EXPECT_GE(a, 10);
  EXPECT_LE(a, 1'000'000);
  EXPECT_NEAR(static_cast<double>(a) / b, 1.0, 0.2);
}

}  // namespace
}  // namespace mpvm
