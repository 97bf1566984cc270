// Pending answers alone: each request is given back once, by expiry or by
// its host's loss, unless its answer came.
#include "core/pending_answers.h"

#include <gtest/gtest.h>

namespace mpvm {
namespace {

const Tid kAsker(0x40001), kOther(0x40002), kSubject(0x80001);

TEST(PendingAnswers, ARequestIsGivenBackOnceWhenItsHostLeavesOrItsTimeRunsOut) {
  PendingAnswers p;
  p.Expect({kAsker, 1, kSubject, 2, 100});
  p.Expect({kAsker, 2, kSubject, 3, 100});
  p.Expect({kOther, 1, kSubject, 2, 500});
  auto gone = p.HostGone(2);
  ASSERT_EQ(gone.size(), 2u);
  EXPECT_TRUE(p.HostGone(2).empty());
  EXPECT_TRUE(p.Expired(100).empty());  // not past its deadline yet
  auto late = p.Expired(101);
  ASSERT_EQ(late.size(), 1u);
  EXPECT_EQ(late[0].rid, 2u);
  EXPECT_TRUE(p.empty());
}

TEST(PendingAnswers, AnAnsweredOrForgottenRequestIsNotGivenBack) {
  PendingAnswers p;
  p.Expect({kAsker, 1, kSubject, 2, 100});
  p.Expect({kOther, 7, kSubject, 2, 100});
  p.Answered(kAsker, 1);
  p.Forget(kOther);
  EXPECT_TRUE(p.HostGone(2).empty());
  EXPECT_TRUE(p.Expired(1000).empty());
}

}  // namespace
}  // namespace mpvm
