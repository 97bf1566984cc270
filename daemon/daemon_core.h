// daemon_core.h — the logic of mpvmd, with no I/O of its own.
//
// DaemonCore takes decoded events (a connection opened, a frame arrived, a
// child exited, output arrived) and acts only through DaemonEnv, which the
// server loop (server.cc) implements with sockets and fork/exec and tests
// implement with a fake. It owns the host's task table, spawning decisions,
// message relay (holding frames for tasks not yet enrolled), notify, the
// mailbox, groups and the output routing of spawned tasks.
//
// Threading: every method is called from the daemon's single loop thread.
#pragma once

#include <cstdint>
#include <deque>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <span>
#include <string>
#include <unordered_map>
#include <vector>

#include "control.pb.h"
#include "core/groups.h"
#include "core/host_table.h"
#include "core/load_service.h"
#include "core/mailbox.h"
#include "core/move_state.h"
#include "core/notify.h"
#include "core/pending_answers.h"
#include "hostfile.h"
#include "mpvm/error.h"
#include "mpvm/frame.h"
#include "mpvm/message.h"
#include "mpvm/tid.h"
#include "placement_policy.h"

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
  // Destination of a move: start the restore process of a task moving here.
  virtual Result<RestoreStart> SpawnRestore(const SpawnSpec& spec, const std::string& token) = 0;
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
  // Source of a move: connect to the restore process at addr:port and ask
  // the task (process `pid`) to move. The server then reports OnMoveFrozen,
  // OnMoveRestored or OnMoveFailed. Returns why it could not start.
  virtual mpvm::expected<void, std::string> BeginMove(Tid t, int pid, const std::string& addr,
                                                      int port, const std::string& token) = 0;
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
};

class DaemonCore {
 public:
  DaemonCore(DaemonConfig cfg, DaemonEnv* env);

  void OnAccept(ConnId c);
  void OnFrame(ConnId c, Frame&& f);
  // A frame that could not be decoded; the connection is closed.
  void OnBadStream(ConnId c, std::string_view why);
  void OnClose(ConnId c);
  // Bytes a task wrote to its stdout, or its stderr.
  void OnOutput(Tid t, std::string_view bytes, bool is_stderr = false);
  void OnOutputClosed(Tid t);
  void OnProcessExit(Tid t, int exit_code, int term_signal);
  // Daemon-to-daemon traffic and time.
  void OnPeerFrame(PeerId p, Frame&& f);
  void OnPeerGone(PeerId p);
  // Called at least every heartbeat period with the monotonic time.
  void OnTick(int64_t now_ns);
  // Member: send the join request (the server calls this once linked).
  void StartJoin(int64_t now_ns);
  bool joined() const { return !cfg_.member || joined_; }
  // Master: hosts of the host file still starting (neither joined nor failed).
  bool starting_hosts() const { return !starting_.empty(); }
  // Why the join failed ("" while pending or done).
  const std::string& join_error() const { return join_error_; }
  // An emulated host the server started could not join.
  void OnHostStartFailed(const std::string& name, const std::string& why);
  // Master: add the hosts of a host file that have local=1 (at start).
  // Master: starts the daemons of a host file's hosts. Returns one message
  // per host that could not be started ("host 'x' (line 3): why").
  std::vector<std::string> StartHosts(const std::vector<HostSpec>& hosts);
  // Master: remove a member (pvm_delhosts, mpvm delete). kNoHost if unknown.
  Status DeleteHost(const std::string& name, const std::string& reason);
  size_t host_count() const { return hosts_.size(); }
  // The VM became multi-host (this master started listening): tasks that
  // enrol from now on may make direct links across hosts.
  void SetLinkKey(std::string key, bool encrypt) {
    cfg_.link_key = std::move(key);
    cfg_.link_encrypt = encrypt;
  }
  // Member: its own address as the master sees it, and the master's.
  void SetLinkAddresses(std::string mine, std::string master) {
    cfg_.link_addr = std::move(mine);
    cfg_.master_ip = std::move(master);
  }

