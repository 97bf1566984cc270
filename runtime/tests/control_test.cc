#include "mpvm/control.h"

#include <gtest/gtest.h>

namespace mpvm {
namespace {

TEST(Control, RoundTrip) {
  ctl::Envelope e;
  e.set_version(kControlVersion);
  e.set_rid(42);
  e.mutable_spawn()->set_file("a.out");
  e.mutable_spawn()->set_ntask(3);
  auto bytes = EncodeControl(e);
  auto d = DecodeControl(bytes);
  ASSERT_TRUE(d.has_value()) << d.error();
  EXPECT_EQ(d->rid(), 42u);
  EXPECT_EQ(d->spawn().file(), "a.out");
  EXPECT_EQ(d->spawn().ntask(), 3);
}

TEST(Control, RejectsOtherVersionsWithAReason) {
  ctl::Envelope e;
  e.set_version(7);
  e.mutable_halt();
  auto d = DecodeControl(EncodeControl(e));
  ASSERT_FALSE(d.has_value());
  EXPECT_NE(d.error().find("version 7"), std::string::npos);
}

TEST(Control, RejectsGarbageAndEmptyBodies) {
  std::vector<uint8_t> junk = {0xff, 0xff, 0xff, 0xff, 0x0f};
  EXPECT_FALSE(DecodeControl(junk).has_value());
  ctl::Envelope e;
  e.set_version(kControlVersion);
  auto d = DecodeControl(EncodeControl(e));
  ASSERT_FALSE(d.has_value());
  EXPECT_NE(d.error().find("no body"), std::string::npos);
}

}  // namespace
}  // namespace mpvm
