// A DaemonEnv that performs nothing, for fuzzing the daemon core.
#pragma once

#include "core/fake_clock.h"
#include "core/fake_random.h"
#include "daemon_core.h"

namespace mpvm {

class NullEnv final : public DaemonEnv, public FakeClock, public FakeRandom {
 public:
  void Send(ConnId, const FrameHeader&, std::span<const uint8_t>,
            std::span<const uint8_t>) override {}
  void CloseConn(ConnId) override {}
  Result<int> Spawn(const SpawnSpec&) override { return ++pid_; }
  void Signal(int, int) override {}
  std::string Resolve(const std::string& f, const std::string&, const std::string&) override {
    return f.empty() ? "" : "/bin/true";
  }
  void RemoveTaskSocket(Tid) override {}
  void LogOutput(Tid, std::string_view) override {}
  void Log(std::string_view) override {}
  void RequestShutdown() override {}
  void SendToPeer(PeerId, const FrameHeader&, std::span<const uint8_t>) override {}
  void DropPeer(PeerId) override {}
  mpvm::expected<void, HostStartError> StartHost(const HostSpec&) override { return {}; }
  Result<RestoreStart> SpawnRestore(const SpawnSpec&, const std::string&,
                                    const std::string&) override {
    return RestoreStart{pid_++, 40000};
  }
  mpvm::expected<void, std::string> BeginMove(const MoveAsk&) override { return {}; }
  void CancelMove(Tid) override {}
  ProcessSample Sample(int) override { return {}; }
  double SampleBackground(const std::vector<int>&, int) override { return 0; }
  void PublishVirtualCpu(int, int) override {}

 private:
  int pid_ = 1000;
};

}  // namespace mpvm
