// The checks on what a daemon and a restore process read from a moving task:
// the handover (migrate_wire.h) and the image's header and region table
// (ckpt/image.h). Both see bytes from another process, so a malformed
// message must be refused with a reason, never acted on.
#include "mpvm/migrate_wire.h"

#include <gtest/gtest.h>

#include <cstring>
#include <memory>
#include <vector>

#include "mpvm/ckpt/image.h"

namespace mpvm {
namespace {

using migrate::CheckHandover;
using migrate::HandoverHead;
using migrate::LinkDesc;
using migrate::LinkKind;

HandoverHead Head(uint32_t nlinks) {
  HandoverHead h{};
  std::memcpy(h.magic, migrate::kMagic, sizeof h.magic);
  h.tid = 0x40003;
  h.pid = 1234;
  h.nlinks = nlinks;
  return h;
}

TEST(Handover, AWellFormedOneIsAccepted) {
  std::vector<LinkDesc> d = {
      {static_cast<int32_t>(LinkKind::kDaemon), 0, 10, 20},
      {static_cast<int32_t>(LinkKind::kPeer), 0x80001, 0, 5},
      {static_cast<int32_t>(LinkKind::kPeer), 0x80002, 3, 0, migrate::kLinkEncrypted, 9},
      {static_cast<int32_t>(LinkKind::kUnixListener), 0, 0, 0}};
  EXPECT_EQ(CheckHandover(Head(4), d.data(), 4, 4), nullptr);
  d.pop_back();
  d.pop_back();
  d.push_back({static_cast<int32_t>(LinkKind::kUnixListener), 0, 0, 0});
  EXPECT_EQ(CheckHandover(Head(3), d.data(), 3, 3), nullptr);
  EXPECT_EQ(CheckHandover(Head(0), nullptr, 0, 0), nullptr);  // a copy not enrolled yet
  EXPECT_EQ(CheckHandover(Head(migrate::kRefusal), nullptr, 0, 0), nullptr);
}

TEST(Handover, EachMalformationIsRefusedWithAReason) {
  const LinkDesc daemon{static_cast<int32_t>(LinkKind::kDaemon), 0, 0, 0};
  auto bad = [&](HandoverHead h, std::vector<LinkDesc> d, size_t nfds) {
    const char* why = CheckHandover(h, d.data(), d.size(), nfds);
    return why == nullptr ? std::string() : std::string(why);
  };
  HandoverHead h = Head(1);
  h.magic[0] = 'X';
  EXPECT_NE(bad(h, {daemon}, 1).find("bad handover header"), std::string::npos);
  h = Head(1);
  h.tid = 0;
  EXPECT_NE(bad(h, {daemon}, 1).find("names no task"), std::string::npos);
  EXPECT_NE(bad(Head(migrate::kMaxLinks + 1), {}, 0).find("too many"), std::string::npos);
  h = Head(1);
  h.flags = 6;
  EXPECT_NE(bad(h, {daemon}, 1).find("unknown flags"), std::string::npos);
  h.flags = migrate::kStoppedBySignal;
  EXPECT_EQ(bad(h, {daemon}, 1), "");
  EXPECT_NE(bad(Head(1), {daemon}, 0).find("do not match"), std::string::npos);
  EXPECT_NE(bad(Head(1), {{1, 5, 0, 0}}, 1).find("first link"), std::string::npos);
  EXPECT_NE(bad(Head(2), {daemon, daemon}, 2).find("first link"), std::string::npos);
  EXPECT_NE(bad(Head(2), {daemon, {9, 0, 0, 0}}, 2).find("unknown kind"), std::string::npos);
  EXPECT_NE(bad(Head(2), {daemon, {2, 0, 1, 0}}, 2).find("listener"), std::string::npos);
  EXPECT_NE(bad(Head(1), {{0, 0, migrate::kMaxPendingBytes + 1, 0}}, 1).find("256 MiB"),
            std::string::npos);
  EXPECT_NE(bad(Head(2), {daemon, {1, -5, 0, 0}}, 2).find("bad peer"), std::string::npos);
  EXPECT_NE(bad(Head(2), {daemon, {1, 0, 0, 0, 4, 0}}, 2).find("unknown link flags"),
            std::string::npos);
  EXPECT_NE(
      bad(Head(2), {daemon, {2, 0, 0, 0, migrate::kLinkEncrypted, 0}}, 2).find("not a task link"),
      std::string::npos);
  EXPECT_NE(bad(Head(2), {daemon, {1, 0, 0, 0, 0, 8}}, 2).find("plain link"), std::string::npos);
  EXPECT_NE(
      bad(Head(2), {daemon, {1, 0, 0, 0, 1, migrate::kMaxPendingBytes + 1}}, 2).find("256 MiB"),
      std::string::npos);
}

using ckpt::CheckImageLayout;
using ckpt::Header;
using ckpt::Region;
using ckpt::RegionKind;

constexpr uint64_t kScratch = 0x100000000000ull, kScratchEnd = kScratch + (8u << 20);

struct Image {
  std::unique_ptr<Header> h = std::make_unique<Header>();
  std::vector<Region> r;
  Image() {
    h->magic = ckpt::kMagic;
    h->version = ckpt::kVersion;
    h->header_size = sizeof(Header);
    Add(0x400000, 0x401000, RegionKind::kFile);
    Add(0x600000, 0x602000, RegionKind::kData);
    Add(0x7ffff000, 0x80000000, RegionKind::kData);
  }
  void Add(uint64_t start, uint64_t end, RegionKind kind) {
    Region x{};
    x.start = start;
    x.end = end;
    x.kind = kind;
    x.prot = 3;
    r.push_back(x);
    h->nregions = static_cast<uint32_t>(r.size());
    if (kind == RegionKind::kData) h->data_bytes += end - start;
  }
  std::string Check() const {
    const char* why = CheckImageLayout(*h, r.data(), kScratch, kScratchEnd);
    return why == nullptr ? std::string() : std::string(why);
  }
};

TEST(ImageLayout, AWellFormedImageIsAccepted) { EXPECT_EQ(Image().Check(), ""); }

TEST(ImageLayout, EachMalformationIsRefusedWithAReason) {
  auto with = [](auto change) {
    Image i;
    change(i);
    return i.Check();
  };
  EXPECT_NE(with([](Image& i) { i.h->version = 99; }).find("version"), std::string::npos);
  EXPECT_NE(with([](Image& i) { i.h->nregions = 0; }).find("count"), std::string::npos);
  EXPECT_NE(with([](Image& i) { i.h->nfiles = ckpt::kMaxFiles + 1; }).find("count"),
            std::string::npos);
  EXPECT_NE(
      with([](Image& i) { std::memset(i.h->cwd, 'a', sizeof i.h->cwd); }).find("unterminated"),
      std::string::npos);
  EXPECT_NE(with([](Image& i) {
              i.h->nfiles = 1;
              std::memset(i.h->files[0].path, 'a', sizeof i.h->files[0].path);
            }).find("open files"),
            std::string::npos);
  EXPECT_NE(with([](Image& i) { i.r[1].end = i.r[1].start; }).find("bounds"), std::string::npos);
  EXPECT_NE(with([](Image& i) { i.r[1].start += 1; }).find("bounds"), std::string::npos);
  EXPECT_NE(with([](Image& i) { i.r[2].end = 0x900000000000ull; }).find("bounds"),
            std::string::npos);
  EXPECT_NE(with([](Image& i) { std::swap(i.r[0], i.r[1]); }).find("overlap"), std::string::npos);
  EXPECT_NE(with([](Image& i) {
              i.Add(kScratch, kScratch + 4096, RegionKind::kReserved);
            }).find("restore area"),
            std::string::npos);
  EXPECT_NE(with([](Image& i) { i.r[0].kind = static_cast<RegionKind>(42); }).find("kind"),
            std::string::npos);
  EXPECT_NE(with([](Image& i) { i.r[0].prot = 0x10; }).find("protection"), std::string::npos);
  EXPECT_NE(with([](Image& i) { std::memset(i.r[0].path, 'p', sizeof i.r[0].path); }).find("path"),
            std::string::npos);
  EXPECT_NE(with([](Image& i) { i.h->data_bytes += 4096; }).find("data size"), std::string::npos);
}

}  // namespace
}  // namespace mpvm
