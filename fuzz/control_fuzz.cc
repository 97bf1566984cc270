// Fuzzes the control decoder directly, then a daemon core with the result.
#include <cstddef>
#include <cstdint>

#include "daemon_core.h"
#include "mpvm/control.h"
#include "null_env.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  auto env = mpvm::DecodeControl(std::span<const uint8_t>(data, size));
  if (!env) return 0;
  mpvm::NullEnv ne;
  mpvm::DaemonCore core(mpvm::DaemonConfig{}, &ne);
  core.OnAccept(7);
  for (int round = 0; round < 2; ++round) {  // first as enrolment, then as a request
    mpvm::Frame f;
    f.header = mpvm::ControlHeader(0, 0);
    f.payload.assign(data, data + size);
    core.OnFrame(7, std::move(f));
  }
  core.OnClose(7);
  return 0;
}
