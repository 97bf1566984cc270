#include "daemon_core.h"

#include <fmt/format.h>
#include <signal.h>

#include <set>

#include "mpvm/control.h"

namespace mpvm {

DaemonCore::DaemonCore(DaemonConfig cfg, DaemonEnv* env)
    : cx_(std::move(cfg), env),
      tasks_(cx_),
      spawner_(cx_),
      members_(cx_),
      services_(cx_),
      queries_(cx_),
      forwarder_(cx_),
      source_(cx_, forwarder_),
      dest_(cx_),
      balance_(cx_) {
  cx_.events = this;
}

// ---- The server's events, routed to their concern ---------------------------

void DaemonCore::OnAccept(ConnId c) { cx_.conns[c] = Conn{}; }

void DaemonCore::OnClose(ConnId c) {
  auto it = cx_.conns.find(c);
  if (it == cx_.conns.end()) return;
  const Conn conn = it->second;
  cx_.conns.erase(it);
  cx_.DropWaitersOf(c);
  members_.DropWaitersOf(c);
  if (conn.forward_for.raw() != 0) {  // a link the task held here before it moved
    forwarder_.LinkClosed(conn.forward_for.raw());
    return;
  }
  switch (tasks_.OnConnClosed(c, conn)) {
    case TaskService::Closed::kOwner:
      Halt();
      break;
    case TaskService::Closed::kTask:
      spawner_.EndJob(conn.tid);
      break;
    case TaskService::Closed::kOther:
      break;
  }
}

void DaemonCore::OnOutput(Tid t, std::string_view bytes, bool is_stderr) {
  tasks_.OnOutput(t, bytes, is_stderr);
}

void DaemonCore::OnOutputClosed(Tid t) { tasks_.OnOutputClosed(t); }

void DaemonCore::OnProcessExit(Tid t, int exit_code, int term_signal) {
  tasks_.NoteExit(t, exit_code, term_signal);
  dest_.OnRestoreEnded(t);
  source_.TaskEnded(t);
  tasks_.MaybeFinish(t);
}

void DaemonCore::OnPeerGone(PeerId p) { members_.OnPeerGone(p); }

void DaemonCore::StartJoin(int64_t now_ns) { members_.StartJoin(now_ns); }

void DaemonCore::OnHostStartFailed(const std::string& name, const std::string& why) {
  members_.OnHostStartFailed(name, why);
}

std::vector<std::string> DaemonCore::StartHosts(const std::vector<HostSpec>& hosts) {
  return members_.StartHosts(hosts);
}

Status DaemonCore::DeleteHost(const std::string& name, const std::string& reason) {
  return members_.DeleteHost(name, reason);
}

void DaemonCore::OnTick(int64_t now_ns) {
  members_.ClockCheck(now_ns);
  cx_.now_ns = now_ns;
  source_.CheckMoveTimeouts();
  dest_.CheckRestores();
  for (const auto& p : cx_.asks.Expired(now_ns))
    cx_.AnswerInstead(p, PvmCode(Err::kSysErr),
                      fmt::format("no answer about moving {} within {} s; `mpvm ps` shows where "
                                  "it runs",
                                  p.subject.str(), MoveSource::kMoveAnswerNs / 1'000'000'000));
  dest_.CheckLimbo();
  queries_.CheckTaskQueries();
  cx_.SampleTasks();
  cx_.PublishWork();  // tasks that ended or left while working
  members_.Beat(now_ns);
  Balance();
}

void DaemonCore::Halt(Tid caller, bool fenced) {
  if (fenced) tasks_.KillAll();  // also when halting already: lost tasks stop now
  if (cx_.halting) return;
  cx_.halting = true;
  members_.LeaveAll();
  tasks_.SignalAllBut(caller);
  cx_.env->RequestShutdown();
}

// ---- Migration: the server's reports ----------------------------------------

void DaemonCore::OnMoveFrozen(Tid t) { source_.OnMoveFrozen(t); }

void DaemonCore::OnMoveFailed(Tid t, const std::string& why, bool pinned, MoveEvent event) {
  source_.OnMoveFailed(t, why, pinned, event);
}

bool DaemonCore::MayCommit(Tid t) const { return source_.MayCommit(t); }

ConnId DaemonCore::OnMoveCommitted(Tid t, const MoveTimes& times) {
  const ConnId c = source_.OnMoveCommitted(t, times);
  if (c != 0) members_.DropWaitersOf(c);
  return c;
}

void DaemonCore::Reroute(Tid t, Frame&& f) { forwarder_.Reroute(t, std::move(f)); }

void DaemonCore::OnForwardLink(ConnId c, Tid t, bool encrypted) {
  forwarder_.OnForwardLink(c, t, encrypted);
}

void DaemonCore::OnCommitDone(Tid t) { forwarder_.OnCommitDone(t); }

DaemonCore::Retained DaemonCore::RetainedForMoved() const {
  return Retained{cx_.where.size(), forwarder_.size(), cx_.conns.ForwardLinks()};
}

balancer::ClusterLoad DaemonCore::LoadSnapshot() { return cx_.LoadSnapshot(); }

void DaemonCore::RequestBalancerMove(Tid t, int dest, const std::string& reason) {
  source_.RequestBalancerMove(t, dest, reason);
}

void DaemonCore::Balance() {
  for (const auto& o : balance_.Tick()) {
    const auto name = [this](int h) {
      return cx_.hosts.contains(h) ? cx_.hosts.at(h).name : std::to_string(h);
    };
    const std::string reason = fmt::format("{} -> {}: {}", name(o.from), name(o.to), o.reason);
    cx_.env->Info(fmt::format("balancer: moving {} {}", Tid(o.tid).str(), reason));
    source_.RequestBalancerMove(Tid(o.tid), o.to, reason);
  }
}

void DaemonCore::DoBalance(ConnId c, const ctl::Envelope& env) {
  const auto set = env.balance().set();
  if (set != ctl::BalanceRequest::ASK) {
    balance_.Switch(set == ctl::BalanceRequest::ON);
    cx_.env->Info(fmt::format("balancer switched {}", balance_.on() ? "on" : "off"));
  }
  cx_.ReplyStatus(
      c, env.rid(), balance_.on() ? 1 : 0,
      fmt::format("balancer {}: {} moves ordered, {} in flight", balance_.on() ? "on" : "off",
                  balance_.ordered_total(), balance_.in_flight()));
}

int DaemonCore::HostOf(Tid t) const { return cx_.HostOf(t); }

// ---- Events one concern raises for others -----------------------------------

void DaemonCore::TaskLost(int tid) {
  // Its mailbox entries and group places go; watchers hear it exited;
  // its spawner hears it was lost with its host.
  cx_.ForgetOwner(tid);
  cx_.FireNotify(kNotifyTaskExit, tid);
  spawner_.ChildLost(tid);
}

void DaemonCore::TaskLeft(int tid) {
  spawner_.ForgetJobTask(tid);
  spawner_.ChildGone(tid);
}

void DaemonCore::TaskReady(Tid t) {
  if (const Task* task = cx_.tasks.Here(t)) source_.MaybeTestMove(*task);
}

void DaemonCore::HostGone(int index) {
  dest_.HostGone(index);
  source_.HostGone(index);
  // Every task that was there, by where it is now rather than where it was
  // born; the master waits a while for one that was moving away from it.
  std::set<int> lost;
  for (int t : cx_.mailbox.Owners()) lost.insert(t);
  for (int t : cx_.groups.Members()) lost.insert(t);
  for (int t : cx_.conns.RemoteTasks()) lost.insert(t);
  for (int t : cx_.notify.WatchedTasks()) lost.insert(t);
  for (int t : spawner_.RemoteChildren()) lost.insert(t);
  std::erase_if(lost, [&](int t) { return cx_.HostOf(Tid(t)) != index; });
  cx_.where.HostGone(index, &lost, cx_.now_ns);
  for (int t : lost) TaskLost(t);
  cx_.where.ForgetHost(index);
  spawner_.HostGone(index);
}

// ---- Connections: dispatch by kind ------------------------------------------

void DaemonCore::OnBadStream(ConnId c, std::string_view why) {
  ++cx_.bad_frames;
  cx_.env->Log(fmt::format("connection {}: {}; closing it", c, why));
  cx_.env->CloseConn(c);
  OnClose(c);
}

void DaemonCore::OnFrame(ConnId c, Frame&& f) {
  auto it = cx_.conns.find(c);
  if (it == cx_.conns.end()) return;
  if (f.header.kind == FrameKind::kControl) {
    auto env = DecodeControl(f.payload);
    if (!env) {
      ++cx_.bad_frames;
      cx_.env->Log(fmt::format("connection {}: {}; ignored", c, env.error()));
      return;
    }
    HandleControl(c, std::move(*env));
    return;
  }
  if (it->second.forward_for.raw() != 0) {  // a link of a task that moved
    if (f.header.kind == FrameKind::kData) forwarder_.Reroute(it->second.forward_for, std::move(f));
    return;
  }
  if (it->second.tid.raw() == 0) {
    ++cx_.bad_frames;
    cx_.env->Log(fmt::format("connection {}: data before enrolment; ignored", c));
    return;
  }
  HandleData(c, std::move(f));
}

void DaemonCore::HandleData(ConnId c, Frame&& f) {
  const Tid src = cx_.conns[c].tid;
  if (f.header.src != src.raw()) {
    ++cx_.bad_frames;
    cx_.env->Log(fmt::format("{} sent a message claiming to be from {}; dropped", src.str(),
                             Tid(f.header.src).str()));
    return;
  }
  f.header.flags |= kFrameFlagRelayed;
  const Tid dst(f.header.dst);
  if (cx_.LocalTask(dst)) {
    cx_.DeliverFrame(cx_.tasks.find(dst)->second, std::move(f));
    return;
  }
  if (dst.host() != cx_.host || cx_.where.contains(dst.raw())) {  // on another host, or moved
    cx_.RouteFrame(f.header, f.payload);
    return;
  }
  cx_.TellGone(f.header);  // no such task here: dropped
}

void DaemonCore::HandleControl(ConnId c, ctl::Envelope&& env) {
  const uint64_t rid = env.rid();
  Conn& conn = cx_.conns[c];
  if (env.has_enrol()) {
    tasks_.DoEnrol(c, env);
    return;
  }
  if (conn.tid.raw() == 0) {
    cx_.ReplyStatus(c, rid, PvmCode(Err::kSysErr), "enrol first");
    return;
  }
  const Tid who = conn.tid;
  if (cx_.halting) {
    cx_.ReplyStatus(c, rid, PvmCode(Err::kSysErr), "the virtual machine is halting");
    return;
  }
  if (env.has_migrate()) source_.ExpectMoveAnswer(who, rid, env.migrate());
  if (cx_.cfg.member && ServedByMaster(env)) {
    if (!cx_.joined) {
      cx_.ReplyStatus(c, rid, PvmCode(Err::kSysErr),
                      "this host has not joined its virtual machine");
      return;
    }
    auto bytes = EncodeControl(env);
    cx_.env->SendToPeer(kMasterPeer, ControlHeader(who.raw(), Tid::DaemonOf(HostIndex{1}).raw()),
                        bytes);
    return;  // the answer comes back addressed to the task
  }
  if (!services_.Handle(c, who, env) && !HandleTaskRequest(c, who, env)) {
    ++cx_.bad_frames;
    cx_.env->Log(fmt::format("{} sent an unexpected control message (case {}); answered BadParam",
                             who.str(), static_cast<int>(env.body_case())));
    cx_.ReplyStatus(c, rid, PvmCode(Err::kBadParam), "not a request");
  }
}

bool DaemonCore::ServedByMaster(const ctl::Envelope& env) const {
  // The mailbox, groups and contexts are VM-wide: the master serves them.
  // So are the whereabouts of tasks that are not here.
  const bool elsewhere = (env.has_migrate() && !cx_.LocalTask(Tid(env.migrate().tid()))) ||
                         (env.has_location() && !cx_.LocalTask(Tid(env.location().tid()))) ||
                         (env.has_tasks() && env.tasks().where() != cx_.host_tid().raw() &&
                          !cx_.LocalTask(Tid(env.tasks().where())));
  return env.has_mbox_put() || env.has_mbox_get() || env.has_mbox_del() || env.has_mbox_info() ||
         env.has_group() || env.has_new_context() || env.has_balance() || env.has_load_query() ||
         elsewhere;
}

bool DaemonCore::HandleTaskRequest(ConnId c, Tid who, ctl::Envelope& env) {
  switch (env.body_case()) {
    case ctl::Envelope::kSpawn:
      spawner_.DoSpawn(c, who, env);
      return true;
    case ctl::Envelope::kKill:
    case ctl::Envelope::kSignal:
      tasks_.DoSignal(c, std::move(env));
      return true;
    case ctl::Envelope::kPstat:
    case ctl::Envelope::kWork:
    case ctl::Envelope::kTraffic:
    case ctl::Envelope::kLinkPort:
    case ctl::Envelope::kExit:
      tasks_.OnTaskRequest(c, who, env);
      return true;
    case ctl::Envelope::kSetOutput:
      tasks_.DoSetOutput(c, who, env);
      return true;
    default:
      return HandleVmRequest(c, who, env);
  }
}

bool DaemonCore::HandleVmRequest(ConnId c, Tid who, ctl::Envelope& env) {
  const uint64_t rid = env.rid();
  switch (env.body_case()) {
    case ctl::Envelope::kConfig: {
      ctl::Envelope e = NewEnvelope();
      *e.mutable_config_reply()->mutable_hosts() = cx_.Table().hosts();
      cx_.Reply(c, rid, std::move(e));
      return true;
    }
    case ctl::Envelope::kTasks:
      queries_.DoTasks(c, env);
      return true;
    case ctl::Envelope::kLocate:
      queries_.DoLocate(c, env);
      return true;
    case ctl::Envelope::kMigrate:
      source_.DoMigrate(who, std::move(env));
      return true;
    case ctl::Envelope::kLocation:
      queries_.DoLocation(c, env);
      return true;
    case ctl::Envelope::kAddHost:
      members_.DoAddHost(c, env);
      return true;
    case ctl::Envelope::kDelHost:
      members_.DoDelHost(c, who, env);
      return true;
    case ctl::Envelope::kBalance:
      DoBalance(c, env);
      return true;
    case ctl::Envelope::kLoadQuery: {
      cx_.load.OnReport(cx_.host.value, cx_.cfg.speed, cx_.LocalLoad(), cx_.now_ns);
      ctl::Envelope e = NewEnvelope();
      *e.mutable_load_view() = balance_.View();
      cx_.Reply(c, rid, std::move(e));
      return true;
    }
    case ctl::Envelope::kHalt:
      cx_.ReplyStatus(c, rid, 0);
      Halt(who);
      return true;
    default:
      return false;
  }
}

// ---- Peers: dispatch by kind ------------------------------------------------

void DaemonCore::OnPeerFrame(PeerId p, Frame&& f) {
  // The master hears its members only. Anyone else (a host declared gone
  // that runs again) is told to leave, and nothing it sends is delivered.
  if (!cx_.cfg.member && !members_.FromMember(p) && !members_.Departing(p)) {
    members_.FromStranger(p, f);
    return;
  }
  const Tid dst(f.header.dst);
  members_.SawPeer(p);
  // The master forwards what is addressed to another member's host (for a
  // task that moved: to the host it is on now).
  if (!cx_.cfg.member && f.header.dst != 0 && !cx_.LocalTask(dst) &&
      cx_.HostOf(dst) != cx_.host.value) {
    if (!members_.FromMember(p)) return;
    if (f.header.kind == FrameKind::kControl && dst.is_daemon()) dest_.NoteTransit(f);
    cx_.RouteFrame(f.header, f.payload);
    return;
  }
  if (f.header.kind == FrameKind::kData || (f.header.dst != 0 && !dst.is_daemon())) {
    PeerFrameForTask(std::move(f));
    return;
  }
  auto env = DecodeControl(f.payload);
  if (!env) {
    ++cx_.bad_frames;
    cx_.env->Log(fmt::format("peer link {}: {}; ignored", p, env.error()));
    return;
  }
  OnPeerControl(p, f.header, std::move(*env));
}

void DaemonCore::PeerFrameForTask(Frame&& f) {
  // For a task here: data, or a control message such as TaskEnded.
  const Tid dst(f.header.dst);
  auto t = cx_.tasks.find(dst);
  if (t != cx_.tasks.end() && t->second.state != TaskState::kLeft) {
    cx_.DeliverFrame(t->second, std::move(f));  // held until it enrols
    return;
  }
  // It moved on: back to the master, which knows where it is now.
  if (cx_.cfg.member && cx_.where.contains(dst.raw())) {
    forwarder_.Forwarded(dst.raw());
    AddFrameHop(f.header);
    cx_.RouteFrame(f.header, f.payload);
    return;
  }
  cx_.TellGone(f.header);  // no such task here: dropped
}

void DaemonCore::OnPeerControl(PeerId p, const FrameHeader& h, ctl::Envelope&& env) {
  if (env.has_migrate() || env.has_migrate_offer() || env.has_migrate_accept() ||
      env.has_task_moved() || env.has_migrate_abort() || env.has_move_outcome()) {
    HandleMoveControl(h, std::move(env));
  } else if (cx_.cfg.member && env.has_tasks()) {  // the master lists the VM's tasks
    queries_.OnPeerTasks(env);
  } else if (!cx_.cfg.member && env.has_tasks_reply() && Tid(h.src).is_daemon()) {
    queries_.OnTasksReply(std::move(env));
  } else if (env.has_remote_spawn() || env.has_remote_spawn_reply() || env.has_spawn_siblings() ||
             env.has_task_gone() || env.has_kill() || env.has_signal() || env.has_locate_query() ||
             env.has_locate_reply()) {
    HandlePeerControl(p, h, std::move(env));
  } else if (!cx_.cfg.member && Tid(h.src).is_task()) {  // a remote task's request
    // Not one of ours, wherever it was born: a task born here may have moved.
    if (members_.FromMember(p) && !cx_.LocalTask(Tid(h.src)))
      HandleControl(cx_.conns.RemoteConn(Tid(h.src)), std::move(env));
  } else if (!cx_.cfg.member) {
    members_.OnMemberControl(p, env);
  } else {
    members_.OnMasterControl(env);
  }
}

void DaemonCore::HandlePeerControl(PeerId p, const FrameHeader& h, ctl::Envelope&& env) {
  if (env.has_locate_query()) {
    queries_.OnLocateQuery(h, env);
  } else if (env.has_locate_reply()) {
    queries_.OnLocateReply(Tid(h.src), std::move(env));
  } else if (env.has_remote_spawn()) {
    spawner_.OnRemoteSpawn(Tid(h.src), env.remote_spawn());
  } else if (env.has_remote_spawn_reply()) {
    spawner_.OnRemoteSpawnReply(Tid(h.src).host().value, env.remote_spawn_reply());
  } else if (env.has_spawn_siblings()) {
    spawner_.ApplySiblings(
        std::vector<int>(env.spawn_siblings().tids().begin(), env.spawn_siblings().tids().end()));
  } else if (env.has_task_gone()) {
    OnTaskGone(p, env.task_gone().tid());
  } else {
    tasks_.OnPeerSignal(std::move(env));
  }
}

void DaemonCore::OnTaskGone(PeerId p, int tid) {
  spawner_.ChildGone(tid);
  spawner_.ForgetJobTask(tid);
  cx_.where.Forget(tid);
  forwarder_.EndForwarding(tid);
  cx_.where.NoteGone(tid);
  cx_.FireNotify(kNotifyTaskExit, tid);
  if (cx_.cfg.member) return;
  cx_.ForgetOwner(tid);
  cx_.BroadcastTaskGone(tid, p);  // the master passes it on
}

void DaemonCore::HandleMoveControl(const FrameHeader& h, ctl::Envelope&& env) {
  if (env.has_migrate()) {
    source_.DoMigrate(Tid(), std::move(env));
  } else if (env.has_migrate_offer()) {
    dest_.OnOffer(h, env.migrate_offer());
  } else if (env.has_migrate_accept()) {
    source_.OnAccept(env.migrate_accept());
  } else if (env.has_task_moved()) {
    dest_.OnTaskMoved(env.task_moved());
  } else if (env.has_migrate_abort()) {
    dest_.OnAbort(env.migrate_abort());
  } else if (env.has_move_outcome() && !cx_.cfg.member) {
    const ctl::MoveOutcome& o = env.move_outcome();
    cx_.load.OnMoveFailed(o.tid(), o.to(), o.pinned(), cx_.now_ns);
  }
}

}  // namespace mpvm
