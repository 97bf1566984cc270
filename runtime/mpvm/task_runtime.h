// task_runtime.h — everything a task (or tool) process needs to be a PVM task.
//
// One TaskRuntime per process backs the C API (pvmcompat/); tools use it
// directly. It stays instantiable so a test can run two tasks in one process.
//
// Threading contract: a TaskRuntime never starts a thread. All I/O (to the
// local daemon, to peer tasks) happens on the caller's thread inside its
// methods, driven by poll(). Methods must be called from one thread.
//
// Routing: data goes task-to-task over Unix sockets (PvmRouteDirect, the
// default) and falls back to a relay through the daemon. Every data frame
// carries a per-(sender, receiver) sequence number; the receiver holds back
// early frames and drops duplicates, so pairwise FIFO and exactly-once hold
// whichever route each frame took.
#pragma once

#include <poll.h>
#include <signal.h>
#include <time.h>

#include <cstdio>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <unordered_map>
#include <vector>

#include "control.pb.h"
#include "mpvm/connection.h"
#include "mpvm/control.h"
#include "mpvm/error.h"
#include "mpvm/message.h"
#include "mpvm/retransmit.h"
#include "mpvm/spin.h"
#include "mpvm/task_link.h"
#include "mpvm/tid.h"
#include "mpvm/traffic.h"

namespace mpvm {

namespace migrate {
struct Handover;  // task_migrate.cc
}

struct SpawnRequestOptions {
  std::string file;
  std::vector<std::string> args;
  int flags = 0;
  std::string where;
  int ntask = 1;
  bool report_exit = false;            // deliver TaskEnded events to this runtime
  bool rank_env = false;               // MPVM_RANK / MPVM_SIZE (prun)
  bool orphan = false;                 // children see no parent (like shell-started tasks)
  int event_sink = 0;                  // a tid: daemons send it trace events (kTraceTag)
  bool stderr_apart = false;           // collected stderr comes with kStderrTag (prun)
  std::vector<std::string> env;        // NAME=value for children on every host (prun -x)
  std::vector<std::string> local_env;  // NAME=value for children on this host only
  std::string rank0_stdin;             // a path rank 0 reads as its stdin (prun)
  bool end_with_spawner = false;       // the children end when this runtime disconnects
};

struct TaskEndedEvent {
  Tid tid;
  int exit_code = 0;
  int term_signal = 0;
  bool host_died = false;  // lost with its host
};

// Migration (task_migrate.cc). Every pvm_* call is bracketed by
// LibraryEnter/LibraryLeave: a move asked for while the task is inside the
// library waits for the call's next boundary.
int MigrateSignal();  // SIGRTMAX-1
void LibraryEnter();
void LibraryLeave();

// The library's own blocking waits pass the daemon pointers into this area
// (ppoll's signal mask, mpvm_work's sleep). The task tells its daemon where
// the area lies at enrolment; the daemon, which looks at a stopped task's
// system call before it asks it to move, interrupts those waits only, never
// a sleep or read of the program's own (docs/design/migration.md).
struct LibraryWaitArea {
  sigset_t mask;
  timespec sleep;
};
LibraryWaitArea& LibraryWaits();

class TaskRuntime {
 public:
  TaskRuntime();
  ~TaskRuntime();
  TaskRuntime(const TaskRuntime&) = delete;
  TaskRuntime& operator=(const TaskRuntime&) = delete;

  // --- Enrolment -----------------------------------------------------------
  // Connects to the local daemon on first use. Errors: kSysErr (no daemon).
  Status Enrol(bool claim_owner = false, bool is_tool = false);
  bool enrolled() const { return daemon_ != nullptr && daemon_->open(); }
  Tid tid() const { return mytid_; }
  Result<Tid> Parent();
  Result<std::vector<Tid>> Siblings();
  // Leaves the VM: flushes sends, waits for caught output, disconnects.
  Status Exit();
  // Flushes queued sends (used at process exit).
  void FlushAll();

  // --- Tasks and hosts -----------------------------------------------------
  Result<std::vector<int>> Spawn(const SpawnRequestOptions& o);
  Status Kill(Tid t);
  Status SendSig(Tid t, int sig);
  Status Pstat(Tid t);
  Status Mstat(const std::string& host);
  Result<ctl::ConfigReply> Config();
  Result<ctl::TasksReply> Tasks(int where);
  Result<int> TidToHost(int tid);
  Status Halt();
  // Hosts: `line` is a host-file line ("name local=1 sp=2000"). Returns the
  // new host's daemon tid.
  Result<int> AddHost(const std::string& line);
  Status DelHost(const std::string& name);
  Result<int> NewContext();
  // Tools: one control request and its reply, for what the PVM API has no
  // call for (`mpvm balance`).
  Result<ctl::Envelope> ToolRequest(ctl::Envelope req);
  // mpvm_work: tells the daemon this task enters (or leaves) its work, so
  // that a virtual-work host counts it (mpvm/work.h).
  Status SetWorking(bool working);

