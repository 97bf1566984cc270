#include "mpvm/spin.h"

#include <gtest/gtest.h>
#include <sched.h>

namespace mpvm {
namespace {

TEST(SpinPolicy, SpinsOnlyWithACpuToSpareForTheSender) {
  EXPECT_TRUE(SpinPolicy::Decide(2, 1));
  EXPECT_TRUE(SpinPolicy::Decide(2, 2));
  EXPECT_FALSE(SpinPolicy::Decide(1, 1));   // pinned to one CPU: the sender needs it
  EXPECT_FALSE(SpinPolicy::Decide(2, 3));   // more ready than CPUs
  EXPECT_FALSE(SpinPolicy::Decide(2, 17));  // a ring of 16 on 2 CPUs
}

SpinPolicy::Cpus g_cpus;
SpinPolicy::Cpus Probe() { return g_cpus; }

// The answer is kept for a second (the check reads /proc), and looked at
// again after: a moved task follows its new host's CPUs.
TEST(SpinPolicy, LooksAtTheCpusAgainOnceASecond) {
  SpinPolicy p(&Probe);
  g_cpus = {.allowed = 1, .running = 1};
  EXPECT_FALSE(p.Allowed(1));
  g_cpus = {.allowed = 2, .running = 1};
  EXPECT_FALSE(p.Allowed(1 + SpinPolicy::kRecheckNs / 2));  // kept
  EXPECT_TRUE(p.Allowed(1 + SpinPolicy::kRecheckNs));
  g_cpus = {.allowed = 2, .running = 9};
  EXPECT_FALSE(p.Allowed(1 + 2 * SpinPolicy::kRecheckNs));
}

TEST(SpinPolicy, ReadsThisProcesssCpus) {
  cpu_set_t set;
  ASSERT_EQ(sched_getaffinity(0, sizeof set, &set), 0);
  const SpinPolicy::Cpus c = SpinPolicy::ReadCpus();
  EXPECT_EQ(c.allowed, CPU_COUNT(&set));
  EXPECT_GE(c.running, 1);  // this test, at least
}

}  // namespace
}  // namespace mpvm
