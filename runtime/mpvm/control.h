// control.h — encoding and decoding of control frames (control.proto).
#pragma once

#include <span>
#include <string>
#include <vector>

#include "control.pb.h"
#include "mpvm/error.h"
#include "mpvm/frame.h"

namespace mpvm {

// Reserved message context for the runtime's own traffic: collected output,
// and the trace events daemons send to a run's event sink (prun --trace),
// each one JSON object packed as bytes.
inline constexpr int kSystemCtx = 0x7ffffff0;
inline constexpr int kOutputTag = 0x7fff0001;
inline constexpr int kTraceTag = 0x7fff0002;
// Collected stderr, when the spawner asked for it apart (SpawnRequest
// stderr_apart): records as for kOutputTag, data only.
inline constexpr int kStderrTag = 0x7fff0003;

inline constexpr uint32_t kControlVersion = 1;

std::vector<uint8_t> EncodeControl(const ctl::Envelope& env);
// Parses a control payload. Errors are sentences fit for a log line.
mpvm::expected<ctl::Envelope, std::string> DecodeControl(std::span<const uint8_t> payload);
FrameHeader ControlHeader(int32_t src, int32_t dst);
// An empty envelope of the current version.
inline ctl::Envelope NewEnvelope() {
  ctl::Envelope e;
  e.set_version(kControlVersion);
  return e;
}

}  // namespace mpvm
