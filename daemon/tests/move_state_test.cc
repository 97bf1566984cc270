// The migration state machine's table: a test per allowed transition, and
// every pair it does not list is refused.
#include "core/move_state.h"

#include <gtest/gtest.h>

#include <set>
#include <string>

namespace mpvm {
namespace {

constexpr MoveState kStates[] = {MoveState::kOffered,   MoveState::kAccepted, MoveState::kFrozen,
                                 MoveState::kCommitted, MoveState::kDone,     MoveState::kFailed};
constexpr MoveEvent kEvents[] = {MoveEvent::kAccepted,      MoveEvent::kRefused,
                                 MoveEvent::kFrozen,        MoveEvent::kRestored,
                                 MoveEvent::kReported,      MoveEvent::kTaskFailed,
                                 MoveEvent::kTaskEnded,     MoveEvent::kOfferTimeout,
                                 MoveEvent::kFreezeTimeout, MoveEvent::kDestinationDied};

class EveryTransition : public ::testing::TestWithParam<MoveTransition> {};

TEST_P(EveryTransition, LeadsWhereTheTableSays) {
  const auto& t = GetParam();
  auto next = NextMoveState(t.from, t.event);
  ASSERT_TRUE(next.has_value());
  EXPECT_EQ(*next, t.to);
}

INSTANTIATE_TEST_SUITE_P(MoveTable, EveryTransition, ::testing::ValuesIn(kMoveTable),
                         [](const ::testing::TestParamInfo<MoveTransition>& p) {
                           std::string name = std::string(MoveStateName(p.param.from)) + "_on_" +
                                              std::string(MoveEventName(p.param.event));
                           for (char& c : name)
                             if (!std::isalnum(static_cast<unsigned char>(c))) c = '_';
                           return name;
                         });

TEST(MoveTable, EveryPairItDoesNotListIsRefused) {
  std::set<std::pair<MoveState, MoveEvent>> listed;
  for (const auto& t : kMoveTable) listed.insert({t.from, t.event});
  int refused = 0;
  for (MoveState s : kStates)
    for (MoveEvent e : kEvents) {
      if (listed.contains({s, e})) continue;
      EXPECT_FALSE(NextMoveState(s, e).has_value())
          << MoveStateName(s) << " on " << MoveEventName(e);
      ++refused;
    }
  EXPECT_EQ(refused, 60 - static_cast<int>(std::size(kMoveTable)));
}

TEST(MoveTable, TheEndsAreTerminalAndOnlyPendingMovesCanFailBackToTheSource) {
  for (MoveEvent e : kEvents) {
    EXPECT_FALSE(NextMoveState(MoveState::kDone, e).has_value());
    EXPECT_FALSE(NextMoveState(MoveState::kFailed, e).has_value());
    // After the commit the task runs at the destination: nothing fails it back.
    auto after = NextMoveState(MoveState::kCommitted, e);
    EXPECT_TRUE(!after || *after == MoveState::kDone);
  }
  EXPECT_TRUE(MovePending(MoveState::kFrozen));
  EXPECT_FALSE(MovePending(MoveState::kCommitted));
}

TEST(MoveTable, EveryStateIsReachableFromAnOffer) {
  std::set<MoveState> seen = {MoveState::kOffered};
  for (bool grew = true; grew;) {
    grew = false;
    for (const auto& t : kMoveTable)
      if (seen.contains(t.from) && seen.insert(t.to).second) grew = true;
  }
  EXPECT_EQ(seen.size(), std::size(kStates));
}

}  // namespace
}  // namespace mpvm
