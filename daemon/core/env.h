// env.h — what the daemon's core asks of the world, and how it is set up.
//
// The core (daemon/core/, daemon_core.h) has no I/O of its own: it acts
// through these narrow interfaces, which the server (daemon/server/)
// implements with sockets, processes and clocks, and tests implement with
// fakes (fake_clock.h, fake_random.h, daemon/tests/fake_env.h).
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "core/host_table.h"
#include "core/outbox.h"
#include "hostfile.h"
#include "mpvm/error.h"
#include "mpvm/frame.h"
#include "mpvm/tid.h"

namespace mpvm {

// A daemon-to-daemon link: on the master one per member, on a member the
// link to the master (kMasterPeer).
inline constexpr PeerId kMasterPeer = 1;

struct SpawnSpec {
  Tid tid;
  std::string path;               // resolved executable
  std::vector<std::string> argv;  // argv[0] included
  std::vector<std::string> env;   // complete environment
  std::string cwd;
  std::string stdin_path;  // opened as its stdin; "" for /dev/null
};

// A restore process started for a migrating task: it waits for the image on
// `port` (of this host's link address).
struct RestoreStart {
  int pid = 0;
  int port = 0;
  // The restore process will say when it waits for the image
  // (DaemonCore::OnRestoreReady): the accept waits for it, so that the
  // source freezes its task only then, and the restore's start (exec,
  // dynamic linking) runs while the task still does.
  bool says_when_ready = false;
};

// What a migration's source learned, for its trace record.
struct MoveTimes {
  uint64_t bytes = 0;
  int64_t freeze_ns = 0;    // CLOCK_REALTIME: the task stopped
  int64_t sent_ns = 0;      // the task had sent the last byte of its image
  int64_t restored_ns = 0;  // the restore process had the image
  bool by_signal = false;   // stopped by its signal while computing (else at a boundary)
};

// Why a host's daemon could not be started: a PVM error and the reason.
// Where a task's library waits point their system-call arguments
// (mpvm::LibraryWaitArea, told at enrolment): a move request may interrupt
// such a wait, and no other.
struct WaitArea {
  uint64_t addr = 0;
  uint64_t size = 0;
  bool Holds(uint64_t a) const { return size != 0 && a >= addr && a - addr < size; }
};

// What the source's server needs to ask a task to move.
struct MoveAsk {
  Tid tid;
  int pid = 0;
  std::string addr;  // where the destination's restore process waits
  int port = 0;
  std::string token;  // the image's first bytes, proving it is the one expected
  WaitArea wait;
};

struct HostStartError {
  Err code;
  std::string why;
};

// The side effects the core asks for, as narrow interfaces: the server
// (server.cc) implements them all with sockets, processes and clocks; tests
// implement them with fakes (daemon/core/fake_clock.h and
// daemon/core/fake_random.h for time and randomness).

// Connections of tasks and tools on this host.
class ConnTransport {
 public:
  virtual ~ConnTransport() = default;
  virtual void Send(ConnId c, const FrameHeader& h, std::span<const uint8_t> aux,
                    std::span<const uint8_t> body) = 0;
  virtual void CloseConn(ConnId c) = 0;
};

// Daemon-to-daemon links: one frame over an authenticated link; drop a link
// whose host is gone.
class PeerTransport {
 public:
  virtual ~PeerTransport() = default;
  virtual void SendToPeer(PeerId p, const FrameHeader& h, std::span<const uint8_t> body) = 0;
  virtual void DropPeer(PeerId p) = 0;
};

// Processes: tasks, restore processes and their sockets.
// What the kernel says of a task's process at one moment.
struct ProcessSample {
  bool ok = false;        // false: no such process (or nothing known)
  bool runnable = false;  // running or ready to run (not waiting), or stopped
  int64_t cpu_ns = 0;     // CPU it has used
  uint64_t rss_bytes = 0;
  bool stopped = false;  // stopped (SIGSTOP): runnable above, for a duty cycle's sake
};

class ProcessLauncher {
 public:
  virtual ~ProcessLauncher() = default;
  // Starts a task process. Returns its pid, or kNoFile / kOutOfRes / kDenied.
  virtual Result<int> Spawn(const SpawnSpec& spec) = 0;
  virtual void Signal(int pid, int sig) = 0;
  // Full path of `file` as spawn would run it, or "" if there is none.
  virtual std::string Resolve(const std::string& file, const std::string& path_env,
                              const std::string& cwd) = 0;
  virtual void RemoveTaskSocket(Tid t) = 0;
  // Destination of a move: start the restore process of a task moving
  // here, listening on `listen_addr` for the image sealed under `key`.
  virtual Result<RestoreStart> SpawnRestore(const SpawnSpec& spec, const std::string& key,
                                            const std::string& listen_addr) = 0;
  // Process `pid` as the kernel sees it now (the load reports).
  virtual ProcessSample Sample(int pid) = 0;
  // Processes ready to run now on this host that are none of `ours` (the
  // host's task processes, `our_running` of them ready): its background
  // load. 0 where it cannot be told (server/server.cc says when).
  virtual double SampleBackground(const std::vector<int>& ours, int our_running) = 0;
  // Virtual-work mode: tells this host's tasks in mpvm_work the host's speed
  // and how many of them work (<rundir>/vcpu).
  virtual void PublishVirtualCpu(int speed, int working) = 0;
};

// Wall-clock time (CLOCK_REALTIME ns) for trace events, comparable across
// hosts with synchronised clocks. The core's own timing uses the monotonic
// time that comes with each event and tick.
class Clock {
 public:
  virtual ~Clock() = default;
  virtual int64_t WallNs() = 0;
};

// Unpredictable bytes (the token that admits a migration image).
class RandomSource {
 public:
  virtual ~RandomSource() = default;
  virtual std::string RandomBytes(size_t n) = 0;
};

class DaemonEnv : public ConnTransport,
                  public PeerTransport,
                  public ProcessLauncher,
                  public virtual Clock,  // virtual: a fake mixes in (core/fake_clock.h)
                  public virtual RandomSource {
 public:
  // Output of a task nobody collects (PvmOutputTid 0): the daemon's log.
  virtual void LogOutput(Tid t, std::string_view line) = 0;
  // Something that went wrong (a warning, in the daemon's log).
  virtual void Log(std::string_view line) = 0;
  // A normal event worth a line in the log (a move, a host joining).
  virtual void Info(std::string_view line) { Log(line); }
  // Detail for a post-mortem (mpvmd --log-level debug, or MPVM_LOG_LEVEL=debug).
  virtual void Debug(std::string_view /*line*/) {}
  // Halt: stop accepting work; the server kills tasks and exits.
  virtual void RequestShutdown() = 0;
  // Master: start the daemon of host `spec` (an emulated host on this
  // machine when spec.local, else over the remote shell) and have it join
  // this VM. It either joins (a JoinRequest with its name arrives) or the
  // server reports OnHostStartFailed.
  virtual mpvm::expected<void, HostStartError> StartHost(const HostSpec& spec) = 0;
  // Source of a move: connect to the restore process at ask.addr:port and
  // ask the task (process ask.pid) to move, once that interrupts nothing. The server then reports
  // OnMoveFrozen, OnMoveRestored or OnMoveFailed. Returns why it could not start.
  virtual mpvm::expected<void, std::string> BeginMove(const MoveAsk& ask) = 0;
  // Source: give up a move that has not reached its commit.
  virtual void CancelMove(Tid t) = 0;
  // A named step of the migration protocol, for fault-injection tests
  // (MPVM_FAULT, docs/design/migration.md): the server may end itself or the
  // moving task (process `task_pid`) here. Nothing happens by default.
  virtual void FaultPoint(std::string_view step, int task_pid) {
    (void)step;
    (void)task_pid;
  }
};

struct DaemonConfig {
  HostIndex host{1};
  std::string hostname = "localhost";
  std::string arch = "LINUX64";
  int speed = 1000;
  int cores = 1;  // hwloc's count of this host's cores (the server reads it)
  std::string rundir;
  std::string libdir;  // put first in spawned tasks' LD_LIBRARY_PATH
  std::vector<std::string> base_env;
  std::string workdir;  // wd= of this host: spawned tasks start here when set
  bool embedded = false;
  // Multi-host: the master holds the host table; members join it.
  bool member = false;
  // Direct task links across hosts (empty key: not a multi-host VM yet).
  std::string link_key;       // 32 bytes, handed to tasks at enrolment
  bool link_encrypt = false;  // tasks must encrypt those links
  std::string link_addr;      // member: this host's IP as the master sees it
  std::string master_ip;      // member: the master's IP
  int64_t heartbeat_ns = 500'000'000;
  int64_t dead_after_ns = 3'000'000'000;  // a host silent this long is dead
  // Test driver (env MPVM_TEST_MOVES): move every spawned task to the next
  // host each time it enrols, up to this many times in all.
  int test_moves = 0;
  // Where spawned tasks go: "round-robin" (PVM's) or "speed-aware"
  // (balancer/placement_policy.h).
  std::string placement = "round-robin";
  // The balancer (core/balance_loop.h): on or off at start, how often it
  // decides, and the policy's limits (balancer/migration_policy.h).
  bool balance = false;
  int64_t balance_period_ns = 1'000'000'000;
  int64_t balance_min_age_ns = 1'000'000'000;        // young tasks often end soon
  int64_t balance_min_residency_ns = 1'000'000'000;  // after a spawn or a move (MOSIX: 1 s)
  int balance_max_in_flight = 0;                     // 0: half the hosts, at least 2
  // An emulated host in virtual-work mode: its tasks' mpvm_work advances at
  // speed / (tasks working) instead of burning CPU (docs/design/balancer.md).
  bool virtual_work = false;
};

}  // namespace mpvm
