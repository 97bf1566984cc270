// Unit tests of the delivery ledgers: what a sender keeps and sends again,
// and when a receiver acknowledges.
#include "mpvm/retransmit.h"

#include <gtest/gtest.h>

namespace mpvm {
namespace {

constexpr int64_t kMs = 1'000'000;

FrameHeader Data(int32_t dst, uint64_t seq) {
  FrameHeader h;
  h.src = 0x40001;
  h.dst = dst;
  h.seq = seq;
  return h;
}

void Keep(SendLedger& s, int32_t dst, uint64_t seq, int64_t now) {
  const uint8_t aux[2] = {1, 2};
  const uint8_t body[3] = {3, 4, static_cast<uint8_t>(seq)};
  s.Keep(Data(dst, seq), aux, body, now);
}

TEST(SendLedger, KeepsAFrameWholeUntilItIsAcknowledged) {
  SendLedger s;
  Keep(s, 7, 1, 0);
  Keep(s, 7, 2, 0);
  EXPECT_EQ(s.frames(), 2u);
  EXPECT_EQ(s.bytes(), 10u);
  s.Acked(7, 1, 5 * kMs);
  EXPECT_EQ(s.frames(), 1u);
  s.Acked(7, 2, 6 * kMs);
  EXPECT_EQ(s.frames(), 0u);
  EXPECT_EQ(s.bytes(), 0u);
  EXPECT_EQ(s.NextDue(), INT64_MAX);
}

TEST(SendLedger, AReceiverSilentTooLongIsAskedWithAWaitThatBacksOff) {
  SendLedger s;
  Keep(s, 7, 1, 0);
  Keep(s, 7, 2, 0);
  EXPECT_TRUE(s.ProbesDue(SendLedger::kFirstWaitNs - 1).empty());
  auto probes = s.ProbesDue(SendLedger::kFirstWaitNs);
  ASSERT_EQ(probes.size(), 1u);
  EXPECT_EQ(probes[0], (std::pair<int32_t, uint64_t>{7, 2}));  // "I sent you up to 2"
  EXPECT_EQ(s.NextDue(), 3 * SendLedger::kFirstWaitNs);        // waited 1 s, now 2 s
}

TEST(SendLedger, KeptFramesComeBackWholeInOrderForAResend) {
  SendLedger s;
  Keep(s, 7, 1, 0);
  Keep(s, 7, 2, 0);
  Keep(s, 9, 1, 0);
  auto again = s.Frames(7);
  ASSERT_EQ(again.size(), 2u);
  EXPECT_EQ(again[0]->header.seq, 1u);
  EXPECT_EQ(again[1]->header.seq, 2u);
  EXPECT_EQ(again[0]->payload, (std::vector<uint8_t>{1, 2, 3, 4, 1}));
  EXPECT_EQ(again[0]->header.aux_length, 2u);  // where the type map ends
  EXPECT_EQ(again[0]->header.length, 5u);
}

TEST(SendLedger, ABrokenWayIsProbedAtOnce) {
  SendLedger s;
  Keep(s, 7, 1, 0);
  s.ProbeNow(7, 10 * kMs);
  EXPECT_EQ(s.ProbesDue(10 * kMs).size(), 1u);
}

TEST(SendLedger, ProgressResetsTheWait) {
  SendLedger s;
  Keep(s, 7, 1, 0);
  Keep(s, 7, 2, 0);
  s.ProbesDue(SendLedger::kFirstWaitNs);  // backs off to 2 s
  s.Acked(7, 1, SendLedger::kFirstWaitNs + kMs);
  EXPECT_EQ(s.NextDue(), 2 * SendLedger::kFirstWaitNs + kMs);
}

TEST(SendLedger, GivesUpOnAReceiverThatNeverAnswers) {
  SendLedger s;
  Keep(s, 7, 1, 0);
  s.ProbesDue(SendLedger::kGiveUpNs + 1);
  EXPECT_EQ(s.frames(), 0u);
  EXPECT_EQ(s.abandoned(), 1u);
}

TEST(SendLedger, NothingIsKeptForAReceiverThatIsGone) {
  SendLedger s;
  Keep(s, 7, 1, 0);
  Keep(s, 9, 1, 0);
  s.Forget(7);
  EXPECT_EQ(s.Peers(), std::vector<int32_t>{9});
  EXPECT_EQ(s.bytes(), 5u);
}

TEST(AckLedger, AcknowledgesInBatchesOrAfterAShortDelay) {
  AckLedger a;
  a.Received(7, 1, 0);
  EXPECT_TRUE(a.Due(AckLedger::kAckDelayNs - 1).empty());
  EXPECT_EQ(a.NextDue(), AckLedger::kAckDelayNs);
  auto due = a.Due(AckLedger::kAckDelayNs);
  ASSERT_EQ(due.size(), 1u);
  EXPECT_EQ(due[0], (std::pair<int32_t, uint64_t>{7, 1}));
  EXPECT_TRUE(a.Due(AckLedger::kAckDelayNs * 10).empty());  // nothing new
  a.Received(7, AckLedger::kAckEvery + 1, AckLedger::kAckDelayNs * 10);
  due = a.Due(AckLedger::kAckDelayNs * 10);  // a batch is due at once
  ASSERT_EQ(due.size(), 1u);
  EXPECT_EQ(due[0].second, AckLedger::kAckEvery + 1);
}

TEST(AckLedger, ALargeFrameIsAcknowledgedAtOnce) {
  AckLedger a;
  a.Received(7, 1, 0, AckLedger::kAckAtOnceBytes);
  EXPECT_EQ(a.Due(0).size(), 1u);
}

TEST(AckLedger, AllTakesEveryPendingAcknowledgement) {
  AckLedger a;
  a.Received(7, 3, 0);
  a.Received(9, 1, 0);
  EXPECT_EQ(a.Due(0, /*all=*/true).size(), 2u);
  EXPECT_EQ(a.NextDue(), INT64_MAX);
}

}  // namespace
}  // namespace mpvm
