#include "mpvm/traffic.h"

#include <gtest/gtest.h>

namespace mpvm {
namespace {

constexpr int64_t kS = 1'000'000'000;

// A task tells its daemon what it sent at most once a second, and only when
// it sent something: a busy ring pays one small write a second for it.
TEST(TrafficCounter, ANoteIsDueOnceASecondWithWhatWasSentSinceTheLast) {
  TrafficCounter c;
  EXPECT_FALSE(c.Due(10 * kS));  // starts the span
  c.Count(0x80001, 1000);
  c.Count(0x80001, 24);
  c.Count(0xc0001, 7);
  EXPECT_FALSE(c.Due(10 * kS + kS / 2));  // not a second yet
  auto note = c.Due(11 * kS);
  ASSERT_TRUE(note);
  EXPECT_EQ(note->over_ns(), kS);
  ASSERT_EQ(note->peers_size(), 2);
  uint64_t total = 0;
  for (const auto& p : note->peers()) total += p.bytes();
  EXPECT_EQ(total, 1031u);
  EXPECT_FALSE(c.Due(13 * kS));  // nothing sent since: no note
  c.Count(0x80001, 5);
  note = c.Due(13 * kS + 1);
  ASSERT_TRUE(note);
  EXPECT_EQ(note->over_ns(), 2 * kS + 1);  // the quiet seconds count in the span
  ASSERT_EQ(note->peers_size(), 1);
  EXPECT_EQ(note->peers(0).bytes(), 5u);
}

// A task that talks to thousands of peers names its busiest few; a clock
// that went back (a move to a host whose clock is behind) restarts the span.
TEST(TrafficCounter, ANoteNamesTheBusiestPeersAndSurvivesAClockGoingBack) {
  TrafficCounter c;
  c.Due(10 * kS);
  for (int i = 0; i < 1000; ++i) c.Count(0x80001 + i, static_cast<size_t>(i));
  auto note = c.Due(11 * kS);
  ASSERT_TRUE(note);
  ASSERT_EQ(note->peers_size(), static_cast<int>(TrafficCounter::kMaxPeers));
  for (const auto& p : note->peers()) EXPECT_GE(p.bytes(), 1000u - TrafficCounter::kMaxPeers);
  c.Count(0x80001, 10);
  EXPECT_FALSE(c.Due(2 * kS));  // behind: the span starts again here
  note = c.Due(3 * kS);
  ASSERT_TRUE(note);
  EXPECT_EQ(note->over_ns(), kS);
}

}  // namespace
}  // namespace mpvm
