// The mailbox concern alone: requests in, replies out, no sockets.
#include "core/mailbox.h"

#include <gtest/gtest.h>

namespace mpvm {
namespace {

constexpr int kPersistent = 1, kMultiInstance = 2, kOverWritable = 4, kFirstAvail = 8,
              kReadAndDelete = 16, kWaitForInfo = 32;
const Tid kA(0x40001), kB(0x40002);

class MailboxTest : public ::testing::Test {
 protected:
  int Put(Tid who, const std::string& name, int flags, const std::string& data = "x") {
    ctl::MboxPut p;
    p.set_name(name);
    p.set_flags(flags);
    p.set_data(data);
    box_.Put(1, ++rid_, who, p);
    return One().env.status().code();
  }
  ctl::MboxGetReply Get(Tid who, const std::string& name, int index, int flags) {
    ctl::MboxGet g;
    g.set_name(name);
    g.set_index(index);
    g.set_flags(flags);
    box_.Get(2, ++rid_, who, g);
    return One().env.mbox_get_reply();
  }
  int Del(Tid who, const std::string& name, int index) {
    ctl::MboxDel d;
    d.set_name(name);
    d.set_index(index);
    box_.Del(1, ++rid_, who, d);
    return One().env.status().code();
  }
  // The one reply the last request made.
  ReplyOut One() {
    auto out = box_.Replies().Take();
    EXPECT_EQ(out.size(), 1u);
    return out.empty() ? ReplyOut{} : out.front();
  }

  Mailbox box_;
  uint64_t rid_ = 0;
};

TEST_F(MailboxTest, PutGetAndTheirErrorsAsPvmHasThem) {
  EXPECT_EQ(Put(kA, "svc", 0), 0);
  EXPECT_EQ(Put(kB, "svc", 0), -33);  // PvmExists
  EXPECT_EQ(Put(kA, "multi", kMultiInstance), 0);
  EXPECT_EQ(Put(kB, "multi", kMultiInstance), 1);
  EXPECT_EQ(Get(kB, "svc", 0, 0).code(), 0);
  EXPECT_EQ(Get(kB, "nope", 0, 0).code(), -32);             // PvmNotFound
  EXPECT_EQ(Get(kB, "multi", 1, kFirstAvail).code(), 1);    // first available from 1
  EXPECT_EQ(Get(kB, "svc", 0, kReadAndDelete).code(), -8);  // a locked entry: PvmDenied
  EXPECT_EQ(Get(kA, "svc", 0, kReadAndDelete).code(), 0);   // its owner may
  EXPECT_EQ(Get(kA, "svc", 0, 0).code(), -32);              // and it is gone
}

TEST_F(MailboxTest, AnOverwritableEntryIsReplacedByAnyone) {
  EXPECT_EQ(Put(kA, "cfg", kOverWritable, "old"), 0);
  EXPECT_EQ(Put(kB, "cfg", 0, "new"), 0);
  auto r = Get(kA, "cfg", 0, 0);
  EXPECT_EQ(r.data(), "new");
  EXPECT_EQ(r.owner(), kB.raw());
}

TEST_F(MailboxTest, WaitForInfoIsAnsweredWhenTheEntryIsPut) {
  ctl::MboxGet g;
  g.set_name("late");
  g.set_flags(kWaitForInfo);
  box_.Get(2, 77, kB, g);
  EXPECT_TRUE(box_.Replies().Take().empty());  // it waits
  EXPECT_EQ(Put(kA, "other", 0), 0);           // not its class: still waits
  ctl::MboxPut p;
  p.set_name("late");
  p.set_data("v");
  box_.Put(1, 78, kA, p);
  auto out = box_.Replies().Take();
  ASSERT_EQ(out.size(), 2u);  // the put's status, then the waiter's answer
  EXPECT_EQ(out[1].conn, 2u);
  EXPECT_EQ(out[1].rid, 77u);
  EXPECT_EQ(out[1].env.mbox_get_reply().data(), "v");
}

TEST_F(MailboxTest, AClosedConnectionWaitsNoMore) {
  ctl::MboxGet g;
  g.set_name("late");
  g.set_flags(kWaitForInfo);
  box_.Get(2, 77, kB, g);
  box_.DropWaitersOf(2);
  EXPECT_EQ(Put(kA, "late", 0), 0);  // only the put's own status
}

TEST_F(MailboxTest, AnOwnerThatLeavesTakesItsEntriesButNotPersistentOnes) {
  EXPECT_EQ(Put(kA, "tmp", 0), 0);
  EXPECT_EQ(Put(kA, "keep", kPersistent), 0);
  EXPECT_EQ(box_.Owners(), (std::vector<int>{kA.raw(), kA.raw()}));
  box_.ForgetOwner(kA.raw());
  EXPECT_EQ(Get(kB, "tmp", 0, 0).code(), -32);
  auto kept = Get(kB, "keep", 0, 0);
  EXPECT_EQ(kept.code(), 0);
  EXPECT_EQ(kept.owner(), 0);          // unowned now
  EXPECT_EQ(Del(kB, "keep", 0), 0);    // so anyone may delete it
  EXPECT_EQ(Del(kB, "keep", 0), -32);  // and it is gone
  EXPECT_TRUE(box_.Owners().empty());
}

TEST_F(MailboxTest, DeleteOfAnotherTasksLockedEntryIsDenied) {
  EXPECT_EQ(Put(kA, "mine", 0), 0);
  EXPECT_EQ(Del(kB, "mine", 0), -8);  // PvmDenied
  EXPECT_EQ(Del(kA, "mine", 0), 0);
}

TEST_F(MailboxTest, InfoListsTheClassesMatchingAGlob) {
  Put(kA, "svc.one", 0);
  Put(kB, "svc.two", 0);
  Put(kA, "other", 0);
  ctl::MboxInfoRequest q;
  q.set_pattern("svc.*");
  box_.Info(3, 9, q);
  auto rep = One().env.mbox_info_reply();
  ASSERT_EQ(rep.classes_size(), 2);
  EXPECT_EQ(rep.classes(0).name(), "svc.one");
  EXPECT_EQ(rep.classes(1).owners(0), kB.raw());
}

}  // namespace
}  // namespace mpvm
