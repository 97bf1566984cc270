// message.h — a PVM message: typed packing and unpacking in PVM's encodings.
//
// PvmDataDefault is XDR (big-endian, every item padded to 4 bytes, laid out as
// Debian's PVM 3.4.6 lays it out), except that `long`/`ulong` travel as 8-byte
// XDR hypers so no bits are lost. PvmDataRaw is the host's native layout.
// PvmDataInPlace keeps references to the caller's arrays until the message is
// sent (Flatten()); the receiver sees it as raw.
//
// Each message also records which type was packed where (its type map); it
// travels as frame metadata, so an unpack of the wrong type is caught and
// reported (PvmBadMsg) instead of returning garbage as PVM did.
//
// Not thread-safe; owned by one task runtime.
//
// Example:
//   Message m(kEncDefault);
//   int v[3] = {1, 2, 3};
//   m.Pack(DataType::kInt, v, 3, 1);
//   m.Rewind();
//   int w[3]; m.Unpack(DataType::kInt, w, 3, 1);
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "mpvm/error.h"

namespace mpvm {

inline constexpr int kEncDefault = 0;
inline constexpr int kEncRaw = 1;
inline constexpr int kEncInPlace = 2;
inline constexpr int kEncTrace = 4;

enum class DataType : uint8_t {
  kByte = 1,
  kShort,
  kUShort,
  kInt,
  kUInt,
  kLong,
  kULong,
  kFloat,
  kCplx,
  kDouble,
  kDcplx,
  kStr,
  kMesg,
};
std::string_view DataTypeName(DataType t);

class Message {
 public:
  explicit Message(int encoding = kEncDefault) : encoding_(encoding) {}

  int encoding() const { return encoding_; }

  // Packs `count` items of `type` from `data`, taking every `stride`-th item.
  // Errors: kBadParam (count < 0, stride < 1, null data with count > 0).
  Status Pack(DataType type, const void* data, int count, int stride);
  Status PackStr(const char* s);
  // Packs a whole message as one item (pvm_pkmesg).
  Status PackMessage(const Message& m);

  // Unpacks into `data`. Errors: kNoData (not that much left), kBadMsg (the
  // next item was packed as another type), kBadParam.
  Status Unpack(DataType type, void* data, int count, int stride);
  // Unpacks a string into `s`, which must be large enough (as in PVM).
  Status UnpackStr(char* s);
  Result<std::string> UnpackString();
  Result<Message> UnpackMessage();
  void Rewind();

  // Body size in bytes (in-place data included).
  size_t size() const;
  // Copies referenced in-place data in; afterwards body() is the whole body.
  void Flatten();
  std::span<const uint8_t> body() const { return std::span<const uint8_t>(body_).subspan(base_); }
  // The encoded type map (frame aux bytes).
  std::vector<uint8_t> EncodeTypeMap() const;

  // Builds a received message. A malformed type map is dropped (the message
  // is then unchecked), never trusted.
  static Message FromWire(int encoding, std::vector<uint8_t> payload, uint32_t aux_length);

  // Message info (pvm_bufinfo / pvm_getminfo / pvm_setminfo).
  int src = -1;
  int dst = 0;
  int tag = -1;
  int ctx = 0;
  int wid = 0;
  int crc = 0;

 private:
  struct TypeRun {
    DataType type;
    uint32_t bytes;
  };
  struct Ref {  // in-place data referenced at body offset `at`
    size_t at;
    const uint8_t* data;
    size_t len;
  };
  uint8_t* Grow(size_t n);
  void NoteType(DataType t, size_t bytes);
  Status CheckType(DataType t, size_t bytes);
  Result<const uint8_t*> Take(size_t n);

  int encoding_;
  std::vector<uint8_t> body_;
  std::vector<Ref> refs_;
  size_t ref_bytes_ = 0;
  std::vector<TypeRun> types_;
  bool typed_ = true;
  size_t base_ = 0;  // received messages: where the body starts after the aux bytes
  size_t pos_ = 0;
  size_t run_index_ = 0;
  size_t run_used_ = 0;
};

}  // namespace mpvm
