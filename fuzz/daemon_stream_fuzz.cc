// Fuzzes what a client can send to mpvmd's socket: an arbitrary byte stream
// is split into frames (FrameReader) and every frame is handed to the daemon
// core, after a valid enrolment so the request handlers are reached too, and
// to the daemon-to-daemon handler (join, heartbeats, tables) with time moving.
#include <cstddef>
#include <cstdint>

#include "daemon_core.h"
#include "mpvm/control.h"
#include "null_env.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  mpvm::NullEnv env;
  mpvm::DaemonCore core(mpvm::DaemonConfig{}, &env);
  core.OnAccept(1);
  mpvm::ctl::Envelope enrol;
  enrol.set_version(mpvm::kControlVersion);
  enrol.mutable_enrol()->set_pid(1);
  mpvm::Frame f;
  f.header = mpvm::ControlHeader(0, 0);
  f.payload = mpvm::EncodeControl(enrol);
  core.OnFrame(1, std::move(f));

  mpvm::FrameReader reader(1 << 20);
  reader.Feed(std::span<const uint8_t>(data, size));
  mpvm::Frame frame;
  for (int i = 0; i < 1000; ++i) {
    auto st = reader.Next(frame);
    if (st == mpvm::FrameReader::Status::kFrame) {
      mpvm::Frame copy = frame;
      core.OnFrame(1, std::move(frame));
      core.OnPeerFrame(100 + static_cast<mpvm::PeerId>(i % 3), std::move(copy));  // peer links
      core.OnTick(static_cast<int64_t>(i) * 400'000'000);
      continue;
    }
    if (st == mpvm::FrameReader::Status::kError) core.OnBadStream(1, "fuzz");
    break;
  }
  core.OnClose(1);
  return 0;
}