  // --- Options -------------------------------------------------------------
  Result<int> SetOpt(int what, int val);
  Result<int> GetOpt(int what);

  // --- Buffers -------------------------------------------------------------
  Result<int> MkBuf(int encoding);
  Result<int> InitSend(int encoding);
  Status FreeBuf(int bufid);
  int sbuf() const { return sbuf_; }
  int rbuf() const { return rbuf_; }
  Result<int> SetSbuf(int bufid);
  Result<int> SetRbuf(int bufid);
  Result<Message*> Buffer(int bufid);
  Result<Message*> SendBuffer();
  Result<Message*> RecvBuffer();

  // --- Messages ------------------------------------------------------------
  Status Send(int tid, int tag);
  Status Mcast(const int* tids, int n, int tag);
  // Blocking receive; returns the new receive buffer id.
  Result<int> Recv(int tid, int tag);
  // Returns 0 when nothing matches.
  Result<int> Nrecv(int tid, int tag);
  // timeout_us < 0 blocks forever; returns 0 on time-out.
  Result<int> Trecv(int tid, int tag, long timeout_us);
  Result<int> Probe(int tid, int tag);
  using MatchFn = int (*)(int bufid, int tid, int tag);
  MatchFn SetMatchFn(MatchFn f);
  int context() const { return ctx_; }
  int SetContext(int ctx);

  // Message handlers (pvm_addmhf). Returns the handler id.
  Result<int> AddHandler(int src, int tag, int ctx, int (*fn)(int));
  Status DelHandler(int id);

  Status Notify(int what, int tag, const int* tids, int count);
  Status CatchOut(FILE* f);

  // Mailbox.
  Result<int> PutInfo(const std::string& name, int bufid, int flags);
  Result<int> RecvInfo(const std::string& name, int index, int flags);
  Status DelInfo(const std::string& name, int index, int flags);
  Result<ctl::MboxInfoReply> MboxInfo(const std::string& pattern);

  // Groups (served by the daemon).
  Result<ctl::GroupReply> Group(ctl::GroupRequest::Op op, const std::string& group, int arg);

  // --- Tools ---------------------------------------------------------------
  // Waits up to timeout_ms for anything to arrive (-1: forever); with
  // `sigmask`, signals are unblocked only while waiting (ppoll). Returns false
  // if interrupted by a signal or the daemon connection is gone.
  bool WaitActivity(int timeout_ms, const sigset_t* sigmask = nullptr);
  // Tools: every wait unblocks only the signals `mask` leaves out (ppoll), and
  // a wait interrupted by one ends the pending call with kSysErr.
  void SetInterruptMask(const sigset_t* mask) { interrupt_mask_ = mask; }
  std::deque<TaskEndedEvent>& task_ended() { return ended_; }
  bool daemon_lost() const { return daemon_lost_; }
  // Takes the first queued message matching (tid, tag, ctx) without blocking.
  std::optional<Message> TakeMessage(int tid, int tag, int ctx);
  const std::string& rundir() const { return rundir_; }

  // --- Migration -------------------------------------------------------------
  // Lets this runtime's task be moved (SIGMIGRATE); set for spawned tasks.
  void EnableMigration();
  // Moves the task now if its daemon asked. Async-signal-safe. Returns 0 if
  // it must wait for a boundary, 1 if the task carries on here (refused,
  // aborted, nothing asked), 2 in the restored copy at the new host.
  int MigrateNow();
  int MigrateOnce();
  // This task's links, in the order the daemon takes them (task_migrate.cc).
  void ListLinks(migrate::Handover& ho) const;
  // At a boundary of the library: a pending move, or re-enrolment after one.
  void AtBoundary();
  bool Migratable() const;
  // Asks the daemons to move `tid` to host `host`; returns the new host's tid.
  Result<int> Migrate(int tid, const std::string& host);
  // The daemon tid of the host where `tid` runs now.
  Result<int> Location(int tid);
  // Data messages received so far, by how often daemons forwarded them on
  // their way (a move of this task left them at a stale place): [0] direct.
  const std::array<uint64_t, kFrameMaxHops + 1>& hop_counts() const { return hop_counts_; }
  // Link updates (kMoved: the task at the other end of a link moved away)
  // received so far, by the number of data messages this task had sent on
  // the link since it last looked at it and found no update: its stale sends
  // there. The last entry also counts anything more.
  const std::array<uint64_t, 16>& stale_sends() const { return stale_sends_; }
  // The daemon's explanation of the last failed host request, if any.
  const std::string& last_detail() const { return last_detail_; }
  int output_tid() const { return out_tid_; }
  void SetOutputSink(int tid, int code, int ctx) {
    out_tid_ = tid;
    out_code_ = code;
    out_ctx_ = ctx;
  }