  // Migration, source side: the server's reports (core_migrate.cc).
  void OnMoveFrozen(Tid t);
  // pinned: the task itself refused (threads, a foreign socket, ...); `mpvm
  // ps` shows it with the reason until it moves.
  // `event` says what failed: by default the task (it refused, or broke the
  // protocol); the core's own timeouts and host failures say theirs.
  void OnMoveFailed(Tid t, const std::string& why, bool pinned = false,
                    MoveEvent event = MoveEvent::kTaskFailed);
  // Whether the server may commit `t`'s move now: it is frozen and its
  // destination is still in the virtual machine. If not, the server tells
  // the task to carry on here and reports OnMoveFailed (kDestinationDied).
  bool MayCommit(Tid t) const;
  // The image is restored at the destination and the server wrote the
  // commit: the task is no longer here. Returns its connection (which the
  // server closes without OnClose), or 0.
  ConnId OnMoveCommitted(Tid t, const MoveTimes& times);
  // A frame that was on its way to task `t` when it moved (read from its old
  // connections): sent on to where it is now.
  void Reroute(Tid t, Frame&& f);
  // `c` is a task link that `t` had, now read by this daemon: what arrives is
  // forwarded to `t`.
  void OnForwardLink(ConnId c, Tid t, bool encrypted = false);
  // The server has handed everything of a committed move on: the move's
  // record is logged (`migration {...}`) and traced.
  void OnCommitDone(Tid t);
  // What this host keeps for tasks that moved away from it: registry
  // entries (tid to host), forwarding records (kept while links the task
  // held here are open) and those links.
  struct Retained {
    size_t registry = 0, records = 0, held_links = 0;
  };
  Retained RetainedForMoved() const;
  // Master: the cluster's load as the balancer sees it (its own report is
  // refreshed first).
  balancer::ClusterLoad LoadSnapshot();
  const LoadService& load() const { return load_; }
  // The balancer's seam: move task `t` to host `dest` (an index), wherever
  // it runs, with no client behind the request (MoveOrigin::kBalancer).
  void RequestBalancerMove(Tid t, int dest);
  // Where a task runs now (host index), as far as this daemon knows.
  int HostOf(Tid t) const;
  // The connection of a task here (0 if none).
  ConnId TaskConn(Tid t) const {
    auto it = tasks_.find(t);
    return it == tasks_.end() ? 0 : it->second.conn;
  }

  // SIGTERM to the daemon, or halt from a client. Every task but tools and
  // `caller` (who asked, and gets the answer) is sent SIGTERM.
  void Halt(Tid caller = Tid());

  Tid host_tid() const { return Tid::DaemonOf(host_); }
  bool halting() const { return halting_; }
  size_t task_count() const { return tasks_.size(); }
  std::vector<int> TaskPids() const;
  // Counters for tests and logs.
  uint64_t bad_frames() const { return bad_frames_; }

