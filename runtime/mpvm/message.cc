#include "mpvm/message.h"

#include <bit>
#include <cstring>
#include <iterator>

#include "mpvm/frame.h"

namespace mpvm {
namespace {

static_assert(std::endian::native == std::endian::little, "mpvm assumes a little-endian host");
static_assert(sizeof(long) == 8, "mpvm assumes LP64");

size_t Pad4(size_t n) { return (4 - n % 4) % 4; }

// Per type: bytes one item takes in XDR and in memory (= raw encoding), and
// its group: types whose bytes mean the same thing, so packing one and
// unpacking the other is allowed (int/uint, a complex is two floats, ...).
// Strings and messages are variable-sized (0) and only match themselves.
struct TypeInfo {
  uint8_t xdr, native, group;
};
constexpr TypeInfo kTypes[] = {
    {0, 0, 0},    // (unused)
    {1, 1, 10},   // byte
    {4, 2, 1},    // short
    {4, 2, 1},    // ushort
    {4, 4, 2},    // int
    {4, 4, 2},    // uint
    {8, 8, 3},    // long
    {8, 8, 3},    // ulong
    {4, 4, 4},    // float
    {8, 8, 4},    // cplx
    {8, 8, 5},    // double
    {16, 16, 5},  // dcplx
    {0, 0, 11},   // string
    {0, 0, 12},   // message
};
static_assert(std::size(kTypes) == static_cast<size_t>(DataType::kMesg) + 1);
const TypeInfo& Info(DataType t) { return kTypes[static_cast<size_t>(t)]; }
size_t XdrSize(DataType t) { return Info(t).xdr; }
size_t NativeSize(DataType t) { return Info(t).native; }
int TypeGroup(DataType t) { return Info(t).group; }

void PutBe32(uint8_t* p, uint32_t v) {
  v = std::byteswap(v);
  std::memcpy(p, &v, 4);
}
void PutBe64(uint8_t* p, uint64_t v) {
  v = std::byteswap(v);
  std::memcpy(p, &v, 8);
}
uint32_t GetBe32(const uint8_t* p) {
  uint32_t v;
  std::memcpy(&v, p, 4);
  return std::byteswap(v);
}
uint64_t GetBe64(const uint8_t* p) {
  uint64_t v;
  std::memcpy(&v, p, 8);
  return std::byteswap(v);
}

bool ValidType(uint8_t t) {
  return t >= static_cast<uint8_t>(DataType::kByte) && t <= static_cast<uint8_t>(DataType::kMesg);
}

}  // namespace

std::string_view DataTypeName(DataType t) {
  switch (t) {
    case DataType::kByte:
      return "byte";
    case DataType::kShort:
      return "short";
    case DataType::kUShort:
      return "ushort";
    case DataType::kInt:
      return "int";
    case DataType::kUInt:
      return "uint";
    case DataType::kLong:
      return "long";
    case DataType::kULong:
      return "ulong";
    case DataType::kFloat:
      return "float";
    case DataType::kCplx:
      return "cplx";
    case DataType::kDouble:
      return "double";
    case DataType::kDcplx:
      return "dcplx";
    case DataType::kStr:
      return "string";
    case DataType::kMesg:
      return "message";
  }
  return "?";
}

uint8_t* Message::Grow(size_t n) {
  size_t old = body_.size();
  body_.resize(old + n);
  return body_.data() + old;
}

void Message::NoteType(DataType t, size_t bytes) {
  if (bytes == 0) return;
  if (!types_.empty() && types_.back().type == t && types_.back().bytes + bytes <= UINT32_MAX) {
    types_.back().bytes += static_cast<uint32_t>(bytes);
  } else {
    types_.push_back({t, static_cast<uint32_t>(bytes)});
  }
}

size_t Message::size() const { return body_.size() - base_ + ref_bytes_; }

Status Message::Pack(DataType type, const void* data, int count, int stride) {
  // Stride 0 is PVM 3.4.6's too: the first item, `count` times.
  if (count < 0 || stride < 0 || (count > 0 && data == nullptr)) return Fail(Err::kBadParam);
  if (type == DataType::kStr || type == DataType::kMesg) return Fail(Err::kBadParam);
  if (count == 0) return {};
  const auto* src = static_cast<const uint8_t*>(data);
  const size_t n = static_cast<size_t>(count);
  const size_t item = NativeSize(type);
  const size_t step = item * static_cast<size_t>(stride);
  // Refused before anything is allocated or read: a message larger than
  // pvm_bufinfo can report cannot be sent.
  const size_t grows = n * (encoding_ == kEncDefault ? XdrSize(type) : item) + 3;
  if (grows > kMaxMessageBytes - std::min(size(), kMaxMessageBytes)) return Fail(Err::kOverflow);

  if (encoding_ == kEncInPlace && stride == 1) {
    refs_.push_back({body_.size(), src, n * item});
    ref_bytes_ += n * item;
    NoteType(type, n * item);
    return {};
  }
  if (encoding_ != kEncDefault) {  // raw (and in-place with a stride)
    uint8_t* out = Grow(n * item);
    if (stride == 1) {
      std::memcpy(out, src, n * item);
    } else {
      for (size_t i = 0; i < n; ++i) std::memcpy(out + i * item, src + i * step, item);
    }
    NoteType(type, n * item);
    return {};
  }

  // XDR.
  const size_t xs = XdrSize(type);
  size_t total = n * xs;
  if (type == DataType::kByte) total += Pad4(n);
  uint8_t* out = Grow(total);
  switch (type) {
    case DataType::kByte:
      for (size_t i = 0; i < n; ++i) out[i] = src[i * step];
      std::memset(out + n, 0, Pad4(n));
      break;
    case DataType::kShort:
      for (size_t i = 0; i < n; ++i) {
        int16_t v;
        std::memcpy(&v, src + i * step, 2);
        PutBe32(out + 4 * i, static_cast<uint32_t>(static_cast<int32_t>(v)));
      }
      break;
    case DataType::kUShort:
      for (size_t i = 0; i < n; ++i) {
        uint16_t v;
        std::memcpy(&v, src + i * step, 2);
        PutBe32(out + 4 * i, v);
      }
      break;
    case DataType::kInt:
    case DataType::kUInt:
    case DataType::kFloat:
      for (size_t i = 0; i < n; ++i) {
        uint32_t v;
        std::memcpy(&v, src + i * step, 4);
        PutBe32(out + 4 * i, v);
      }
      break;
    case DataType::kCplx:
      for (size_t i = 0; i < n; ++i)
        for (size_t k = 0; k < 2; ++k) {
          uint32_t v;
          std::memcpy(&v, src + i * step + 4 * k, 4);
          PutBe32(out + 8 * i + 4 * k, v);
        }
      break;
    case DataType::kLong:
    case DataType::kULong:
    case DataType::kDouble:
      for (size_t i = 0; i < n; ++i) {
        uint64_t v;
        std::memcpy(&v, src + i * step, 8);
        PutBe64(out + 8 * i, v);
      }
      break;
    case DataType::kDcplx:
      for (size_t i = 0; i < n; ++i)
        for (size_t k = 0; k < 2; ++k) {
          uint64_t v;
          std::memcpy(&v, src + i * step + 8 * k, 8);
          PutBe64(out + 16 * i + 8 * k, v);
        }
      break;
    default:
      return Fail(Err::kBadParam);
  }
  NoteType(type, total);
  return {};
}

Status Message::PackStr(const char* s) {
  if (s == nullptr) return Fail(Err::kBadParam);
  const size_t len = std::strlen(s) + 1;
  if (len > INT32_MAX) return Fail(Err::kOverflow);
  if (encoding_ == kEncDefault) {
    uint8_t* out = Grow(4 + len + Pad4(len));
    PutBe32(out, static_cast<uint32_t>(len));
    std::memcpy(out + 4, s, len);
    std::memset(out + 4 + len, 0, Pad4(len));
    NoteType(DataType::kStr, 4 + len + Pad4(len));
  } else {
    uint8_t* out = Grow(4 + len);
    int32_t l = static_cast<int32_t>(len);
    std::memcpy(out, &l, 4);
    std::memcpy(out + 4, s, len);
    NoteType(DataType::kStr, 4 + len);
  }
  return {};
}

Status Message::PackMessage(const Message& m) {
  Message copy = m;
  copy.Flatten();
  std::vector<uint8_t> aux = copy.EncodeTypeMap();
  auto cbody = copy.body();
  const size_t len = 7 * 4 + aux.size() + cbody.size();
  uint8_t* out = Grow(len + Pad4(len));
  const int32_t fields[7] = {copy.encoding_,
                             copy.tag,
                             copy.ctx,
                             copy.src,
                             copy.dst,
                             static_cast<int32_t>(aux.size()),
                             static_cast<int32_t>(cbody.size())};
  for (int i = 0; i < 7; ++i) PutBe32(out + 4 * i, static_cast<uint32_t>(fields[i]));
  if (!aux.empty()) std::memcpy(out + 28, aux.data(), aux.size());
  if (!cbody.empty()) std::memcpy(out + 28 + aux.size(), cbody.data(), cbody.size());
  std::memset(out + len, 0, Pad4(len));
  NoteType(DataType::kMesg, len + Pad4(len));
  return {};
}

void Message::Flatten() {
  if (refs_.empty()) return;
  std::vector<uint8_t> flat;
  flat.reserve(size());
  size_t from = 0;
  for (const Ref& r : refs_) {
    flat.insert(flat.end(), body_.begin() + static_cast<ptrdiff_t>(from),
                body_.begin() + static_cast<ptrdiff_t>(r.at));
    flat.insert(flat.end(), r.data, r.data + r.len);
    from = r.at;
  }
  flat.insert(flat.end(), body_.begin() + static_cast<ptrdiff_t>(from), body_.end());
  body_ = std::move(flat);
  refs_.clear();
  ref_bytes_ = 0;
}

void Message::Rewind() {
  pos_ = base_;
  run_index_ = 0;
  run_used_ = 0;
}

Status Message::CheckType(DataType t, size_t bytes) {
  if (!typed_ || types_.empty()) return {};
  size_t idx = run_index_, used = run_used_, left = bytes;
  while (left > 0) {
    if (idx >= types_.size()) return Fail(Err::kNoData);
    const TypeRun& r = types_[idx];
    const bool raw_bytes = t == DataType::kByte && encoding_ != kEncDefault;
    if (!raw_bytes && TypeGroup(r.type) != TypeGroup(t)) return Fail(Err::kBadMsg);
    size_t avail = r.bytes - used;
    if (left < avail) {
      used += left;
      left = 0;
    } else {
      left -= avail;
      ++idx;
      used = 0;
    }
  }
  run_index_ = idx;
  run_used_ = used;
  return {};
}

Result<const uint8_t*> Message::Take(size_t n) {
  if (body_.size() - pos_ < n) return Fail(Err::kNoData);
  const uint8_t* p = body_.data() + pos_;
  pos_ += n;
  return p;
}

Status Message::Unpack(DataType type, void* data, int count, int stride) {
  // Stride 0 is PVM 3.4.6's too: the first item, `count` times.
  if (count < 0 || stride < 0 || (count > 0 && data == nullptr)) return Fail(Err::kBadParam);
  if (type == DataType::kStr || type == DataType::kMesg) return Fail(Err::kBadParam);
  if (count == 0) return {};
  Flatten();
  auto* dst = static_cast<uint8_t*>(data);
  const size_t n = static_cast<size_t>(count);
  const size_t item = NativeSize(type);
  const size_t step = item * static_cast<size_t>(stride);

  if (encoding_ != kEncDefault) {
    if (body_.size() - pos_ < n * item) return Fail(Err::kNoData);
    if (auto st = CheckType(type, n * item); !st) return st;
    auto p = Take(n * item);
    if (stride == 1) {
      std::memcpy(dst, *p, n * item);
    } else {
      for (size_t i = 0; i < n; ++i) std::memcpy(dst + i * step, *p + i * item, item);
    }
    return {};
  }

  const size_t xs = XdrSize(type);
  size_t total = n * xs;
  if (type == DataType::kByte) total += Pad4(n);
  if (body_.size() - pos_ < n * xs) return Fail(Err::kNoData);
  if (type == DataType::kByte && body_.size() - pos_ < total) total = body_.size() - pos_;
  if (auto st = CheckType(type, total); !st) return st;
  const uint8_t* in = *Take(total);
  switch (type) {
    case DataType::kByte:
      for (size_t i = 0; i < n; ++i) dst[i * step] = in[i];
      break;
    case DataType::kShort:
    case DataType::kUShort:
      for (size_t i = 0; i < n; ++i) {
        uint16_t v = static_cast<uint16_t>(GetBe32(in + 4 * i));
        std::memcpy(dst + i * step, &v, 2);
      }
      break;
    case DataType::kInt:
    case DataType::kUInt:
    case DataType::kFloat:
      for (size_t i = 0; i < n; ++i) {
        uint32_t v = GetBe32(in + 4 * i);
        std::memcpy(dst + i * step, &v, 4);
      }
      break;
    case DataType::kCplx:
      for (size_t i = 0; i < n; ++i)
        for (size_t k = 0; k < 2; ++k) {
          uint32_t v = GetBe32(in + 8 * i + 4 * k);
          std::memcpy(dst + i * step + 4 * k, &v, 4);
        }
      break;
    case DataType::kLong:
    case DataType::kULong:
    case DataType::kDouble:
      for (size_t i = 0; i < n; ++i) {
        uint64_t v = GetBe64(in + 8 * i);
        std::memcpy(dst + i * step, &v, 8);
      }
      break;
    case DataType::kDcplx:
      for (size_t i = 0; i < n; ++i)
        for (size_t k = 0; k < 2; ++k) {
          uint64_t v = GetBe64(in + 16 * i + 8 * k);
          std::memcpy(dst + i * step + 8 * k, &v, 8);
        }
      break;
    default:
      return Fail(Err::kBadParam);
  }
  return {};
}

Result<std::string> Message::UnpackString() {
  Flatten();
  if (body_.size() - pos_ < 4) return Fail(Err::kNoData);
  int32_t len;
  if (encoding_ == kEncDefault) {
    len = static_cast<int32_t>(GetBe32(body_.data() + pos_));
  } else {
    std::memcpy(&len, body_.data() + pos_, 4);
  }
  if (len < 0) return Fail(Err::kBadMsg);
  const size_t ulen = static_cast<size_t>(len);
  const size_t total = 4 + ulen + (encoding_ == kEncDefault ? Pad4(ulen) : 0);
  if (body_.size() - pos_ < total) return Fail(Err::kNoData);
  if (auto st = CheckType(DataType::kStr, total); !st) return mpvm::unexpected(st.error());
  const uint8_t* p = *Take(total);
  std::string s(reinterpret_cast<const char*>(p + 4), ulen);
  if (!s.empty() && s.back() == '\0') s.pop_back();
  return s;
}

Status Message::UnpackStr(char* s) {
  if (s == nullptr) return Fail(Err::kBadParam);
  auto str = UnpackString();
  if (!str) return mpvm::unexpected(str.error());
  std::memcpy(s, str->data(), str->size());
  s[str->size()] = '\0';
  return {};
}

Result<Message> Message::UnpackMessage() {
  Flatten();
  if (body_.size() - pos_ < 28) return Fail(Err::kNoData);
  int32_t f[7];
  for (int i = 0; i < 7; ++i) f[i] = static_cast<int32_t>(GetBe32(body_.data() + pos_ + 4 * i));
  if (f[5] < 0 || f[6] < 0) return Fail(Err::kBadMsg);
  const size_t len = 28 + static_cast<size_t>(f[5]) + static_cast<size_t>(f[6]);
  if (body_.size() - pos_ < len) return Fail(Err::kNoData);
  const size_t total = std::min(len + Pad4(len), body_.size() - pos_);
  if (auto st = CheckType(DataType::kMesg, total); !st) return mpvm::unexpected(st.error());
  const uint8_t* p = *Take(total);
  std::vector<uint8_t> payload(p + 28, p + len);
  Message m = FromWire(f[0], std::move(payload), static_cast<uint32_t>(f[5]));
  m.tag = f[1];
  m.ctx = f[2];
  m.src = f[3];
  m.dst = f[4];
  return m;
}

std::vector<uint8_t> Message::EncodeTypeMap() const {
  std::vector<uint8_t> out;
  out.reserve(types_.size() * 5);
  for (const TypeRun& r : types_) {
    out.push_back(static_cast<uint8_t>(r.type));
    for (int i = 0; i < 4; ++i) out.push_back(static_cast<uint8_t>(r.bytes >> (8 * i)));
  }
  return out;
}

Message Message::FromWire(int encoding, std::vector<uint8_t> payload, uint32_t aux_length) {
  Message m(encoding == kEncInPlace ? kEncRaw : encoding);
  if (aux_length > payload.size()) aux_length = static_cast<uint32_t>(payload.size());
  // Decode the type map; any inconsistency drops it.
  bool ok = aux_length % 5 == 0;
  uint64_t covered = 0;
  for (size_t i = 0; ok && i + 5 <= aux_length; i += 5) {
    uint8_t t = payload[i];
    uint32_t bytes = 0;
    for (int k = 3; k >= 0; --k) bytes = (bytes << 8) | payload[i + 1 + static_cast<size_t>(k)];
    if (!ValidType(t) || bytes == 0) {
      ok = false;
      break;
    }
    m.types_.push_back({static_cast<DataType>(t), bytes});
    covered += bytes;
  }
  if (!ok || covered != payload.size() - aux_length) {
    m.types_.clear();
    m.typed_ = false;
  }
  m.body_ = std::move(payload);
  m.base_ = aux_length;
  m.pos_ = aux_length;
  return m;
}

}  // namespace mpvm
