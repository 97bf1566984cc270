// server.h — mpvmd's I/O loop: sockets, child processes and signals, feeding
// DaemonCore and carrying out what it asks (DaemonEnv).
#pragma once

#include <sys/types.h>

#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "daemon_core.h"
#include "host_launch.h"
#include "mpvm/connection.h"
#include "mpvm/migrate_wire.h"
#include "mpvm/task_link.h"
#include "peer_links.h"
#include "vm_key.h"

namespace mpvm {

struct ServerOptions {
  std::string rundir;
  int ready_fd = -1;
  bool embedded = false;
  std::string hostname;
  // PVM's ep= host option: directories searched for spawned programs after
  // $HOME/pvm3/bin/LINUX64 and before the spawner's PATH.
  std::string ep;
  std::string hostfile;  // PVM host file; this host's line sets sp=, ep=, wd=
  std::string wd;        // working directory of spawned tasks (PVM's wd=)
  // Multi-host. A master listens ("ADDR:PORT", port 0: any free one); a
  // member joins a master. Both use the VM key file (created by the master
  // in its runtime directory when none is given).
  std::string listen;
  std::string join;
  std::string key;
  int speed = 0;              // 0: 1000 or the host file's sp=
  double dead_after_s = 3.0;  // a host silent this long is declared dead
  double heartbeat_s = 0.5;
  // Fault injection for tests (env MPVM_FAULT): "exit-on-STEP" ends this
  // daemon at once, as a crash would; "kill-task-on-STEP" kills the moving
  // task. STEP: offer, accept, handover, image (docs/design/migration.md).
  std::string fault;
  int test_moves = 0;                     // env MPVM_TEST_MOVES: see DaemonConfig::test_moves
  std::string placement = "round-robin";  // see DaemonConfig::placement
};

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
  Result<RestoreStart> SpawnRestore(const SpawnSpec& spec, const std::string& token) override;
  mpvm::expected<void, std::string> BeginMove(Tid t, int pid, const std::string& addr, int port,
                                              const std::string& token) override;
  void CancelMove(Tid t) override;
  void FaultPoint(std::string_view step, int task_pid) override;
  int64_t WallNs() override;
  std::string RandomBytes(size_t n) override;

 private:
  // Starts a task process; `keep_fd` (if >= 0) stays open in it.
  Result<int> SpawnProcess(const SpawnSpec& spec, int keep_fd);

  // Migration, source side (server_migrate.cc).
  struct MoveIo {
    Tid tid;
    int pid = 0;
    int rfd = -1;  // our copy of the stream to the restore process
    std::string token;
    int ms = -1;  // the task's connection to migrate.sock, once it has handed over
    std::vector<int> fds;
    std::vector<migrate::LinkDesc> descs;
    std::vector<std::vector<uint8_t>> in, out;
    std::vector<std::optional<LinkCipherState>> cipher;  // per link: encrypted ones
    std::vector<std::vector<uint8_t>> sealed;
    bool by_signal = false;  // it was computing: its handler captured it
  };
  void AcceptMigrate();
  // One task's handover on migrate.sock (`ms`): its links, then 'G' and the
  // stream to the restore process; or a refusal.
  void TakeHandover(int ms);
  // At a commit: the old process's output pipes read to their end; its task
  // links handed to this daemon, which forwards what comes on them.
  void DrainOutput(Tid t);
  void ForwardLinks(MoveIo& m);
  // The handover's link records into `m`; the reason if they are not whole.
  const char* ReceiveLinks(int ms, const migrate::HandoverHead& head, size_t nfds, MoveIo& m);
  void OnMoveReadable(Tid t);
  void CommitMove(MoveIo& m, const MoveTimes& times);
  void DropMove(Tid t);
  void AddForwardLink(int fd, Tid t, std::span<const uint8_t> unsent,
                      std::span<const uint8_t> unread, int32_t peer,
                      const std::optional<LinkCipherState>& cipher = std::nullopt,
                      std::span<const uint8_t> sealed = {});
  int migrate_fd_ = -1;
  std::map<Tid, MoveIo> moving_;