 private:
  struct Peer {
    Connection* conn = nullptr;   // owned by conns_
    int64_t retry_after_ns = 0;   // same host: no socket connect before this time
    int64_t locate_after_ns = 0;  // no direct TCP link attempt before this time
    int64_t backoff_ns = 0;       // the next wait after a failed TCP link attempt
    bool connecting = false;      // across hosts: a link being set up (handshakes_)
  };
  struct RecvState {
    uint64_t expected = 1;
    std::map<uint64_t, Message> held;
  };
  struct Handler {
    int id, src, tag, ctx;
    int (*fn)(int);
  };

  Status EnsureEnrolled() { return enrolled() ? Status{} : Enrol(); }
  // timeout_ms < 0: wait for the answer as long as the daemon lives.
  Result<ctl::Envelope> Call(ctl::Envelope req, int timeout_ms = -1);
  Status SendData(Tid dst, int tag, Message& m);
  Connection* RouteTo(Tid dst);
  // Asks the daemons where task `dst` of another host accepts direct links,
  // without waiting: frames go through the daemons meanwhile, and the answer
  // (OnLocated) starts the link. A send never waits for it: a blocking ask
  // held a ring up to its 2 s timeout when an answer was lost in a move.
  void AskWhere(Tid dst);
  // The answer to AskWhere: a direct TCP link to `dst`, authenticated in
  // handshakes_ while frames go through the daemons; or a later try.
  void OnLocated(Tid dst, const ctl::Envelope& rep);
  // A direct link to `dst` could not be made: tried again after a growing wait.
  void BackOffLink(Tid dst);
  void StartLinkListener();
  void AcceptLinks();
  // Steps the links being set up with their poll results (`polled`, in
  // handshakes_ order), keeps the pending ones and puts the others to use.
  void StepLinkHandshakes(const pollfd* polled);
  void LinkHandshakeEnded(LinkHandshake& hs, LinkHandshake::State st);
  // Before a move: links this task was setting up are dropped (frames go
  // through the daemons meanwhile). False if a peer's link to it is still
  // being set up (the move waits for the next boundary).
  bool SettleLinkHandshakes();
  // Waits up to timeout_ms for I/O and handles it. Returns false on EINTR.
  bool Progress(int timeout_ms);
  // What Progress polls: the daemon, the listener (nullptr in `who`) and
  // the links, by position in `who`; then, from first_link_fd, the TCP
  // listener and the links being set up across hosts.
  struct PollSet {
    std::vector<pollfd> fds;
    std::vector<Connection*> who;  // parallel to fds up to first_link_fd
    size_t first_link_fd = 0;
  };
  // Fills `ps`; shortens *timeout_ms to wake for a stalled handshake.
  void BuildPollSet(PollSet& ps, int* timeout_ms) const;
  // Serves connection `c` (nullptr: the listener) that poll found ready.
  void ServeReady(Connection* c, short revents);
  // Link `c` ended (`rr`): the daemon's is lost; a task link is closed, and
  // what went on it and is not acknowledged is asked about.
  void LinkEnded(Connection* c, Connection::ReadResult rr);
  void HandleFrame(Connection* from, Frame&& f);
  // Delivery guarantees (mpvm/retransmit.h): acknowledgements in and out,
  // frames sent again, and how long a wait may last so that both happen.
  void OnAck(const FrameHeader& h);
  void SendAck(int32_t peer, uint64_t seq, int32_t tag);
  void SendDueAcks(bool all);
  // Tells the daemon what this task sent to each peer, when a note is due.
  void ReportTraffic(int64_t now_ns);
  void ProbeDue();
  void Resend(int32_t peer);
  // A frame the ledger kept, sent again on `c`; false if `c` is closed.
  static bool SendKept(Connection& c, const SendLedger::Kept& k);
  // Before pvm_exit: frames sent and not acknowledged yet may have been lost
  // on a link that broke, and this task will not be there to send them
  // again. Each receiver is asked at once; what is still unacknowledged
  // after kExitAckWaitNs goes to the daemon as well, whose route outlives
  // the task (a receiver drops a copy it has by its sequence number).
  void SettleBeforeExit();
  static constexpr int64_t kExitAckWaitNs = 200'000'000;
  int CapWait(int timeout_ms) const;
  // The open direct link to `peer` that is not being retired, or nullptr.
  Connection* LinkTo(int32_t peer);
  // After a move: every sender is asked for what it sent since, and every
  // receiver what arrived of this task's (the links they went on are gone).
  void ResumeDelivery();
  // By the frame's sequence number: held back if it overtook earlier ones,
  // dropped if it came before; acknowledged (mpvm/retransmit.h).
  void DeliverInOrder(const FrameHeader& h, Message&& m);
  void Deliver(Message&& m);
  void HandleOutput(Message& m);
  void RunHandlers();
  // Index into queue_ of the message to receive; sets *err on matcher error.
  std::optional<size_t> FindMatch(int tid, int tag, int* err);
  int AdoptReceived(size_t index);
  int NewBufId(std::unique_ptr<Message> m);
  void SweepClosed();
  void AfterResume();  // a restored copy: drop the old links, enrol at the new host
  void LostDaemon();
  void ResetState();

