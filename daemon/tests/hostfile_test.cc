#include "hostfile.h"

#include <gtest/gtest.h>

namespace mpvm {
namespace {

TEST(Hostfile, HostsOptionsDefaultsAndComments) {
  auto r = ParseHostfile(
      "# my cluster\n"
      "* ep=/opt/bin sp=500\n"
      "alpha\n"
      "&beta sp=2000 lo=me   # slow start\n"
      "\n"
      "gamma ip=10.0.0.3 wd=/scratch dx=/opt/mpvm/bin/mpvmd so=ms\n"
      "delta local=1\n",
      "hosts");
  ASSERT_TRUE(r.has_value()) << r.error().message;
  ASSERT_EQ(r->size(), 4u);
  const auto& h = *r;
  EXPECT_EQ(h[0].name, "alpha");
  EXPECT_EQ(h[0].line, 3);
  EXPECT_EQ(h[0].speed, 500);  // from the defaults line
  EXPECT_EQ(h[0].ep, "/opt/bin");
  EXPECT_TRUE(h[1].deferred);
  EXPECT_EQ(h[1].name, "beta");
  EXPECT_EQ(h[1].speed, 2000);
  EXPECT_EQ(h[1].login, "me");
  EXPECT_EQ(h[2].ip, "10.0.0.3");
  EXPECT_EQ(h[2].wd, "/scratch");
  EXPECT_EQ(h[2].daemon, "/opt/mpvm/bin/mpvmd");
  EXPECT_EQ(h[2].startup, "ms");
  EXPECT_TRUE(h[3].local);
}

TEST(Hostfile, EveryPvmOptionIsAcceptedAndPathsAreExpanded) {
  VarLookup env = [](std::string_view n) -> std::optional<std::string> {
    if (n == "HOME") return "/home/ann";
    if (n == "PVM_ROOT") return "/usr/lib/pvm3";
    if (n == "PVM_ARCH") return "LINUX64";
    return std::nullopt;
  };
  auto r = ParseHostfile(
      "* so=pw\n"
      "node1 lo=ann so=ms dx=$PVM_ROOT/lib/pvmd ep=$HOME/pvm3/bin/$PVM_ARCH:${PVM_ROOT}/bin "
      "sp=2000 bx=$PVM_ROOT/lib/debugger wd=$HOME/work ip=node1-fast id=vm7\n"
      "node2\n",
      "hosts", env);
  ASSERT_TRUE(r.has_value()) << r.error().message;
  const auto& h = (*r)[0];
  EXPECT_EQ(h.login, "ann");
  EXPECT_EQ(h.startup, "ms");
  EXPECT_EQ(h.daemon, "/usr/lib/pvm3/lib/pvmd");
  EXPECT_EQ(h.ep, "/home/ann/pvm3/bin/LINUX64:/usr/lib/pvm3/bin");
  EXPECT_EQ(h.speed, 2000);
  EXPECT_EQ(h.debugger, "/usr/lib/pvm3/lib/debugger");
  EXPECT_EQ(h.wd, "/home/ann/work");
  EXPECT_EQ(h.ip, "node1-fast");
  EXPECT_EQ(h.vmid, "vm7");
  EXPECT_EQ((*r)[1].startup, "pw");  // from the `*` line
}

TEST(Hostfile, DefaultLinesAreNotCumulative) {
  auto r = ParseHostfile("* dx=/opt/pvmd\n* ep=/bin\nalpha\n", "h");
  ASSERT_TRUE(r.has_value());
  EXPECT_EQ((*r)[0].ep, "/bin");
  EXPECT_EQ((*r)[0].daemon, "");  // reset by the second `*` line, as in PVM
}

TEST(Hostfile, ExpandVarsLeavesLoneDollarsAndNamesWhatIsUnset) {
  VarLookup env = [](std::string_view n) -> std::optional<std::string> {
    if (n == "A") return "x";
    return std::nullopt;
  };
  EXPECT_EQ(ExpandVars("$A/${A}$/a$", env).value(), "x/x$/a$");
  EXPECT_EQ(ExpandVars("$NOPE/bin", env).error(), "$NOPE is not set");
  EXPECT_NE(ExpandVars("${A", env).error().find("no '}'"), std::string::npos);
}

TEST(Hostfile, PvmArchDefaultsToMpvmsArchitecture) {
  EXPECT_TRUE(EnvironmentVar("PVM_ARCH").has_value());
}

TEST(Hostfile, DefaultSpeedIsPvms) {
  auto r = ParseHostfile("solo\n", "h");
  ASSERT_TRUE(r.has_value());
  EXPECT_EQ((*r)[0].speed, 1000);
}

struct Bad {
  const char* text;
  int line;
  const char* words;
};

class HostfileErrors : public ::testing::TestWithParam<Bad> {};

TEST_P(HostfileErrors, NameTheLineAndTheProblem) {
  auto r = ParseHostfile(GetParam().text, "cluster.hosts");
  ASSERT_FALSE(r.has_value());
  EXPECT_EQ(r.error().line, GetParam().line);
  EXPECT_NE(r.error().message.find("cluster.hosts:" + std::to_string(GetParam().line) + ":"),
            std::string::npos)
      << r.error().message;
  EXPECT_NE(r.error().message.find(GetParam().words), std::string::npos) << r.error().message;
}

INSTANTIATE_TEST_SUITE_P(
    Table, HostfileErrors,
    ::testing::Values(
        Bad{"a\nb sp=fast\n", 2, "sp= needs a positive integer"}, Bad{"a sp=0\n", 1, "positive"},
        Bad{"a sp=12x\n", 1, "positive"}, Bad{"a\n\n# c\nb bogus=1\n", 4, "unknown option 'bogus'"},
        Bad{"a nokey\n", 1, "key=value"}, Bad{"a\na\n", 2, "listed twice"},
        Bad{"* sp=-1\n", 1, "positive"}, Bad{"a ep=\n", 1, "ep= needs a value"},
        Bad{"bad/name\n", 1, "not a host name"}, Bad{"a local=yes\n", 1, "local= takes 0 or 1"},
        Bad{"a so=xyz\n", 1, "so= takes"},
        Bad{"a\nb ep=$MPVM_SURELY_UNSET_VAR/bin\n", 2, "ep=: $MPVM_SURELY_UNSET_VAR is not set"},
        Bad{"a bx=\n", 1, "bx= needs a value"}));

TEST(Hostfile, FindSelf) {
  auto r = ParseHostfile("far sp=10\nnode1.example.org sp=3000\nemu local=1\n", "h");
  ASSERT_TRUE(r.has_value());
  auto self = FindSelf(*r, "node1");
  ASSERT_TRUE(self.has_value());
  EXPECT_EQ(self->speed, 3000);
  EXPECT_FALSE(FindSelf(*r, "other").has_value());
}

}  // namespace
}  // namespace mpvm
