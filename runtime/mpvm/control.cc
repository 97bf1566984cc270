#include "mpvm/control.h"

#include <fmt/format.h>

namespace mpvm {

std::vector<uint8_t> EncodeControl(const ctl::Envelope& env) {
  std::vector<uint8_t> out(env.ByteSizeLong());
  env.SerializeWithCachedSizesToArray(out.data());
  return out;
}

mpvm::expected<ctl::Envelope, std::string> DecodeControl(std::span<const uint8_t> payload) {
  ctl::Envelope env;
  if (payload.size() > static_cast<size_t>(INT32_MAX) ||
      !env.ParseFromArray(payload.data(), static_cast<int>(payload.size())))
    return mpvm::unexpected(fmt::format("undecodable control message ({} bytes)", payload.size()));
  if (env.version() != kControlVersion)
    return mpvm::unexpected(fmt::format("control schema version {} (this side speaks {})",
                                        env.version(), kControlVersion));
  if (env.body_case() == ctl::Envelope::BODY_NOT_SET)
    return mpvm::unexpected(std::string("control message with no body (unknown request type?)"));
  return env;
}

FrameHeader ControlHeader(int32_t src, int32_t dst) {
  FrameHeader h;
  h.kind = FrameKind::kControl;
  h.src = src;
  h.dst = dst;
  return h;
}

}  // namespace mpvm