  struct Pipe {
    Tid tid;
    int fd;
    bool is_stderr = false;
  };
  bool Setup(std::string* error);
  // Setup's steps: the runtime directory (locked, stale sockets removed),
  // the Unix listeners, the core's configuration (with the host file's
  // other hosts), the links to other daemons.
  bool TakeRunDir(std::string* error);
  bool OpenListeners(std::string* error);
  std::optional<DaemonConfig> MakeConfig(std::string* error, std::vector<HostSpec>* others);
  bool LinkPeers(std::string* error);
  void Loop();
  // What one round of the loop polls: fds with, in parallel, the connection
  // each belongs to (or kListener, kSignals, kMigrate); then moves' sockets,
  // output pipes and the peer links, from the positions noted.
  struct PollSet {
    std::vector<zmq_pollitem_t> fds;
    std::vector<ConnId> ids;
    std::vector<uint64_t> pipe_index;
    std::vector<Tid> move_index;
    size_t first_move = 0, first_pipe = 0, first_peer = 0;
  };
  // The loop's steps. ShutdownDone: every process has gone (or the grace
  // ran out); TickLinks: false when this member could not join.
  bool ShutdownDone();
  void BuildPollSet(PollSet& ps);
  bool TickLinks();
  void ReadPipe(uint64_t id, std::vector<uint64_t>& closed);
  void AcceptTasks();
  void ReadSignals();
  void ServeConn(ConnId id, short revents);
  void Reap();
  void Cleanup();

  ServerOptions opts_;
  std::unique_ptr<DaemonCore> core_;
  int lock_fd_ = -1;
  int listen_fd_ = -1;
  int signal_fd_ = -1;
  ConnId next_conn_ = 1;
  std::map<ConnId, std::unique_ptr<Connection>> conns_;
  // By a serial number, never reused: a commit (CommitMove) may drain and
  // remove a task's pipes in the middle of a poll round.
  std::map<uint64_t, Pipe> pipes_;
  uint64_t next_pipe_ = 1;
  std::map<pid_t, Tid> pids_;
  bool shutdown_ = false;
  int64_t shutdown_started_ns_ = 0;
  bool killed_hard_ = false;
  std::unique_ptr<PeerLinks> links_;
  bool ready_reported_ = false;
  int exit_code_ = 0;
  int64_t started_ns_ = 0;
  void ReportReady(const std::string& error);
  // How to start a host's daemon: the command, the emulated host's address
  // in its network namespace (if any), and what goes to its stdin (the key).
  struct HostCommand {
    std::vector<std::string> argv;
    std::string netns_address, stdin_text;
  };
  mpvm::expected<HostCommand, HostStartError> EmulatedHostCommand(
      const HostSpec& spec, const std::string& daemon, const std::vector<std::string>& common);
  mpvm::expected<HostCommand, HostStartError> RemoteHostCommand(
      const HostSpec& spec, const std::string& daemon, const std::vector<std::string>& common);
  // Master side of multi-host: listens on `addr` ("IP:PORT", port 0: any)
  // unless already listening there; returns the bound address.
  mpvm::expected<std::string, std::string> EnsureListening(const std::string& addr);
  std::string master_addr_;                       // the first address listened on (master.addr)
  std::map<std::string, std::string> endpoints_;  // asked -> bound
  std::string key_path_;
  VmKey vm_key_;
  std::unique_ptr<EmulatedNet> net_;  // emulated hosts' network, if namespaces are used
  bool loopback_noted_ = false;
  struct LocalHost {
    std::string name;
    int output_fd;
    bool local;  // an emulated host (else started over the remote shell)
  };
  std::map<pid_t, LocalHost> host_pids_;  // host daemons started by this master
};

}  // namespace mpvm
