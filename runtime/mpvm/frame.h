// frame.h — the versioned binary frame that every mpvm stream carries.
//
// Layout (40 bytes, little-endian), followed by `length` payload bytes:
//   0  u32 magic "MPVM" | 4 u8 version | 5 u8 kind | 6 u8 encoding | 7 u8 flags
//   8  i32 src | 12 i32 dst | 16 i32 tag | 20 i32 ctx | 24 u64 seq
//   32 u32 length | 36 u32 aux_length (leading payload bytes that are metadata)
//
// Data frames carry one PVM message: `seq` is the per-(src, dst) sequence
// number (1, 2, ...; 0 means "ordered by the connection", used by daemons).
// Control frames carry a protobuf `mpvm.ctl.Envelope` (see control.proto).
//
// Bytes from the wire never assert: DecodeFrameHeader returns an error value.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "mpvm/error.h"

namespace mpvm {

// kMoved: written by a daemon on a task link it took over from a task that
// migrated (src: that task). The receiver stops using the link and sends to
// the task afresh, where it is now (lazy link update).
// kAck: from a task to a task that sent it data frames: every frame of src's
// to it up to `seq` is here (mpvm/retransmit.h). No payload.
enum class FrameKind : uint8_t { kData = 1, kControl = 2, kMoved = 3, kAck = 4 };

struct FrameHeader {
  FrameKind kind = FrameKind::kData;
  uint8_t encoding = 0;
  uint8_t flags = 0;
  int32_t src = 0;
  int32_t dst = 0;
  int32_t tag = 0;
  int32_t ctx = 0;
  uint64_t seq = 0;
  uint32_t length = 0;
  uint32_t aux_length = 0;
};

inline constexpr size_t kFrameHeaderSize = 40;
inline constexpr uint32_t kFrameMagic = 0x4d56504d;  // "MPVM" as bytes
inline constexpr uint8_t kFrameVersion = 1;
// The largest message body: what pvm_bufinfo's int can report (2 GiB - 1).
// A larger message is refused at pack or send time (PvmOverflow).
inline constexpr size_t kMaxMessageBytes = 0x7fffffff;
// Default largest payload accepted from a peer: the largest message body plus
// room for its type map (frame aux bytes).
inline constexpr uint32_t kDefaultMaxFrame = uint32_t{kMaxMessageBytes} + (16u << 20);
// A frame at least this long is handed out of the reader without a copy.
inline constexpr uint32_t kLargeFrame = 1u << 20;

// Frame flags.
inline constexpr uint8_t kFrameFlagRelayed = 1;  // came through a daemon
// The upper four bits count forwarding hops: how often a daemon passed the
// frame on because the task it was for had moved away from there (0..15,
// saturating). Each forwarding daemon adds one.
inline constexpr int kFrameHopShift = 4;
inline constexpr int kFrameMaxHops = 15;
inline int FrameHops(const FrameHeader& h) { return h.flags >> kFrameHopShift; }
inline void AddFrameHop(FrameHeader& h) {
  const int hops = FrameHops(h);
  if (hops < kFrameMaxHops)
    h.flags = static_cast<uint8_t>((h.flags & 0x0f) | ((hops + 1) << kFrameHopShift));
}

enum class FrameError { kBadMagic, kBadVersion, kBadKind, kTooLarge, kBadAux };
std::string_view FrameErrorText(FrameError e);

std::array<uint8_t, kFrameHeaderSize> EncodeFrameHeader(const FrameHeader& h);
mpvm::expected<FrameHeader, FrameError> DecodeFrameHeader(
    std::span<const uint8_t, kFrameHeaderSize> bytes, uint32_t max_length = kDefaultMaxFrame);

struct Frame {
  FrameHeader header;
  std::vector<uint8_t> payload;  // aux bytes first, then the body
};

// Splits a byte stream into frames. Feed it what read() returned; take frames
// out with Next(). After an error the stream is unusable (the caller closes it).
class FrameReader {
 public:
  explicit FrameReader(uint32_t max_length = kDefaultMaxFrame) : max_length_(max_length) {}

  // Space to read into: at least `min` bytes. Call Commit(n) after read().
  std::span<uint8_t> WritableSpace(size_t min = 64 * 1024);
  void Commit(size_t n) { end_ += n; }
  // Appends bytes (for tests and fuzzing).
  void Feed(std::span<const uint8_t> bytes);

  enum class Status { kFrame, kNeedMore, kError };
  // Extracts the next complete frame into `out`.
  Status Next(Frame& out);
  FrameError error() const { return error_; }
  // True when a whole frame of at least kLargeFrame bytes waits in the
  // buffer: read no more until it is taken, so the buffer is not grown (and
  // copied) past it.
  bool HasLargeFrame() const {
    return have_header_ && header_.length >= kLargeFrame && end_ - start_ >= header_.length;
  }
  size_t buffered() const { return end_ - start_; }
  // Bytes read but not yet returned as frames, as they came off the wire:
  // the header of a frame in progress (if decoded already) then the rest.
  // Allocates nothing (a migrating task hands them over from a signal handler).
  size_t PendingSize() const { return (have_header_ ? kFrameHeaderSize : 0) + (end_ - start_); }
  bool PendingHeader(uint8_t out[kFrameHeaderSize]) const;
  std::span<const uint8_t> PendingBody() const { return {buf_.data() + start_, end_ - start_}; }

 private:
  // Moves the unread bytes to the front of the buffer.
  void Compact();
  // How much of a large frame's reserved room is made usable at a time.
  static constexpr size_t kGrowStep = 64u << 20;

  std::vector<uint8_t> buf_;
  size_t start_ = 0;
  size_t end_ = 0;
  uint32_t max_length_;
  bool have_header_ = false;
  FrameHeader header_;
  FrameError error_ = FrameError::kBadMagic;
  bool failed_ = false;
};

}  // namespace mpvm