 private:
  enum class State { kSpawned, kEnrolled, kLeft };
  struct Task {
    Tid tid;
    int pid = 0;
    int ptid = 0;
    bool spawned = false;  // our child (else started by hand)
    bool is_tool = false;
    State state = State::kSpawned;
    ConnId conn = 0;
    std::string a_out;
    int out_tid = 0, out_code = 0, out_ctx = 0;
    bool stderr_apart = false;  // stderr records go with kStderrTag
    int trace_tid = 0, trace_code = 0;
    int event_sink = 0;       // trace events about it go there (prun --trace)
    uint64_t arrived_by = 0;  // the move that brought it here
    int report_to = 0;
    int ctx = 0;  // context it starts in
    std::vector<Tid> siblings;
    std::deque<Frame> held;          // frames for it before it enrolled
    bool awaiting_siblings = false;  // part of a spawn across hosts not yet complete
    ConnId enrol_conn = 0;           // an enrolment waiting for the siblings
    uint64_t enrol_rid = 0;
    int open_streams = 0;  // output pipes still open
    int link_port = 0;     // TCP port of its direct links across hosts (0: none)
    bool exited = false;   // process is gone
    int exit_code = 0, term_signal = 0;
    bool exit_notified = false;
    std::string partial_log;
    SpawnSpec spec;  // how it was started (a move restarts it elsewhere)
    // Migration. At the source: a move in progress. At the destination: the
    // restore process before the commit (its output waits for the commit).
    uint64_t move_id = 0;
    bool restoring = false;
    bool committed = false;  // a restoring copy that enrolled: it was committed
    int moves = 0;           // times it has moved so far
    std::string held_output;
    int from_host = 0;
    int64_t restore_deadline_ns = 0;  // an uncommitted restore is dropped then
    std::string pinned_why;           // why its last move was refused
    int64_t spawned_ns = 0;           // monotonic, this host's clock
    int64_t moved_ns = 0;             // when it arrived by its last move (0: never moved)
  };
  struct Conn {
    Tid tid;
    bool owner = false;
    bool remote = false;  // master: a task on another host, reached through its daemon
    Tid forward_for;      // a link a task had before it moved: forward what comes
  };
  // Watches `reg.target` for `reg.watcher`, or tells at once if it is gone.
  void AddNotify(const NotifyReg& reg);
  bool NotifyTargetExists(int what, int target) const;
  // Sends the notify messages the registry wrote.
  void DrainNotices();
  void Reply(ConnId c, uint64_t rid, ctl::Envelope&& env);
  void ReplyStatus(ConnId c, uint64_t rid, int code, std::string detail = "");
  void HandleControl(ConnId c, ctl::Envelope&& env);
  // Whether a member passes `env` to the master (VM-wide services).
  bool ServedByMaster(const ctl::Envelope& env) const;
  // Each handles the requests of its kind and returns true, or false for
  // others: the mailbox, groups, notify, contexts; a task's own requests;
  // the VM's (hosts, tasks, moves, halt).
  bool HandleVmService(ConnId c, Tid who, const ctl::Envelope& env);
  bool HandleTaskRequest(ConnId c, Tid who, ctl::Envelope& env);
  bool HandleVmRequest(ConnId c, Tid who, ctl::Envelope& env);
  void DoSignal(ConnId c, ctl::Envelope&& env);
  void DoSetOutput(ConnId c, Tid who, const ctl::Envelope& env);
  void DoDelHost(ConnId c, Tid who, const ctl::Envelope& env);
  void HandleData(ConnId c, Frame&& f);
  void DoEnrol(ConnId c, const ctl::Envelope& env);
  void DoSpawn(ConnId c, Tid who, const ctl::Envelope& env);
  void DoNotify(ConnId c, Tid who, const ctl::Envelope& env);
  void DoTasks(ConnId c, const ctl::Envelope& env);
  // This host's tasks (where: 0, this host's tid, or one task's tid).
  bool ListTasks(int where, ctl::TasksReply* out) const;
  void CheckTaskQueries();
  // Master: pvm_tasks across hosts, answered once every host asked has.
  struct TaskQuery {
    ConnId conn;
    uint64_t rid;
    int outstanding = 0;
    int where = 0;
    ctl::TasksReply reply;
    int64_t deadline_ns = 0;
  };
  std::map<uint64_t, TaskQuery> task_queries_;
  uint64_t next_task_query_ = 1;
  void FinishTaskQuery(uint64_t id);
  void DoAddHost(ConnId c, const ctl::Envelope& env);
  void DoLocate(ConnId c, const ctl::Envelope& env);
  // Cross-host.
  void RouteFrame(const FrameHeader& h, std::span<const uint8_t> payload);
  void SendControlTo(Tid dst, ctl::Envelope&& env);
  std::vector<int> SpawnHere(const ctl::SpawnRequest& s, Tid spawner, const std::vector<int>& ranks,
                             bool await_siblings);
  void FinishSpawn(uint64_t id);
  // The hosts a spawn may use, in PVM's order (this one first), or why none.
  mpvm::expected<std::vector<int>, std::string> SpawnCandidates(const ctl::SpawnRequest& s) const;
  // Asks the other hosts in `ranks_by_host` to start their ranks.
  struct PendingSpawn;
  void SpawnElsewhere(PendingSpawn ps, const ctl::SpawnRequest& s, Tid who,
                      const std::map<int, std::vector<int>>& ranks_by_host);
  void ApplySiblings(const std::vector<int>& tids);
  void SendEnrolReply(Task& t, ConnId c, uint64_t rid);
  void HandlePeerControl(PeerId p, const FrameHeader& h, ctl::Envelope&& env);
  void OnLocateQuery(const FrameHeader& h, const ctl::Envelope& env);
  void OnRemoteSpawnReply(int from, const ctl::RemoteSpawnReply& rr);
  void OnPeerSignal(ctl::Envelope&& env);
  bool FromMember(PeerId p) const;
  void PeerFrameForTask(Frame&& f);
  // A decoded control message from a peer daemon: routed to its handler.
  void OnPeerControl(PeerId p, const FrameHeader& h, ctl::Envelope&& env);
  // Master: what a member says of itself (join, heartbeat).
  void OnMemberControl(PeerId p, const ctl::Envelope& env);
  void AdmitHost(PeerId p, const ctl::JoinRequest& j);
  // Member: what the master says (join reply, host table, leave).
  void OnMasterControl(const ctl::Envelope& env);
  void BroadcastTaskGone(int tid, PeerId except);
  bool SinkAlive(int tid) const;
  void LoseHostTasks(int index);
  ConnId RemoteConn(Tid task);
  void ForgetOwner(int tid);  // its mailbox entries and group places

