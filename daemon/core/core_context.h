// core_context.h — what every concern of the daemon's core shares: the
// configuration, the tables (tasks, connections, hosts, locations), the VM
// services, and the one way to send anything (to a connection, a task
// wherever it runs, or a peer daemon).
//
// A concern (spawner.h, membership.h, task_service.h, ...) owns its own
// state and reaches the others' only through CoreEvents, which the
// composition root (daemon_core.h) implements: so no concern includes
// another, and each can be tested with a CoreContext over a fake env.
//
// Threading: the daemon's single loop thread.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <string_view>

#include "cluster_load.h"
#include "control.pb.h"
#include "core/env.h"
#include "core/groups.h"
#include "core/host_table.h"
#include "core/load_service.h"
#include "core/location_registry.h"
#include "core/mailbox.h"
#include "core/notify.h"
#include "core/outbox.h"
#include "core/pending_answers.h"
#include "core/task_table.h"
#include "mpvm/error.h"
#include "mpvm/frame.h"
#include "mpvm/message.h"
#include "mpvm/tid.h"

namespace mpvm {

// A PVM error code for the wire.
inline int PvmCode(Err e) { return ToPvmCode(e); }

// Events one concern raises and another owns. DaemonCore routes each to its
// owner; tests record them.
class CoreEvents {
 public:
  virtual ~CoreEvents() = default;
  // Task `tid` was lost with its host: its watchers, spawner and services hear.
  virtual void TaskLost(int tid) = 0;
  // Task `tid` left the VM (exit, disconnect): no job waits to end it.
  virtual void TaskLeft(int tid) = 0;
  // Output of task `t` to route (a moved task's held output, at its arrival).
  virtual void TaskOutput(Tid t, std::string_view bytes) = 0;
  // Task `t`'s process may be done: forget it if so.
  virtual void MaybeFinish(Tid t) = 0;
  // A copy restoring here was committed by a source that died: register it.
  virtual void ClaimArrival(Tid t) = 0;
  // Task `t` runs here from now on, enrolled: the test driver may move it.
  virtual void TaskReady(Tid t) = 0;
  // Host `index` left the virtual machine.
  virtual void HostGone(int index) = 0;
  // Master: a move's commit, for the registry (from this host's own move).
  virtual void Committed(const ctl::TaskMoved& m) = 0;
  // Stop: the daemon halts (its master is gone, or it was told to). Fenced:
  // its tasks count as lost already, and are killed at once (SIGKILL), not
  // asked to end.
  virtual void HaltVm(bool fenced = false) = 0;
};

class CoreContext {
 public:
  CoreContext(DaemonConfig c, DaemonEnv* e);

  Tid host_tid() const { return Tid::DaemonOf(host); }
  // Is `t` this host's task now? A restore process is not, until its commit.
  bool LocalTask(Tid t) const { return tasks.Here(t) != nullptr; }
  // Where a task runs now (host index), as far as this daemon knows.
  int HostOf(Tid t) const;
  // Whether output sent to task `tid` can arrive.
  bool SinkAlive(int tid) const;

  // Answers request `rid` on connection `c` (a remote task's: through its daemon).
  void Reply(ConnId c, uint64_t rid, ctl::Envelope&& env);
  void ReplyStatus(ConnId c, uint64_t rid, int code, std::string detail = "");
  void DrainReplies(ReplyOutbox& out);
  // A message from this daemon to task `dst`, wherever it runs (held until it enrols).
  void SendToTask(Tid dst, int tag, int ctx, Message& m);
  void DeliverFrame(Task& t, Frame&& f);
  // A data frame (or a probe) for a task that does not exist (any more) is
  // dropped: its sender is told, so that it keeps nothing for it
  // (mpvm/retransmit.h).
  void TellGone(const FrameHeader& h);
  void SendControlTo(Tid dst, ctl::Envelope&& env);
  void RouteFrame(const FrameHeader& h, std::span<const uint8_t> payload);
  void SendPeerControl(PeerId p, ctl::Envelope&& env);
  // Trace event `json` to `sink` (nothing when 0).
  void Trace(int sink, const std::string& json);
  // Tells every other host that task `tid` is gone (but `except`).
  void BroadcastTaskGone(int tid, PeerId except);
  void SendEnrolReply(Task& t, ConnId c, uint64_t rid);
  void SendOutputRecord(const Task& t, int count, std::string_view data, bool is_stderr = false);

  // Notify: fire, watch (or tell at once if the target is gone), send.
  void FireNotify(int what, int target);
  void AddNotify(const NotifyReg& reg);
  void DrainNotices();
  // Answers for moves this host's tasks asked elsewhere.
  void AnswerAsker(Tid asker, uint64_t rid, int code, const std::string& detail);
  void AnswerInstead(const PendingAnswer& p, int code, const std::string& why);
  void NoteAnswerTo(Tid t, const Frame& f);
  // Task `tid`'s mailbox entries, group places and virtual connection go.
  void ForgetOwner(int tid);
  void DropWaitersOf(ConnId c);

  ctl::HostTable Table() const;
  // This host's LoadReport, from its task table.
  ctl::LoadReport LocalLoad() const;
  // Master: the cluster's load (its own report refreshed first).
  balancer::ClusterLoad LoadSnapshot();
  // Samples every task's process for the load reports, at most every
  // kSampleEveryNs: a daemon ticks at each wake-up, which is often when it
  // relays frames, and each sample reads /proc for every task.
  void SampleTasks();
  static constexpr int64_t kSampleEveryNs = 100'000'000;
  // Virtual-work mode: publishes how many tasks work here, if it changed.
  void PublishWork();

  DaemonConfig cfg;
  DaemonEnv* env;
  CoreEvents* events = nullptr;
  HostIndex host;
  bool joined = false;
  bool halting = false;
  int64_t now_ns = 0;
  uint64_t bad_frames = 0;
  TaskTable tasks;
  ConnTable conns;
  HostTable hosts;  // by host index, this host included
  LocationRegistry where;
  NotifyRegistry notify;
  Mailbox mailbox;             // master: pvm_putinfo and friends
  GroupServer groups;          // master: dynamic groups
  LoadService load;            // master: the cluster's load, from the hosts' reports
  LoadSampler samples;         // this host's tasks, sampled every kSampleEveryNs
  TrafficMeter traffic;        // what this host's tasks send to their peers
  ReadyAverage background;     // processes ready to run here that are not our tasks
  int64_t sampled_ns = 0;      // when they were sampled last
  int published_working = -1;  // virtual-work mode: the count the tasks see
  bool load_changed = false;   // since the last LoadReport: report early
  bool load_news = false;      // master: a host reported a change: balance soon
  PendingAnswers asks;         // moves this host's tasks asked of other hosts

 private:
  bool NotifyTargetExists(int what, int target) const;
};

}  // namespace mpvm