  std::string rundir_;
  std::string last_detail_;
  std::unique_ptr<Connection> daemon_;
  bool daemon_lost_ = false;
  bool in_work_ = false;  // inside mpvm_work: re-announced to a new host after a move
  int listen_fd_ = -1;
  std::string listen_path_;
  Tid mytid_;
  int ptid_ = 0;
  std::vector<Tid> siblings_;
  Tid host_tid_;

  // Direct links across hosts (multi-host VMs): the link key from the
  // daemon, a TCP listener, and accepted sockets still in their handshake.
  std::optional<LinkKey> link_key_;
  bool link_encrypt_ = false;  // seal the links this task makes (and require it of others)
  int tcp_listen_fd_ = -1;
  std::vector<std::unique_ptr<LinkHandshake>> handshakes_;
  std::map<uint64_t, int> locating_;   // rid of an AskWhere in flight -> the task it locates
  std::set<uint64_t> abandoned_rids_;  // replies nobody waits for any more

  std::vector<std::unique_ptr<Connection>> conns_;  // task-to-task links
  std::unordered_map<int32_t, Peer> peers_;         // route by destination tid
  std::unordered_map<int32_t, uint64_t> send_seq_;
  std::unordered_map<int32_t, RecvState> recv_state_;
  SendLedger sent_;         // data frames sent, kept until their receiver acknowledges them
  TrafficCounter traffic_;  // bytes sent to each peer, for the balancer
  AckLedger acks_;          // acknowledgements owed to senders
  std::array<uint64_t, kFrameMaxHops + 1> hop_counts_{};
  std::array<uint64_t, 16> stale_sends_{};
  uint64_t frames_handled_ = 0;  // so a wait knows whether a move brought any
  std::deque<int> queue_;        // buffer ids of received, unreceived messages
  std::map<uint64_t, ctl::Envelope> replies_;
  int calls_in_flight_ = 0;    // a move waits for these (their answers come here)
  bool migrate_call_ = false;  // ...except a Migrate call: its answer follows the task
  uint64_t next_rid_ = 1;
  std::deque<TaskEndedEvent> ended_;

  std::map<int, std::unique_ptr<Message>> bufs_;
  int next_bufid_ = 1;
  int sbuf_ = 0;
  int rbuf_ = 0;
  MatchFn matchfn_ = nullptr;
  int ctx_ = 0;
  std::vector<Handler> handlers_;
  int next_handler_ = 1;
  bool in_handler_ = false;
  int probe_buf_ = 0;
  const sigset_t* wait_sigmask_ = nullptr;
  const sigset_t* interrupt_mask_ = nullptr;

  // Options.
  int route_ = 3;  // PvmRouteDirect
  int autoerr_ = 1;
  int debugmask_ = 0;
  int fragsize_ = 4096;
  int resvtids_ = 0;
  int showtids_ = 1;
  int out_tid_ = 0, out_code_ = 0, out_ctx_ = 0;
  int self_out_tid_ = 0, self_out_code_ = 0, self_out_ctx_ = 0;
  int trace_tid_ = 0, trace_code_ = 0, trace_ctx_ = 0;
  int noreset_ = 0;
  int64_t spin_ns_ = 50'000;  // busy-poll this long before blocking in a receive
  SpinPolicy spin_policy_;    // ... when the CPUs allow it

  // Output collection (pvm_catchout).
  FILE* catch_file_ = nullptr;
  std::map<int32_t, std::string> partial_lines_;
  std::set<int32_t> open_outputs_;

  friend class TaskRuntimeTestPeer;

 public:
  int autoerr() const { return autoerr_; }
};

}  // namespace mpvm