  // Migration (core_migrate.cc).
  struct Move {  // at the source
    uint64_t id = 0;
    Tid tid;
    int dest = 0;
    Tid asker;  // 0: no one waits for the answer (the balancer, the test driver)
    uint64_t asker_rid = 0;
    MoveOrigin origin = MoveOrigin::kClient;
    MoveState state = MoveState::kOffered;
    int64_t requested_ns = 0, accepted_ns = 0, frozen_ns = 0;  // monotonic
    int64_t requested_wall_ns = 0;
    int admin_messages = 0;
  };
  // Source, after a commit: the move's record, completed with what this host
  // forwards for the task (frames, and links told kMoved) and reported when
  // the commit is done, then once more when the forwarding ends.
  struct Forwarding {
    uint64_t move_id = 0;
    int event_sink = 0;
    // The move, for its record.
    Move move;
    MoveTimes times;
    std::string to;
    int64_t commit_wall_ns = 0, commit_ns = 0;
    uint64_t forwarded = 0;
    int link_updates = 0, open_links = 0, encrypted_links = 0;
    bool reported = false;
  };
  std::unordered_map<int, Forwarding> forwarding_;
  // Sends trace event `json` to `sink` (callers skip building it when 0).
  void Trace(int sink, const std::string& json);
  void EndForwarding(int tid);
  bool LocalTask(Tid t) const;
  void DoMigrate(Tid who, ctl::Envelope&& env);
  // Destination: the copy of a moved task becomes the task here.
  void Arrived(Tid t);
  void ClaimArrival(Tid t);
  void MaybeTestMove(const Task& task);
  void NoteTransit(const Frame& f);
  void CheckLimbo();
  void LoseTask(int tid);
  void StartMove(Tid t, int dest, Tid asker, uint64_t asker_rid,
                 MoveOrigin origin = MoveOrigin::kClient);
  // The task record of a child this host started as process `pid`.
  Task SpawnedTask(const ctl::SpawnRequest& s, Tid who, const SpawnSpec& spec, int pid,
                   bool await_siblings) const;
  // Destination: the task record of a copy being restored by process `pid`,
  // coming from host `from`.
  Task RestoringTask(const ctl::MigrateOffer& o, const SpawnSpec& spec, int pid, int from) const;
  // The commit's news for the registry; what `t` asked to be told goes with
  // it (taken from this host's notify registry).
  void FillTaskMoved(Tid t, const Move& mv, const MoveTimes& times, ctl::TaskMoved* m);
  // Why `task` cannot move now, or "".
  std::string WhyCannotMove(const Task& task) const;
  // The offer to the destination: what it needs to restart the task.
  void FillOffer(const Task& task, uint64_t id, ctl::MigrateOffer* o) const;
  // Advances `mv` by `event` as kMoveTable allows; false (and nothing
  // changes) if it does not.
  bool Advance(Move& mv, MoveEvent event);
  void FinishMove(uint64_t id, int code, const std::string& detail);
  void HandleMoveControl(const FrameHeader& h, ctl::Envelope&& env);
  void OnOffer(const FrameHeader& h, const ctl::MigrateOffer& o);
  void OnAccept(const ctl::MigrateAccept& a);
  void OnTaskMoved(const ctl::TaskMoved& m);
  void AnswerAsker(Tid asker, uint64_t rid, int code, const std::string& detail);
  void CheckMoveTimeouts();
  std::map<uint64_t, Move> moves_;  // source side, by id
  uint64_t next_move_ = 1;
  // Tasks that moved: tid -> host index. The master's entries are exact (it
  // is the registry every move reports to); a member keeps one per task that
  // left it, and sends what comes for those to the master.
  std::unordered_map<int, int> where_;
  // The master's view of moves between members (NoteTransit), and tasks whose
  // source host died mid-move: lost at the deadline unless they arrive.
  struct Transit {
    int from = 0, to = 0;
    int64_t since_ns = 0;
  };
  static constexpr int64_t kLimboNs = 10'000'000'000;
  static constexpr int64_t kOrphanRestoreNs = 5'000'000'000;  // its source died
  std::unordered_map<int, Transit> in_transit_;
  std::unordered_map<int, int64_t> limbo_;
  uint64_t forwarded_ = 0, link_updates_ = 0;
  bool clock_started_ = false;  // now_ns_ has been set (a tick, or StartJoin)

