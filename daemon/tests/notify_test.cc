// The notify registry alone: requests and events in, messages out.
#include "core/notify.h"

#include <gtest/gtest.h>

namespace mpvm {
namespace {

const Tid kWatcher(0x40001), kOther(0x40002);
constexpr int kTask = 0x80003, kHost = 0x80000;

TEST(NotifyRegistry, ATaskExitIsToldOnceWithTheTidAndTheWatchersTag) {
  NotifyRegistry n;
  n.Watch({kWatcher, kNotifyTaskExit, 99, 5, kTask}, true);
  EXPECT_TRUE(n.TakeMessages().empty());
  n.Fire(kNotifyTaskExit, kTask);
  auto out = n.TakeMessages();
  ASSERT_EQ(out.size(), 1u);
  EXPECT_EQ(out[0].to, kWatcher);
  EXPECT_EQ(out[0].tag, 99);
  EXPECT_EQ(out[0].ctx, 5);
  EXPECT_EQ(out[0].ints, std::vector<int>{kTask});
  n.Fire(kNotifyTaskExit, kTask);
  EXPECT_TRUE(n.TakeMessages().empty());  // once
}

TEST(NotifyRegistry, ATargetGoneAlreadyIsToldAtOnce) {
  NotifyRegistry n;
  n.Watch({kWatcher, kNotifyHostDelete, 7, 0, kHost}, false);
  auto out = n.TakeMessages();
  ASSERT_EQ(out.size(), 1u);
  EXPECT_EQ(out[0].ints, std::vector<int>{kHost});
  EXPECT_TRUE(n.WatchedTasks().empty());
}

TEST(NotifyRegistry, CancelTellsNowAsPvmDoes) {
  NotifyRegistry n;
  n.Watch({kWatcher, kNotifyTaskExit, 1, 0, kTask}, true);
  n.Watch({kWatcher, kNotifyTaskExit, 2, 0, kTask}, true);
  n.Cancel(kWatcher, kNotifyTaskExit, kTask, 2);
  auto out = n.TakeMessages();
  ASSERT_EQ(out.size(), 1u);
  EXPECT_EQ(out[0].tag, 2);
  n.Cancel(kWatcher, kNotifyTaskExit, kTask, -1);  // any tag
  EXPECT_EQ(n.TakeMessages().size(), 1u);
  EXPECT_TRUE(n.WatchedTasks().empty());
}

TEST(NotifyRegistry, HostAddsCountDownAndCarryTheNewHosts) {
  NotifyRegistry n;
  n.WatchHostAdds(kWatcher, 3, 0, 2, false);
  n.WatchHostAdds(kOther, 4, 0, -1, false);  // for ever
  n.HostsAdded({0x80000, 0xc0000});
  auto out = n.TakeMessages();
  ASSERT_EQ(out.size(), 2u);
  EXPECT_EQ(out[0].ints, (std::vector<int>{2, 0x80000, 0xc0000}));
  n.HostsAdded({0x100000});
  EXPECT_EQ(n.TakeMessages().size(), 2u);
  n.HostsAdded({0x140000});
  out = n.TakeMessages();
  ASSERT_EQ(out.size(), 1u);  // the first watcher's count ran out
  EXPECT_EQ(out[0].to, kOther);
  n.WatchHostAdds(kOther, 4, 0, 0, true);  // cancelled: nothing more
  n.HostsAdded({0x180000});
  EXPECT_TRUE(n.TakeMessages().empty());
}

TEST(NotifyRegistry, AWatcherThatLeavesOrMovesTakesItsRequests) {
  NotifyRegistry n;
  n.Watch({kWatcher, kNotifyTaskExit, 1, 0, kTask}, true);
  n.Watch({kOther, kNotifyTaskExit, 1, 0, kTask}, true);
  auto moved = n.TakeWatcher(kWatcher);
  ASSERT_EQ(moved.size(), 1u);
  EXPECT_EQ(moved[0].target, kTask);
  n.DropWatcher(kOther);
  n.Fire(kNotifyTaskExit, kTask);
  EXPECT_TRUE(n.TakeMessages().empty());
}

}  // namespace
}  // namespace mpvm
