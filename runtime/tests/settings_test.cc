// The environment read in one place (mpvm/settings.h): defaults, values,
// and an error that names the variable for each bad value.
#include "mpvm/settings.h"

#include <gtest/gtest.h>

#include <map>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace mpvm {
namespace {

mpvm::expected<Settings, std::string> Read(const std::map<std::string, std::string>& env) {
  return ReadSettings([&](const char* name) -> const char* {
    auto it = env.find(name);
    return it == env.end() ? nullptr : it->second.c_str();
  });
}

TEST(Settings, NothingSetGivesTheDefaults) {
  auto s = Read({});
  ASSERT_TRUE(s) << s.error();
  EXPECT_FALSE(s->link_encrypt);
  EXPECT_TRUE(s->direct_links);
  EXPECT_FALSE(s->dead_after_s.has_value());
  EXPECT_FALSE(s->spin_us.has_value());
  EXPECT_EQ(s->test_moves, 0);
  EXPECT_EQ(s->tmp, "/tmp");
  EXPECT_TRUE(s->rsh.empty());
}

TEST(Settings, GoodValuesAreTyped) {
  auto s = Read({{"MPVM_DEAD_AFTER", "12"},
                 {"MPVM_BALANCE_PERIOD", "0.25"},
                 {"MPVM_BALANCE_RESIDENCY", "0"},
                 {"MPVM_SPIN_US", "0"},
                 {"MPVM_DIRECT_LINKS", "0"},
                 {"MPVM_LINK_ENCRYPT", "1"},
                 {"MPVM_KEEP_LOG", "1"},
                 {"MPVM_LOG_LEVEL", "debug"},
                 {"MPVM_FAULT", "exit-on-handover"},
                 {"MPVM_TEST_MOVES", "3"},
                 {"MPVM_CPU_LIMIT", "duty"},
                 {"MPVM_EMULATE", "loopback"},
                 {"MPVM_EMULATE_LINK", "100mbit"}});
  ASSERT_TRUE(s) << s.error();
  EXPECT_EQ(*s->dead_after_s, 12.0);
  EXPECT_EQ(*s->balance_period_s, 0.25);
  EXPECT_EQ(*s->balance_residency_s, 0.0);
  EXPECT_EQ(*s->spin_us, 0);
  EXPECT_FALSE(s->direct_links);
  EXPECT_TRUE(s->link_encrypt && s->keep_log && s->cpu_limit_duty && s->emulate_loopback);
  EXPECT_EQ(s->log_level, "debug");
  EXPECT_EQ(s->fault, "exit-on-handover");
  EXPECT_EQ(s->test_moves, 3);
  EXPECT_EQ(s->emulate_link, "100mbit");
}

TEST(Settings, MpvmRshWinsOverPvmRsh) {
  EXPECT_EQ(Read({{"PVM_RSH", "rsh"}})->rsh, "rsh");
  EXPECT_EQ(Read({{"PVM_RSH", "rsh"}, {"MPVM_RSH", "ssh -p 2222"}})->rsh, "ssh -p 2222");
}

TEST(Settings, AnEmptyValueIsTheDefault) {
  auto s = Read({{"MPVM_DEAD_AFTER", ""}, {"MPVM_LINK_ENCRYPT", ""}});
  ASSERT_TRUE(s) << s.error();
  EXPECT_FALSE(s->dead_after_s.has_value());
}

TEST(Settings, EachBadValueIsAnErrorNamingTheVariableAndTheValue) {
  const std::vector<std::pair<std::string, std::string>> bad = {
      {"MPVM_DEAD_AFTER", "3x"},        {"MPVM_DEAD_AFTER", "0"},
      {"MPVM_BALANCE_PERIOD", "-1"},    {"MPVM_BALANCE_RESIDENCY", "soon"},
      {"MPVM_SPIN_US", "abc"},          {"MPVM_SPIN_US", "-5"},
      {"MPVM_DIRECT_LINKS", "no"},      {"MPVM_LINK_ENCRYPT", "yes"},
      {"MPVM_LOG_LEVEL", "loud"},       {"MPVM_FAULT", "crash"},
      {"MPVM_TEST_MOVES", "many"},      {"MPVM_CPU_LIMIT", "cgroups"},
      {"MPVM_EMULATE", "netns"},        {"MPVM_EMULATE_LINK", "fast"},
      {"MPVM_EMULATE_LINK", "100mbps"}, {"MPVM_EMULATE_LINK", "1..2mbit"},
  };
  for (const auto& [name, value] : bad) {
    auto s = Read({{name, value}});
    ASSERT_FALSE(s) << name << "=" << value;
    EXPECT_EQ(s.error().rfind(name + "=" + value + ": not ", 0), 0u) << s.error();
  }
}

TEST(Settings, DebugAndKeepLogAreOnWhenSetAsTheyAlwaysWere) {
  EXPECT_TRUE(Read({{"MPVM_DEBUG", "yes"}})->debug);
  EXPECT_FALSE(Read({{"MPVM_DEBUG", "0"}})->debug);
  EXPECT_TRUE(Read({{"MPVM_KEEP_LOG", "true"}})->keep_log);
  EXPECT_EQ(Read({{"MPVM_LOG_LEVEL", "warning"}})->log_level, "warning");  // spdlog's names
}

TEST(Settings, ATaskLeavesADaemonsBadSettingToTheDaemon) {
  auto lookup = [](const char* n) -> const char* {
    return std::string_view(n) == "MPVM_FAULT" ? "crash" : nullptr;
  };
  auto task = ReadSettings(lookup, SettingsFor::kTask);
  ASSERT_TRUE(task) << task.error();
  EXPECT_TRUE(task->fault.empty());  // the default
  auto daemon = ReadSettings(lookup, SettingsFor::kDaemon);
  ASSERT_FALSE(daemon);
  EXPECT_EQ(daemon.error().rfind("MPVM_FAULT=crash: not ", 0), 0u);
}

}  // namespace
}  // namespace mpvm
