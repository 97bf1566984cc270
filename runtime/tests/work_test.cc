// mpvm_work's pieces: the virtual CPU a host publishes, the progress of a
// quantum on it, and spinning for CPU time.
#include "mpvm/work.h"

#include <gtest/gtest.h>
#include <time.h>
#include <unistd.h>

#include <cstdlib>
#include <fstream>
#include <string>

#include "mpvm/paths.h"

namespace mpvm {
namespace {

class VirtualCpuTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char dir[] = "/tmp/mpvm-work-XXXXXX";
    ASSERT_NE(mkdtemp(dir), nullptr);
    dir_ = dir;
  }
  void TearDown() override {
    unlink(VirtualCpuPath(dir_).c_str());
    rmdir(dir_.c_str());
  }
  void Write(const std::string& text) { std::ofstream(VirtualCpuPath(dir_)) << text; }
  std::string dir_;
};

TEST_F(VirtualCpuTest, AHostWithoutTheFileIsNoVirtualHost) {
  EXPECT_FALSE(ReadVirtualCpu(dir_).has_value());
}

TEST_F(VirtualCpuTest, ReadsTheSpeedAndTheTasksWorking) {
  Write("400 3\n");
  auto v = ReadVirtualCpu(dir_);
  ASSERT_TRUE(v.has_value());
  EXPECT_EQ(v->speed, 400);
  EXPECT_EQ(v->working, 3);
}

TEST_F(VirtualCpuTest, AMalformedFileIsNoVirtualHost) {
  for (const char* bad : {"", "fast 2\n", "0 1\n", "-5 1\n", "400\n"}) {
    Write(bad);
    EXPECT_FALSE(ReadVirtualCpu(dir_).has_value()) << bad;
  }
}

TEST(VirtualProgress, ATaskAdvancesAtTheSpeedSharedByTheTasksWorking) {
  const int64_t second = 1'000'000'000;
  EXPECT_DOUBLE_EQ(VirtualProgress({1000, 1}, second), 1000);  // 1 s of one CPU
  EXPECT_DOUBLE_EQ(VirtualProgress({400, 1}, second), 400);
  EXPECT_DOUBLE_EQ(VirtualProgress({1000, 4}, second), 250);
  EXPECT_DOUBLE_EQ(VirtualProgress({1000, 0}, second), 1000);  // counted before it was
  EXPECT_DOUBLE_EQ(VirtualProgress({1000, 1}, -5), 0);
}

TEST(Spin, UsesThatMuchCpuTime) {
  timespec a{}, b{};
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &a);
  Spin(30);
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &b);
  const double ms = static_cast<double>(b.tv_sec - a.tv_sec) * 1e3 +
                    static_cast<double>(b.tv_nsec - a.tv_nsec) / 1e6;
  EXPECT_GE(ms, 30);
  EXPECT_LT(ms, 60);
}

}  // namespace
}  // namespace mpvm
