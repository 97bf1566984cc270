#include "mpvm/frame.h"

#include <algorithm>
#include <cstring>

namespace mpvm {
namespace {

void Put32(uint8_t* p, uint32_t v) {
  for (int i = 0; i < 4; ++i) p[i] = static_cast<uint8_t>(v >> (8 * i));
}
void Put64(uint8_t* p, uint64_t v) {
  for (int i = 0; i < 8; ++i) p[i] = static_cast<uint8_t>(v >> (8 * i));
}
uint32_t Get32(const uint8_t* p) {
  uint32_t v = 0;
  for (int i = 3; i >= 0; --i) v = (v << 8) | p[i];
  return v;
}
uint64_t Get64(const uint8_t* p) {
  uint64_t v = 0;
  for (int i = 7; i >= 0; --i) v = (v << 8) | p[i];
  return v;
}

}  // namespace

std::string_view FrameErrorText(FrameError e) {
  switch (e) {
    case FrameError::kBadMagic:
      return "bad frame magic (not an mpvm peer?)";
    case FrameError::kBadVersion:
      return "unsupported frame version";
    case FrameError::kBadKind:
      return "unknown frame kind";
    case FrameError::kTooLarge:
      return "frame larger than the configured maximum";
    case FrameError::kBadAux:
      return "frame metadata longer than the frame";
  }
  return "unknown frame error";
}

std::array<uint8_t, kFrameHeaderSize> EncodeFrameHeader(const FrameHeader& h) {
  std::array<uint8_t, kFrameHeaderSize> b{};
  Put32(&b[0], kFrameMagic);
  b[4] = kFrameVersion;
  b[5] = static_cast<uint8_t>(h.kind);
  b[6] = h.encoding;
  b[7] = h.flags;
  Put32(&b[8], static_cast<uint32_t>(h.src));
  Put32(&b[12], static_cast<uint32_t>(h.dst));
  Put32(&b[16], static_cast<uint32_t>(h.tag));
  Put32(&b[20], static_cast<uint32_t>(h.ctx));
  Put64(&b[24], h.seq);
  Put32(&b[32], h.length);
  Put32(&b[36], h.aux_length);
  return b;
}

mpvm::expected<FrameHeader, FrameError> DecodeFrameHeader(
    std::span<const uint8_t, kFrameHeaderSize> b, uint32_t max_length) {
  if (Get32(&b[0]) != kFrameMagic) return mpvm::unexpected(FrameError::kBadMagic);
  if (b[4] != kFrameVersion) return mpvm::unexpected(FrameError::kBadVersion);
  FrameHeader h;
  if (b[5] != static_cast<uint8_t>(FrameKind::kData) &&
      b[5] != static_cast<uint8_t>(FrameKind::kControl) &&
      b[5] != static_cast<uint8_t>(FrameKind::kMoved) &&
      b[5] != static_cast<uint8_t>(FrameKind::kAck))
    return mpvm::unexpected(FrameError::kBadKind);
  h.kind = static_cast<FrameKind>(b[5]);
  h.encoding = b[6];
  h.flags = b[7];
  h.src = static_cast<int32_t>(Get32(&b[8]));
  h.dst = static_cast<int32_t>(Get32(&b[12]));
  h.tag = static_cast<int32_t>(Get32(&b[16]));
  h.ctx = static_cast<int32_t>(Get32(&b[20]));
  h.seq = Get64(&b[24]);
  h.length = Get32(&b[32]);
  h.aux_length = Get32(&b[36]);
  if (h.length > max_length) return mpvm::unexpected(FrameError::kTooLarge);
  if (h.aux_length > h.length) return mpvm::unexpected(FrameError::kBadAux);
  return h;
}

std::span<uint8_t> FrameReader::WritableSpace(size_t min) {
  if (start_ == end_) start_ = end_ = 0;
  const size_t buffered = end_ - start_;
  if (have_header_ && header_.length >= kLargeFrame && buffered < header_.length) {
    // The rest of a large frame: its room is reserved at once (address space
    // only: a header that claims 2 GiB costs no memory until the bytes come),
    // made usable a piece at a time as they arrive, and never read past (so
    // the whole buffer can be handed over as the frame).
    const size_t need = header_.length - buffered;
    if (buf_.capacity() - end_ < need) {
      Compact();
      buf_.reserve(end_ + need);
    }
    const size_t want = std::min(need, kGrowStep);
    if (buf_.size() < end_ + want) buf_.resize(end_ + want);
    return {buf_.data() + end_, want};
  }
  size_t want = min;
  if (have_header_ && buffered < header_.length) want = std::max(want, header_.length - buffered);
  if (buf_.size() - end_ < want) {
    Compact();
    if (buf_.size() - end_ < want) buf_.resize(end_ + want);
  }
  return {buf_.data() + end_, buf_.size() - end_};
}

void FrameReader::Compact() {
  if (start_ == 0) return;
  std::memmove(buf_.data(), buf_.data() + start_, end_ - start_);
  end_ -= start_;
  start_ = 0;
}

void FrameReader::Feed(std::span<const uint8_t> bytes) {
  if (bytes.empty()) return;
  auto space = WritableSpace(bytes.size());
  std::memcpy(space.data(), bytes.data(), bytes.size());
  Commit(bytes.size());
}

bool FrameReader::PendingHeader(uint8_t out[kFrameHeaderSize]) const {
  if (!have_header_) return false;
  const auto h = EncodeFrameHeader(header_);
  for (size_t i = 0; i < kFrameHeaderSize; ++i) out[i] = h[i];
  return true;
}

FrameReader::Status FrameReader::Next(Frame& out) {
  if (failed_) return Status::kError;
  if (!have_header_) {
    if (end_ - start_ < kFrameHeaderSize) return Status::kNeedMore;
    auto h = DecodeFrameHeader(
        std::span<const uint8_t, kFrameHeaderSize>(buf_.data() + start_, kFrameHeaderSize),
        max_length_);
    if (!h) {
      failed_ = true;
      error_ = h.error();
      return Status::kError;
    }
    header_ = *h;
    have_header_ = true;
    start_ += kFrameHeaderSize;
  }
  if (end_ - start_ < header_.length) return Status::kNeedMore;
  out.header = header_;
  if (start_ == 0 && end_ == header_.length && header_.length >= kLargeFrame) {
    // The buffer holds exactly this frame (WritableSpace compacted it to the
    // front): hand it over instead of copying a large payload.
    out.payload = std::move(buf_);
    out.payload.resize(header_.length);  // drop spare capacity past the frame
    buf_ = {};
    end_ = 0;
    have_header_ = false;
    return Status::kFrame;
  }
  out.payload.assign(buf_.begin() + static_cast<ptrdiff_t>(start_),
                     buf_.begin() + static_cast<ptrdiff_t>(start_ + header_.length));
  start_ += header_.length;
  have_header_ = false;
  if (start_ == end_) start_ = end_ = 0;
  return Status::kFrame;
}

}  // namespace mpvm
