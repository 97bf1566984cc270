// daemon_core.h — the logic of mpvmd, with no I/O of its own.
//
// DaemonCore is the composition root of the daemon's core (daemon/core/):
// it takes decoded events (a connection opened, a frame arrived, a child
// exited, output arrived, a tick), routes each to the concern that owns it,
// and routes what one concern raises for another (CoreEvents). The concerns:
//   TaskService      this host's tasks: enrolment, output, signals, exits
//   Spawner          pvm_spawn, placement (balancer::PlacementPolicy), jobs
//   Membership       hosts joining, heartbeats, failures, host events
//   VmServices       the mailbox, groups, notify and contexts, as requests
//   TaskQueries      pvm_tasks across hosts, where a task accepts links
//   MoveSource       a move at its source (the MoveState machine)
//   MoveDestination  a move at its destination, and the master's registry
//   Forwarder        what a source forwards after the commit
// and, shared through CoreContext: the task, connection, host and location
// tables, the VM services (mailbox, groups, notify), the load service and
// the one way to send. docs/design/overview.md draws them.
//
// It acts only through DaemonEnv (core/env.h), which the server implements
// with sockets and fork/exec and tests implement with a fake. Threading:
// every method is called from the daemon's single loop thread.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "control.pb.h"
#include "core/balance_loop.h"
#include "core/core_context.h"
#include "core/env.h"
#include "core/forwarding.h"
#include "core/membership.h"
#include "core/move_destination.h"
#include "core/move_source.h"
#include "core/spawner.h"
#include "core/task_queries.h"
#include "core/task_service.h"
#include "core/vm_services.h"
#include "hostfile.h"
#include "mpvm/error.h"
#include "mpvm/frame.h"
#include "mpvm/tid.h"

namespace mpvm {

class DaemonCore : private CoreEvents {
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
  // The restore process of `t` waits for its image (RestoreStart::says_when_ready).
  void OnRestoreReady(Tid t) { dest_.OnRestoreReady(t); }
  // Daemon-to-daemon traffic and time.
  void OnPeerFrame(PeerId p, Frame&& f);
  void OnPeerGone(PeerId p);
  // Called at least every heartbeat period with the monotonic time.
  void OnTick(int64_t now_ns);
  // Member: send the join request (the server calls this once linked).
  void StartJoin(int64_t now_ns);
  bool joined() const { return !cx_.cfg.member || cx_.joined; }
  // A load report or a balancing decision is waiting: tick again soon.
  bool TickSoon() const { return cx_.load_changed || (cx_.load_news && balance_.on()); }
  // Master: hosts of the host file still starting (neither joined nor failed).
  bool starting_hosts() const { return members_.starting_hosts(); }
  // Why the join failed ("" while pending or done).
  const std::string& join_error() const { return members_.join_error(); }
  // An emulated host the server started could not join.
  void OnHostStartFailed(const std::string& name, const std::string& why);
  // Master: add the hosts of a host file that have local=1 (at start).
  // Master: starts the daemons of a host file's hosts. Returns one message
  // per host that could not be started ("host 'x' (line 3): why").
  std::vector<std::string> StartHosts(const std::vector<HostSpec>& hosts);
  // Master: remove a member (pvm_delhosts, mpvm delete). kNoHost if unknown.
  Status DeleteHost(const std::string& name, const std::string& reason);
  size_t host_count() const { return cx_.hosts.size(); }
  // The VM became multi-host (this master started listening): tasks that
  // enrol from now on may make direct links across hosts.
  void SetLinkKey(std::string key, bool encrypt) {
    cx_.cfg.link_key = std::move(key);
    cx_.cfg.link_encrypt = encrypt;
  }
  // Member: its own address as the master sees it, and the master's.
  void SetLinkAddresses(std::string mine, std::string master) {
    cx_.cfg.link_addr = std::move(mine);
    cx_.cfg.master_ip = std::move(master);
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
  const LoadService& load() const { return cx_.load; }
  // The balancer's seam: move task `t` to host `dest` (an index), wherever
  // it runs, with no client behind the request (MoveOrigin::kBalancer).
  void RequestBalancerMove(Tid t, int dest, const std::string& reason = "");
  const BalanceLoop& balancer() const { return balance_; }
  // Where a task runs now (host index), as far as this daemon knows.
  int HostOf(Tid t) const;
  // The connection of a task here (0 if none).
  ConnId TaskConn(Tid t) const {
    auto it = cx_.tasks.find(t);
    return it == cx_.tasks.end() ? 0 : it->second.conn;
  }

  // SIGTERM to the daemon, or halt from a client. Every task but tools and
  // `caller` (who asked, and gets the answer) is sent SIGTERM.
  void Halt(Tid caller = Tid(), bool fenced = false);
  // Master: the balancer's orders of this tick, carried out as moves.
  void Balance();
  // `mpvm balance [on|off]`.
  void DoBalance(ConnId c, const ctl::Envelope& env);

  Tid host_tid() const { return cx_.host_tid(); }
  bool halting() const { return cx_.halting; }
  size_t task_count() const { return cx_.tasks.size(); }
  std::vector<int> TaskPids() const { return cx_.tasks.Pids(); }
  // Counters for tests and logs.
  uint64_t bad_frames() const { return cx_.bad_frames; }

 private:
  // Connections: a frame from a task or tool, by kind.
  void HandleData(ConnId c, Frame&& f);
  void HandleControl(ConnId c, ctl::Envelope&& env);
  // Whether a member passes `env` to the master (VM-wide services).
  bool ServedByMaster(const ctl::Envelope& env) const;
  // Each handles the requests of its kind and returns true, or false for
  // others: a task's own requests; the VM's (hosts, tasks, moves, halt).
  bool HandleTaskRequest(ConnId c, Tid who, ctl::Envelope& env);
  bool HandleVmRequest(ConnId c, Tid who, ctl::Envelope& env);
  // Peers: a frame for a task here, a control message by kind.
  void PeerFrameForTask(Frame&& f);
  void OnPeerControl(PeerId p, const FrameHeader& h, ctl::Envelope&& env);
  void HandlePeerControl(PeerId p, const FrameHeader& h, ctl::Envelope&& env);
  void HandleMoveControl(const FrameHeader& h, ctl::Envelope&& env);
  void OnTaskGone(PeerId p, int tid);

  // CoreEvents: what one concern raises for another.
  void TaskLost(int tid) override;
  void TaskLeft(int tid) override;
  void TaskOutput(Tid t, std::string_view bytes) override { tasks_.OnOutput(t, bytes); }
  void MaybeFinish(Tid t) override { tasks_.MaybeFinish(t); }
  void ClaimArrival(Tid t) override { dest_.ClaimArrival(t); }
  void TaskReady(Tid t) override;
  void HostGone(int index) override;
  void Committed(const ctl::TaskMoved& m) override { dest_.OnTaskMoved(m); }
  void HaltVm(bool fenced) override { Halt(Tid(), fenced); }

  CoreContext cx_;
  TaskService tasks_;
  Spawner spawner_;
  Membership members_;
  VmServices services_;
  TaskQueries queries_;
  Forwarder forwarder_;
  MoveSource source_;
  MoveDestination dest_;
  BalanceLoop balance_;
};

}  // namespace mpvm
