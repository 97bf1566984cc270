#include "mpvm/message.h"

#include <gtest/gtest.h>

#include <complex>
#include <cstring>

namespace mpvm {
namespace {

std::vector<uint8_t> Bytes(std::initializer_list<int> v) {
  std::vector<uint8_t> out;
  for (int b : v) out.push_back(static_cast<uint8_t>(b));
  return out;
}
std::vector<uint8_t> Body(const Message& m) { return {m.body().begin(), m.body().end()}; }

// Golden bytes: what Debian's PVM 3.4.6 produces for the same pack calls under
// PvmDataDefault (padding zeroed; PVM leaves it uninitialised).
TEST(XdrGolden, Bytes) {
  Message m(kEncDefault);
  char c[5] = {1, 2, 3, 4, 5};
  ASSERT_TRUE(m.Pack(DataType::kByte, c, 5, 1));
  EXPECT_EQ(Body(m), Bytes({1, 2, 3, 4, 5, 0, 0, 0}));
}
TEST(XdrGolden, BytesWithStride) {
  Message m(kEncDefault);
  char c[6] = {1, 2, 3, 4, 5, 6};
  ASSERT_TRUE(m.Pack(DataType::kByte, c, 3, 2));
  EXPECT_EQ(Body(m), Bytes({1, 3, 5, 0}));
}
TEST(XdrGolden, ShortsAreFourBytesSignExtended) {
  Message m(kEncDefault);
  short s[3] = {1, -2, 0x1234};
  ASSERT_TRUE(m.Pack(DataType::kShort, s, 3, 1));
  EXPECT_EQ(Body(m), Bytes({0, 0, 0, 1, 0xff, 0xff, 0xff, 0xfe, 0, 0, 0x12, 0x34}));
}
TEST(XdrGolden, UnsignedShorts) {
  Message m(kEncDefault);
  unsigned short s[2] = {0xfffe, 7};
  ASSERT_TRUE(m.Pack(DataType::kUShort, s, 2, 1));
  EXPECT_EQ(Body(m), Bytes({0, 0, 0xff, 0xfe, 0, 0, 0, 7}));
}
TEST(XdrGolden, Ints) {
  Message m(kEncDefault);
  int v[2] = {0x01020304, -1};
  ASSERT_TRUE(m.Pack(DataType::kInt, v, 2, 1));
  EXPECT_EQ(Body(m), Bytes({1, 2, 3, 4, 0xff, 0xff, 0xff, 0xff}));
}
TEST(XdrGolden, FloatsDoublesAndComplex) {
  Message m(kEncDefault);
  float f[2] = {1.5f, -2.0f};
  double d = 1.5;
  float cx[2] = {1.0f, 2.0f};
  double dcx[2] = {1.0, 2.0};
  ASSERT_TRUE(m.Pack(DataType::kFloat, f, 2, 1));
  ASSERT_TRUE(m.Pack(DataType::kDouble, &d, 1, 1));
  ASSERT_TRUE(m.Pack(DataType::kCplx, cx, 1, 1));
  ASSERT_TRUE(m.Pack(DataType::kDcplx, dcx, 1, 1));
  EXPECT_EQ(Body(m), Bytes({0x3f, 0xc0, 0, 0, 0xc0, 0, 0, 0,  // floats
                            0x3f, 0xf8, 0, 0, 0,    0, 0, 0,  // double
                            0x3f, 0x80, 0, 0, 0x40, 0, 0, 0,  // complex
                            0x3f, 0xf0, 0, 0, 0,    0, 0, 0, 0x40, 0, 0, 0, 0, 0, 0, 0}));
}
TEST(XdrGolden, Strings) {
  Message m(kEncDefault);
  ASSERT_TRUE(m.PackStr("hello"));
  EXPECT_EQ(Body(m), Bytes({0, 0, 0, 6, 'h', 'e', 'l', 'l', 'o', 0, 0, 0}));
  Message m2(kEncDefault);
  ASSERT_TRUE(m2.PackStr("abcd"));
  ASSERT_TRUE(m2.PackStr(""));
  EXPECT_EQ(Body(m2), Bytes({0, 0, 0, 5, 'a', 'b', 'c', 'd', 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0}));
}
TEST(XdrGolden, MixedItemsEachPadded) {
  Message m(kEncDefault);
  char c = 7;
  int i = 9;
  short s = 3;
  ASSERT_TRUE(m.Pack(DataType::kByte, &c, 1, 1));
  ASSERT_TRUE(m.Pack(DataType::kInt, &i, 1, 1));
  ASSERT_TRUE(m.Pack(DataType::kShort, &s, 1, 1));
  ASSERT_TRUE(m.Pack(DataType::kByte, &c, 1, 1));
  EXPECT_EQ(Body(m), Bytes({7, 0, 0, 0, 0, 0, 0, 9, 0, 0, 0, 3, 7, 0, 0, 0}));
}
// Where mpvm is better than PVM: longs keep all 64 bits (PVM sends 4 bytes).
TEST(XdrGolden, LongsAreEightBytesAndLoseNothing) {
  Message m(kEncDefault);
  long v[2] = {0x123456789L, -2};
  ASSERT_TRUE(m.Pack(DataType::kLong, v, 2, 1));
  EXPECT_EQ(Body(m), Bytes({0, 0, 0, 1, 0x23, 0x45, 0x67, 0x89, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
                            0xff, 0xfe}));
  m.Rewind();
  long out[2];
  ASSERT_TRUE(m.Unpack(DataType::kLong, out, 2, 1));
  EXPECT_EQ(out[0], 0x123456789L);
  EXPECT_EQ(out[1], -2);
}

TEST(RawGolden, NativeLayoutUnpadded) {
  Message m(kEncRaw);
  char c = 7;
  int i = 9;
  short s = 3;
  ASSERT_TRUE(m.Pack(DataType::kByte, &c, 1, 1));
  ASSERT_TRUE(m.Pack(DataType::kInt, &i, 1, 1));
  ASSERT_TRUE(m.Pack(DataType::kShort, &s, 1, 1));
  ASSERT_TRUE(m.PackStr("hi"));
  EXPECT_EQ(Body(m), Bytes({7, 9, 0, 0, 0, 3, 0, 3, 0, 0, 0, 'h', 'i', 0}));
}

// Round trip of every type, in every encoding, with strides 1 and 3.
template <typename T>
void RoundTrip(DataType t, int enc, int stride, T (*make)(int)) {
  const int n = 7;
  std::vector<T> src(static_cast<size_t>(n * stride));
  for (size_t i = 0; i < src.size(); ++i) src[i] = make(static_cast<int>(i));
  Message m(enc);
  ASSERT_TRUE(m.Pack(t, src.data(), n, stride));
  m.Flatten();
  // Through the wire: type map as aux bytes, then the body.
  auto aux = m.EncodeTypeMap();
  std::vector<uint8_t> payload(aux);
  payload.insert(payload.end(), m.body().begin(), m.body().end());
  Message r = Message::FromWire(enc == kEncInPlace ? kEncRaw : enc, payload,
                                static_cast<uint32_t>(aux.size()));
  std::vector<T> dst(static_cast<size_t>(n * stride), make(-1));
  ASSERT_TRUE(r.Unpack(t, dst.data(), n, stride));
  for (int i = 0; i < n; ++i)
    EXPECT_EQ(std::memcmp(&dst[static_cast<size_t>(i * stride)],
                          &src[static_cast<size_t>(i * stride)], sizeof(T)),
              0)
        << DataTypeName(t) << " enc " << enc << " stride " << stride << " item " << i;
  // Gaps between strided items are untouched.
  if (stride > 1) {
    const T fill = make(-1);
    for (int i = 0; i < n; ++i)
      EXPECT_EQ(std::memcmp(&dst[static_cast<size_t>(i * stride + 1)], &fill, sizeof(T)), 0);
  }
  EXPECT_EQ(r.Unpack(t, dst.data(), 1, 1).error(), Err::kNoData);
}

class AllEncodings : public ::testing::TestWithParam<std::tuple<int, int>> {};

TEST_P(AllEncodings, EveryTypeRoundTrips) {
  auto [enc, stride] = GetParam();
  RoundTrip<char>(DataType::kByte, enc, stride, [](int i) { return char(i * 3); });
  RoundTrip<short>(DataType::kShort, enc, stride, [](int i) { return short(-i * 1000); });
  RoundTrip<unsigned short>(DataType::kUShort, enc, stride,
                            [](int i) { return (unsigned short)(60000 + i); });
  RoundTrip<int>(DataType::kInt, enc, stride, [](int i) { return -i * 100000; });
  RoundTrip<unsigned>(DataType::kUInt, enc, stride,
                      [](int i) { return 4000000000u + unsigned(i); });
  RoundTrip<long>(DataType::kLong, enc, stride, [](int i) { return -(long(i) << 40); });
  RoundTrip<unsigned long>(DataType::kULong, enc, stride,
                           [](int i) { return ~0UL - static_cast<unsigned long>(i); });
  RoundTrip<float>(DataType::kFloat, enc, stride, [](int i) { return i * 0.25f; });
  RoundTrip<double>(DataType::kDouble, enc, stride, [](int i) { return i / 3.0; });
  RoundTrip<std::complex<float>>(DataType::kCplx, enc, stride,
                                 [](int i) { return std::complex<float>(float(i), -float(i)); });
  RoundTrip<std::complex<double>>(DataType::kDcplx, enc, stride,
                                  [](int i) { return std::complex<double>(i / 7.0, i * 2.0); });
}

INSTANTIATE_TEST_SUITE_P(Matrix, AllEncodings,
                         ::testing::Combine(::testing::Values(kEncDefault, kEncRaw, kEncInPlace),
                                            ::testing::Values(1, 3)));

TEST(Message, WrongUnpackTypeIsReportedNotGarbage) {
  Message m(kEncDefault);
  double d = 3.5;
  ASSERT_TRUE(m.Pack(DataType::kDouble, &d, 1, 1));
  m.Rewind();
  int i[2];
  EXPECT_EQ(m.Unpack(DataType::kInt, i, 2, 1).error(), Err::kBadMsg);
  // Nothing was consumed: the right type still works.
  double back;
  ASSERT_TRUE(m.Unpack(DataType::kDouble, &back, 1, 1));
  EXPECT_EQ(back, 3.5);
}

TEST(Message, CompatibleTypesMayBeMixed) {
  Message m(kEncDefault);
  int v[2] = {-1, 5};
  ASSERT_TRUE(m.Pack(DataType::kInt, v, 2, 1));
  m.Rewind();
  unsigned u[2];
  ASSERT_TRUE(m.Unpack(DataType::kUInt, u, 2, 1));
  EXPECT_EQ(u[0], 0xffffffffu);
  // A complex is two floats.
  Message c(kEncDefault);
  float f[4] = {1, 2, 3, 4};
  ASSERT_TRUE(c.Pack(DataType::kFloat, f, 4, 1));
  c.Rewind();
  std::complex<float> z[2];
  ASSERT_TRUE(c.Unpack(DataType::kCplx, z, 2, 1));
  EXPECT_EQ(z[1], std::complex<float>(3, 4));
}

TEST(Message, UnpackingAcrossATypeBoundaryIsCaught) {
  Message m(kEncDefault);
  int a[2] = {1, 2};
  float f = 1.0f;
  ASSERT_TRUE(m.Pack(DataType::kInt, a, 2, 1));
  ASSERT_TRUE(m.Pack(DataType::kFloat, &f, 1, 1));
  m.Rewind();
  int three[3];
  EXPECT_EQ(m.Unpack(DataType::kInt, three, 3, 1).error(), Err::kBadMsg);
}

TEST(Message, UntypedMessagesFromTheWireAreUnchecked) {
  // A damaged type map is dropped, never trusted.
  std::vector<uint8_t> payload = {0x7f, 1, 0, 0, 0, 0, 0, 0, 9};  // bad type 0x7f
  Message m = Message::FromWire(kEncDefault, payload, 5);
  int v;
  ASSERT_TRUE(m.Unpack(DataType::kInt, &v, 1, 1));
  EXPECT_EQ(v, 9);
}

TEST(Message, AuxLongerThanPayloadIsClamped) {
  std::vector<uint8_t> payload = {1, 2, 3};
  Message m = Message::FromWire(kEncRaw, payload, 999);
  EXPECT_EQ(m.size(), 0u);
  char c;
  EXPECT_EQ(m.Unpack(DataType::kByte, &c, 1, 1).error(), Err::kNoData);
}

// PVM 3.4.6 takes stride 0 (pvm_pkint(x, 2, 0) returns 0): the first item
// is packed `count` times, and unpacked `count` times into the same place.
TEST(Message, StrideZeroRepeatsTheFirstItemAsPvmDoes) {
  for (int enc : {kEncDefault, kEncRaw}) {
    Message m(enc);
    const int32_t v[2] = {7, 9};
    ASSERT_TRUE(m.Pack(DataType::kInt, v, 3, 0));
    m.Flatten();
    auto aux = m.EncodeTypeMap();
    std::vector<uint8_t> payload(aux);
    payload.insert(payload.end(), m.body().begin(), m.body().end());
    Message r = Message::FromWire(enc, payload, static_cast<uint32_t>(aux.size()));
    int32_t got[3] = {};
    ASSERT_TRUE(r.Unpack(DataType::kInt, got, 3, 1));
    EXPECT_EQ(got[0], 7);
    EXPECT_EQ(got[1], 7);
    EXPECT_EQ(got[2], 7);
  }
}

TEST(Message, BadArgumentsAreBadParam) {
  Message m;
  int v = 0;
  EXPECT_EQ(m.Pack(DataType::kInt, &v, -1, 1).error(), Err::kBadParam);
  EXPECT_EQ(m.Pack(DataType::kInt, &v, 1, -1).error(), Err::kBadParam);
  EXPECT_EQ(m.Pack(DataType::kInt, nullptr, 1, 1).error(), Err::kBadParam);
  EXPECT_EQ(m.PackStr(nullptr).error(), Err::kBadParam);
  EXPECT_EQ(m.Unpack(DataType::kInt, &v, -1, 1).error(), Err::kBadParam);
  EXPECT_TRUE(m.Pack(DataType::kInt, &v, 0, 1));  // zero items is fine
}

TEST(Message, StringsRoundTripInBothEncodings) {
  for (int enc : {kEncDefault, kEncRaw}) {
    Message m(enc);
    ASSERT_TRUE(m.PackStr("hello, world"));
    ASSERT_TRUE(m.PackStr(""));
    m.Rewind();
    char buf[64];
    ASSERT_TRUE(m.UnpackStr(buf));
    EXPECT_STREQ(buf, "hello, world");
    ASSERT_TRUE(m.UnpackStr(buf));
    EXPECT_STREQ(buf, "");
    EXPECT_EQ(m.UnpackStr(buf).error(), Err::kNoData);
  }
}

TEST(Message, NegativeStringLengthIsBadMsg) {
  std::vector<uint8_t> payload = {0xff, 0xff, 0xff, 0xff, 'x', 0, 0, 0};
  Message m = Message::FromWire(kEncDefault, payload, 0);
  char buf[8];
  EXPECT_EQ(m.UnpackStr(buf).error(), Err::kBadMsg);
}

TEST(Message, InPlaceReferencesDataUntilFlatten) {
  int v[3] = {1, 2, 3};
  Message m(kEncInPlace);
  ASSERT_TRUE(m.Pack(DataType::kInt, v, 3, 1));
  EXPECT_EQ(m.size(), 12u);
  v[1] = 20;  // changed after packing, before sending: the send sees it
  m.Flatten();
  m.Rewind();
  int out[3];
  ASSERT_TRUE(m.Unpack(DataType::kInt, out, 3, 1));
  EXPECT_EQ(out[1], 20);
}

TEST(Message, NestedMessagesRoundTrip) {
  Message inner(kEncDefault);
  inner.tag = 5;
  inner.src = 0x40001;
  int v = 42;
  ASSERT_TRUE(inner.Pack(DataType::kInt, &v, 1, 1));
  Message outer(kEncRaw);
  ASSERT_TRUE(outer.PackMessage(inner));
  outer.Rewind();
  auto back = outer.UnpackMessage();
  ASSERT_TRUE(back.has_value());
  EXPECT_EQ(back->tag, 5);
  EXPECT_EQ(back->src, 0x40001);
  int w = 0;
  ASSERT_TRUE(back->Unpack(DataType::kInt, &w, 1, 1));
  EXPECT_EQ(w, 42);
}

}  // namespace
}  // namespace mpvm
