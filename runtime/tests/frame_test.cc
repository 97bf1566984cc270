#include "mpvm/frame.h"

#include <gtest/gtest.h>

namespace mpvm {
namespace {

FrameHeader Sample() {
  FrameHeader h;
  h.kind = FrameKind::kData;
  h.encoding = 1;
  h.flags = kFrameFlagRelayed;
  h.src = 0x40001;
  h.dst = 0x40002;
  h.tag = 77;
  h.ctx = 5;
  h.seq = 0x123456789abcULL;
  h.length = 10;
  h.aux_length = 5;
  return h;
}

TEST(FrameHeader, RoundTripsEveryField) {
  auto bytes = EncodeFrameHeader(Sample());
  auto h = DecodeFrameHeader(bytes);
  ASSERT_TRUE(h.has_value());
  EXPECT_EQ(h->kind, FrameKind::kData);
  EXPECT_EQ(h->encoding, 1);
  EXPECT_EQ(h->flags, kFrameFlagRelayed);
  EXPECT_EQ(h->src, 0x40001);
  EXPECT_EQ(h->dst, 0x40002);
  EXPECT_EQ(h->tag, 77);
  EXPECT_EQ(h->ctx, 5);
  EXPECT_EQ(h->seq, 0x123456789abcULL);
  EXPECT_EQ(h->length, 10u);
  EXPECT_EQ(h->aux_length, 5u);
}

TEST(FrameHeader, HopsCountUpInTheFlagsAndStopAtFifteen) {
  FrameHeader h = Sample();
  EXPECT_EQ(FrameHops(h), 0);
  AddFrameHop(h);
  AddFrameHop(h);
  EXPECT_EQ(FrameHops(h), 2);
  EXPECT_TRUE(h.flags & kFrameFlagRelayed);  // the other flags are kept
  auto back = DecodeFrameHeader(EncodeFrameHeader(h));
  ASSERT_TRUE(back.has_value());
  EXPECT_EQ(FrameHops(*back), 2);
  for (int i = 0; i < 20; ++i) AddFrameHop(h);
  EXPECT_EQ(FrameHops(h), kFrameMaxHops);
  EXPECT_TRUE(h.flags & kFrameFlagRelayed);
}

TEST(FrameHeader, LayoutIsFixedLittleEndian) {
  auto b = EncodeFrameHeader(Sample());
  EXPECT_EQ(b[0], 'M');
  EXPECT_EQ(b[1], 'P');
  EXPECT_EQ(b[2], 'V');
  EXPECT_EQ(b[3], 'M');
  EXPECT_EQ(b[4], kFrameVersion);
  EXPECT_EQ(b[8], 0x01);  // src 0x40001, low byte first
  EXPECT_EQ(b[10], 0x04);
  EXPECT_EQ(b[16], 77);  // tag
  EXPECT_EQ(b[32], 10);  // length
}

TEST(FrameHeader, RejectsBadMagicVersionKindAndSizes) {
  auto b = EncodeFrameHeader(Sample());
  auto bad = b;
  bad[0] = 'X';
  EXPECT_EQ(DecodeFrameHeader(bad).error(), FrameError::kBadMagic);
  bad = b;
  bad[4] = 99;
  EXPECT_EQ(DecodeFrameHeader(bad).error(), FrameError::kBadVersion);
  bad = b;
  bad[5] = 9;
  EXPECT_EQ(DecodeFrameHeader(bad).error(), FrameError::kBadKind);
  EXPECT_EQ(DecodeFrameHeader(b, 9).error(), FrameError::kTooLarge);
  FrameHeader h = Sample();
  h.aux_length = 11;
  EXPECT_EQ(DecodeFrameHeader(EncodeFrameHeader(h)).error(), FrameError::kBadAux);
}

TEST(FrameReader, ReassemblesFramesSplitAnywhere) {
  std::vector<uint8_t> stream;
  for (int i = 0; i < 3; ++i) {
    FrameHeader h = Sample();
    h.tag = i;
    h.length = 4;
    h.aux_length = 0;
    auto hb = EncodeFrameHeader(h);
    stream.insert(stream.end(), hb.begin(), hb.end());
    for (int k = 0; k < 4; ++k) stream.push_back(static_cast<uint8_t>(i * 10 + k));
  }
  for (size_t chunk : {1u, 3u, 7u, 44u, 1000u}) {
    FrameReader r;
    std::vector<Frame> got;
    for (size_t off = 0; off < stream.size(); off += chunk) {
      size_t n = std::min(chunk, stream.size() - off);
      r.Feed(std::span<const uint8_t>(stream.data() + off, n));
      Frame f;
      while (r.Next(f) == FrameReader::Status::kFrame) got.push_back(f);
    }
    ASSERT_EQ(got.size(), 3u) << "chunk " << chunk;
    for (int i = 0; i < 3; ++i) {
      EXPECT_EQ(got[i].header.tag, i);
      EXPECT_EQ(got[i].payload, (std::vector<uint8_t>{uint8_t(i * 10), uint8_t(i * 10 + 1),
                                                      uint8_t(i * 10 + 2), uint8_t(i * 10 + 3)}));
    }
  }
}

// Regression: reading past the end of a partly received frame (without a
// Next() in between) made WritableSpace underflow and shrink its buffer.
TEST(FrameReader, ReadingPastAPartialFrameKeepsTheBufferValid) {
  FrameHeader h = Sample();
  h.length = 100;
  h.aux_length = 0;
  auto hb = EncodeFrameHeader(h);
  FrameReader r;
  r.Feed(hb);
  std::vector<uint8_t> part(10, 7);
  r.Feed(part);
  Frame f;
  ASSERT_EQ(r.Next(f), FrameReader::Status::kNeedMore);  // header taken, payload partial
  // Two reads land before the caller asks for frames again.
  for (int round = 0; round < 2; ++round) {
    auto space = r.WritableSpace();
    ASSERT_GE(space.size(), 64u * 1024);
    std::fill(space.begin(), space.begin() + 200, uint8_t(7));
    r.Commit(200);
  }
  ASSERT_EQ(r.Next(f), FrameReader::Status::kFrame);
  EXPECT_EQ(f.payload.size(), 100u);
  EXPECT_EQ(r.buffered(), 10u + 400u - 100u);
}

// A large frame read as a socket reads it (header and a first piece, then the
// rest into the space offered) is handed over without a copy, whole, and the
// frame after it is still read.
TEST(FrameReader, ALargeFrameIsHandedOverWholeAndTheNextOneStillArrives) {
  FrameHeader h = Sample();
  h.length = kLargeFrame + 3;
  h.aux_length = 0;
  auto hb = EncodeFrameHeader(h);
  FrameReader r;
  auto space = r.WritableSpace();
  std::copy(hb.begin(), hb.end(), space.begin());
  std::fill(space.begin() + kFrameHeaderSize, space.begin() + 1000, uint8_t(1));
  r.Commit(1000);
  Frame f;
  ASSERT_EQ(r.Next(f), FrameReader::Status::kNeedMore);
  EXPECT_FALSE(r.HasLargeFrame());
  space = r.WritableSpace();
  const size_t rest = h.length - (1000 - kFrameHeaderSize);
  ASSERT_EQ(space.size(), rest);  // exactly the rest: nothing of the next frame
  std::fill(space.begin(), space.end(), uint8_t(2));
  r.Commit(rest);
  EXPECT_TRUE(r.HasLargeFrame());
  const uint8_t* where = space.data() - (1000 - kFrameHeaderSize);
  ASSERT_EQ(r.Next(f), FrameReader::Status::kFrame);
  EXPECT_EQ(f.payload.data(), where);  // the reader's buffer itself
  ASSERT_EQ(f.payload.size(), h.length);
  EXPECT_EQ(f.payload.front(), 1);
  EXPECT_EQ(f.payload.back(), 2);
  EXPECT_FALSE(r.HasLargeFrame());
  FrameHeader small = Sample();
  small.length = 2;
  small.aux_length = 0;
  r.Feed(EncodeFrameHeader(small));
  std::vector<uint8_t> two = {5, 6};
  r.Feed(two);
  ASSERT_EQ(r.Next(f), FrameReader::Status::kFrame);
  EXPECT_EQ(f.payload, two);
}

TEST(FrameReader, TheLargestMessageFitsTheDefaultLimit) {
  FrameHeader h = Sample();
  h.length = static_cast<uint32_t>(kMaxMessageBytes) + 1024;  // body + a type map
  h.aux_length = 1024;
  EXPECT_TRUE(DecodeFrameHeader(EncodeFrameHeader(h)).has_value());
}

TEST(FrameReader, EmptyFeedIsHarmless) {  // found by daemon_stream_fuzz
  FrameReader r;
  r.Feed({});
  Frame f;
  EXPECT_EQ(r.Next(f), FrameReader::Status::kNeedMore);
}

TEST(FrameReader, GarbageIsAnErrorAndStaysOne) {
  FrameReader r;
  std::vector<uint8_t> junk(64, 0xab);
  r.Feed(junk);
  Frame f;
  EXPECT_EQ(r.Next(f), FrameReader::Status::kError);
  EXPECT_EQ(r.error(), FrameError::kBadMagic);
  EXPECT_EQ(r.Next(f), FrameReader::Status::kError);
}

TEST(FrameReader, OversizedLengthIsRefusedBeforeAllocating) {
  FrameReader r(1024);
  FrameHeader h = Sample();
  h.length = 1u << 30;
  h.aux_length = 0;
  auto b = EncodeFrameHeader(h);
  r.Feed(b);
  Frame f;
  EXPECT_EQ(r.Next(f), FrameReader::Status::kError);
  EXPECT_EQ(r.error(), FrameError::kTooLarge);
}

TEST(FrameReader, TruncatedFrameWaitsForMore) {
  FrameReader r;
  FrameHeader h = Sample();
  h.length = 8;
  h.aux_length = 0;
  auto b = EncodeFrameHeader(h);
  r.Feed(b);
  std::vector<uint8_t> half(4, 1);
  r.Feed(half);
  Frame f;
  EXPECT_EQ(r.Next(f), FrameReader::Status::kNeedMore);
  EXPECT_EQ(r.buffered(), 4u);
}

}  // namespace
}  // namespace mpvm
