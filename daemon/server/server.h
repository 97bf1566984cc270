// server.h — mpvmd's I/O loop: it turns sockets, child processes and
// signals into the core's events (DaemonCore) and carries out what the core
// asks (DaemonEnv). Each kind of I/O is a class of its own:
//   RunDirLock         the runtime directory, locked
//   Connections    tasks' and tools' connections, and forwarded task links
//   TaskProcesses  task processes and their output
//   VmLinks        the links to other daemons (ZeroMQ, CURVE)
//   HostStarter    the daemons of other hosts, started by the master
//   MoveIo         a migration's sockets and the restore process
#pragma once

#include <sys/types.h>
#include <zmq.h>

#include <memory>
#include <string>
#include <vector>

#include "daemon_core.h"
#include "server/connections.h"
#include "server/host_starter.h"
#include "server/move_io.h"
#include "server/options.h"
#include "server/processes.h"
#include "server/run_dir.h"
#include "server/vm_links.h"

namespace mpvm {

class Server final : public DaemonEnv {
 public:
  explicit Server(ServerOptions opts);
  ~Server() override;
  // Binds and serves until halted. Returns the process exit code.
  int Run();

  // DaemonEnv
  void Send(ConnId c, const FrameHeader& h, std::span<const uint8_t> aux,
            std::span<const uint8_t> body) override;
  void CloseConn(ConnId c) override;
  Result<int> Spawn(const SpawnSpec& spec) override;
  void Signal(int pid, int sig) override;
  std::string Resolve(const std::string& file, const std::string& path_env,
                      const std::string& cwd) override;
  void RemoveTaskSocket(Tid t) override;
  void LogOutput(Tid t, std::string_view line) override;
  void Log(std::string_view line) override;
  void Info(std::string_view line) override;
  void Debug(std::string_view line) override;
  void RequestShutdown() override;
  void SendToPeer(PeerId p, const FrameHeader& h, std::span<const uint8_t> body) override;
  void DropPeer(PeerId p) override;
  mpvm::expected<void, HostStartError> StartHost(const HostSpec& spec) override;
  Result<RestoreStart> SpawnRestore(const SpawnSpec& spec, const std::string& key,
                                    const std::string& listen_addr) override;
  ProcessSample Sample(int pid) override { return TaskProcesses::Sample(pid); }
  double SampleBackground(const std::vector<int>& ours, int our_running) override;
  void PublishVirtualCpu(int speed, int working) override;
  mpvm::expected<void, std::string> BeginMove(const MoveAsk& ask) override;
  void CancelMove(Tid t) override;
  void FaultPoint(std::string_view step, int task_pid) override;
  int64_t WallNs() override;
  std::string RandomBytes(size_t n) override;

 private:
  // Setup's steps: the runtime directory and listeners, signals, the core
  // (with the host file's other hosts), the links to other daemons.
  bool Setup(std::string* error);
  bool OpenListener(std::string* error);
  // --hash-cache: this host's file hash cache is a link to the one given.
  void ShareHashCache();
  // An emulated host's speed, enforced on its tasks (--emulate-speed).
  void LimitCpu(const DaemonConfig& cfg);
  // The CPU an emulated host of speed <= 1000 runs its tasks on (-1: any).
  int OwnCpu() const;
  void BlockSignals();
  void StartOtherHosts(const std::vector<HostSpec>& others);
  void ReportReady(const std::string& error);
  void Loop();
  // What one round of the loop polls: the listener, signals and connections
  // (their ids beside them), then moves' sockets, output pipes and the peer
  // links, from the positions noted.
  struct PollSet {
    std::vector<zmq_pollitem_t> fds;
    std::vector<ConnId> ids;
    std::vector<uint64_t> pipe_index;
    std::vector<MoveIo::PollId> move_index;
    size_t first_move = 0, first_pipe = 0, first_peer = 0;
  };
  // The loop's steps. ShutdownDone: every process has gone (or the grace
  // ran out); TickLinks: false when this member could not join.
  bool ShutdownDone();
  void BuildPollSet(PollSet& ps);
  void ServeReady(const PollSet& ps, std::vector<uint64_t>& closed_pipes);
  bool TickLinks();
  void AcceptTasks();
  void ReadSignals();
  void ServeConn(ConnId id, short revents);
  void Reap();
  void Cleanup();

  ServerOptions opts_;
  RunDirLock run_dir_;
  Connections conns_;
  TaskProcesses procs_;
  std::unique_ptr<DaemonCore> core_;
  std::unique_ptr<VmLinks> links_;
  std::unique_ptr<HostStarter> hosts_;
  std::unique_ptr<MoveIo> moves_;
  std::unique_ptr<CpuLimit> cpu_limit_;  // an emulated host's speed, if enforced
  int listen_fd_ = -1;
  int signal_fd_ = -1;
  bool shutdown_ = false;
  int64_t shutdown_started_ns_ = 0;
  bool killed_hard_ = false;
  bool ready_reported_ = false;
  int exit_code_ = 0;
  int64_t started_ns_ = 0;
};

}  // namespace mpvm
