// fake_env.h — a DaemonEnv for unit tests of the daemon's core: it records
// what the core sends, starts and signals, and answers from fixed rules
// ("missing" does not resolve, hosts named unreachable* cannot start).
#pragma once

#include <gtest/gtest.h>

#include <map>
#include <string>
#include <utility>
#include <vector>

#include "core/core_context.h"
#include "core/env.h"
#include "core/fake_clock.h"
#include "core/fake_random.h"
#include "mpvm/control.h"

namespace mpvm {

struct Sent {
  ConnId conn;
  FrameHeader h;
  std::vector<uint8_t> payload;  // aux + body
};

class FakeEnv : public DaemonEnv, public FakeClock, public FakeRandom {
 public:
  void Send(ConnId c, const FrameHeader& h, std::span<const uint8_t> aux,
            std::span<const uint8_t> body) override {
    Sent s{c, h, {aux.begin(), aux.end()}};
    s.payload.insert(s.payload.end(), body.begin(), body.end());
    s.h.aux_length = static_cast<uint32_t>(aux.size());
    sent.push_back(std::move(s));
  }
  void CloseConn(ConnId c) override { closed.push_back(c); }
  Result<int> Spawn(const SpawnSpec& spec) override {
    spawned.push_back(spec);
    if (fail_spawn) return Fail(Err::kOutOfRes);
    return 1000 + static_cast<int>(spawned.size());
  }
  void Signal(int pid, int sig) override { signals.emplace_back(pid, sig); }
  std::string Resolve(const std::string& file, const std::string&, const std::string&) override {
    return file == "missing" ? "" : "/bin/" + file;
  }
  void RemoveTaskSocket(Tid t) override { removed.push_back(t); }
  void LogOutput(Tid, std::string_view line) override { logged.emplace_back(line); }
  void Log(std::string_view line) override { logs.emplace_back(line); }
  void RequestShutdown() override { shutdown = true; }
  void SendToPeer(PeerId p, const FrameHeader& h, std::span<const uint8_t> body) override {
    peer_sent.push_back({p, h, {body.begin(), body.end()}});
  }
  void DropPeer(PeerId p) override { dropped.push_back(p); }
  mpvm::expected<void, HostStartError> StartHost(const HostSpec& spec) override {
    if (spec.name.starts_with("unreachable"))
      return mpvm::unexpected(HostStartError{Err::kNoHost, "cannot resolve " + spec.name});
    started_hosts.push_back(spec.name);
    return {};
  }
  std::vector<std::string> started_hosts;
  bool restore_says_ready = false;
  std::vector<std::string> restore_addrs;  // where each restore process was to listen  //
                                           // RestoreStart::says_when_ready of the restores started
  Result<RestoreStart> SpawnRestore(const SpawnSpec& spec, const std::string&,
                                    const std::string& listen_addr) override {
    restore_addrs.push_back(listen_addr);
    restores.push_back(spec);
    return RestoreStart{5000 + static_cast<int>(restores.size()), 40000, restore_says_ready};
  }
  mpvm::expected<void, std::string> BeginMove(const MoveAsk& ask) override {
    begun.push_back({ask.tid, ask.addr + ":" + std::to_string(ask.port)});
    return {};
  }
  void CancelMove(Tid t) override { cancelled.push_back(t); }
  ProcessSample Sample(int pid) override {
    ++sampled[pid];
    auto it = samples.find(pid);
    return it == samples.end() ? ProcessSample{} : it->second;
  }
  double SampleBackground(const std::vector<int>&, int) override { return background; }
  double background = 0;
  std::map<int, ProcessSample> samples;  // by pid
  std::map<int, int> sampled;            // calls of Sample, by pid
  void PublishVirtualCpu(int speed, int working) override { vcpu.push_back({speed, working}); }
  std::vector<std::pair<int, int>> vcpu;
  std::vector<SpawnSpec> restores;
  std::vector<std::pair<Tid, std::string>> begun;
  std::vector<Tid> cancelled;

  std::vector<ctl::Envelope> PeerControls(PeerId p) {
    std::vector<ctl::Envelope> out;
    for (const auto& s : peer_sent)
      if (s.conn == p) out.push_back(*DecodeControl(s.payload));
    return out;
  }
  std::vector<Sent> peer_sent;
  std::vector<PeerId> dropped;

  // Control replies sent to `c`, decoded.
  std::vector<ctl::Envelope> Controls(ConnId c) {
    std::vector<ctl::Envelope> out;
    for (const auto& s : sent)
      if (s.conn == c && s.h.kind == FrameKind::kControl) out.push_back(*DecodeControl(s.payload));
    return out;
  }
  std::vector<Sent> Data(ConnId c) {
    std::vector<Sent> out;
    for (const auto& s : sent)
      if (s.conn == c && s.h.kind == FrameKind::kData) out.push_back(s);
    return out;
  }

  std::vector<Sent> sent;
  std::vector<ConnId> closed;
  std::vector<SpawnSpec> spawned;
  std::vector<std::pair<int, int>> signals;
  std::vector<Tid> removed;
  std::vector<std::string> logged, logs;
  bool fail_spawn = false;
  bool shutdown = false;
};

}  // namespace mpvm

namespace mpvm {

// CoreEvents for a concern tested alone: what it raised for the others.
struct FakeEvents : CoreEvents {
  void TaskLost(int tid) override { lost.push_back(tid); }
  void TaskLeft(int tid) override { left.push_back(tid); }
  void TaskOutput(Tid, std::string_view bytes) override { output.append(bytes); }
  void MaybeFinish(Tid t) override { finish.push_back(t); }
  void ClaimArrival(Tid t) override { claims.push_back(t); }
  void TaskReady(Tid t) override { ready.push_back(t); }
  void HostGone(int index) override { hosts_gone.push_back(index); }
  void Committed(const ctl::TaskMoved& m) override { committed.push_back(m); }
  void HaltVm(bool fenced) override {
    ++halts;
    if (fenced) ++fences;
  }

  std::vector<int> lost, left, hosts_gone;
  std::vector<Tid> finish, claims, ready;
  std::vector<ctl::TaskMoved> committed;
  std::string output;
  int halts = 0;
  int fences = 0;  // halts that kill the tasks at once
};

// A master's core context over a FakeEnv, with FakeEvents, and members
// admitted on demand.
struct MasterContext {
  MasterContext() : cx(Config(), &env) { cx.events = &events; }
  static DaemonConfig Config() {
    DaemonConfig c;
    c.hostname = "node1";
    c.rundir = "/run/x";
    return c;
  }
  // Admits host `name` on peer link `p`; returns its index.
  int Admit(PeerId p, const std::string& name) {
    ctl::JoinRequest j;
    j.set_name(name);
    j.set_arch("LINUX64");
    j.set_speed(1000);
    return *cx.hosts.Admit(p, j, cx.now_ns);
  }
  FakeEnv env;
  FakeEvents events;
  CoreContext cx;
};

}  // namespace mpvm