  Tid AllocTid();
  // Sends a message from the daemon to a task (held if it has not enrolled).
  void SendToTask(Tid dst, int tag, int ctx, Message& m);
  void SendOutputRecord(const Task& t, int count, std::string_view data, bool is_stderr = false);
  void DeliverFrame(Task& t, Frame&& f);
  void TaskLeftVm(Task& t);  // pvm_exit or disconnect: notify, mailbox, groups
  void MaybeFinish(Tid t);   // process gone and output drained: forget it
  void FireNotify(int what, int target);
  // Sends what a concern wrote into its outbox.
  void DrainReplies(ReplyOutbox& out);
  void DropWaitersOf(ConnId c);
  std::vector<std::string> ChildEnv(const ctl::SpawnRequest& s, Tid tid, int rank,
                                    bool spawner_here) const;

  void SendPeerControl(PeerId p, ctl::Envelope&& env);
  void BroadcastTable(PeerId except = 0);
  ctl::HostTable Table() const;
  void ApplyTable(const ctl::HostTable& t);
  void RemoveHost(int index, const std::string& reason);
  void HostsAdded(const std::vector<int>& added);
  int LocalTaskCount() const;

  DaemonConfig cfg_;
  DaemonEnv* env_;
  HostIndex host_;
  HostTable hosts_;  // by host index, this host included
  std::map<std::string, std::pair<ConnId, uint64_t>> pending_adds_;  // name -> who waits
  std::set<std::string> starting_;  // host-file hosts not yet joined
  struct PendingSpawn {
    ConnId conn;
    uint64_t rid;
    std::vector<int> tids;                  // by rank
    std::map<int, std::vector<int>> ranks;  // host index -> ranks sent there
    int outstanding = 0;
    Tid job_of;  // the spawner, when the children end with it (else 0)
  };
  // Tasks that end when their spawner (here) disconnects: spawner -> tids.
  std::map<Tid, std::vector<int>> jobs_;
  void NoteJob(Tid spawner, const std::vector<int>& tids);
  // The spawner's connection closed: its job's tasks are ended, wherever
  // they run.
  void EndJob(Tid spawner);
  void ForgetJobTask(int tid);  // it ended: no job needs ending it
  std::map<uint64_t, PendingSpawn> spawns_;
  std::map<uint64_t, std::pair<ConnId, uint64_t>> locates_;  // query -> asking task
  uint64_t next_query_ = 1;
  uint64_t next_spawn_id_ = 1;
  // Tasks spawned on other hosts for spawners here: tid -> report_to.
  std::map<int, int> remote_children_;
  std::map<int, ConnId> remote_conns_;  // master: remote task -> virtual connection
  // Tasks of other hosts known to be gone, so a notify that arrives after
  // the news fires at once. Bounded: the oldest are forgotten first.
  std::set<int> gone_remote_;
  std::deque<int> gone_order_;
  void NoteRemoteGone(int tid);
  ConnId next_remote_conn_ = ConnId{1} << 62;
  bool joined_ = false;
  std::string join_error_;
  int64_t now_ns_ = 0;
  int64_t last_beat_sent_ns_ = 0;
  int64_t last_master_ns_ = 0;
  std::map<Tid, Task> tasks_;
  std::map<ConnId, Conn> conns_;
  int32_t next_local_ = 1;
  int next_ctx_ = 1;
  NotifyRegistry notify_;
  Mailbox mailbox_;     // master: pvm_putinfo and friends
  GroupServer groups_;  // master: dynamic groups
  LoadService load_;    // master: the cluster's load, from the hosts' reports
  // Moves this host's tasks asked of other hosts: each is answered once, by
  // its source or here when that host leaves or kMoveAnswerNs passes.
  PendingAnswers asks_;
  static constexpr int64_t kMoveAnswerNs = 120'000'000'000;
  void ExpectMoveAnswer(Tid who, uint64_t rid, const ctl::MigrateRequest& m);
  void AnswerInstead(const PendingAnswer& p, int code, const std::string& why);
  // A control frame on its way to task `t`: an answer it waited for?
  void NoteAnswerTo(Tid t, const Frame& f);
  std::unique_ptr<balancer::PlacementPolicy> placement_;
  // This host's LoadReport, from its task table.
  ctl::LoadReport LocalLoad() const;
  std::optional<ConnId> owner_;
  bool halting_ = false;
  uint64_t bad_frames_ = 0;
};

}  // namespace mpvm
