// core_migrate.cc — the daemons' side of task migration (no I/O here).
//
// Roles (docs/design/migration.md): the source daemon S runs the move, the
// destination D starts the restore process, and the master keeps the
// registry of where every moved task is. Frames for a task that is not here
// go by where_: on the master to the task's current host, on a member to
// the master. So a frame sent to a stale place takes at most one extra hop.
#include <fmt/format.h>
#include <signal.h>
#include <time.h>

#include <nlohmann/json.hpp>

#include "daemon_core.h"
#include "mpvm/control.h"

namespace mpvm {

namespace {

int Code(Err e) { return ToPvmCode(e); }

constexpr int64_t kOfferTimeoutNs = 10'000'000'000;    // D must answer an offer
constexpr int64_t kFreezeTimeoutNs = 30'000'000'000;   // T must reach a boundary
constexpr int64_t kRestoreTimeoutNs = 30'000'000'000;  // an uncommitted restore is dropped

std::vector<std::string> WithVar(const std::vector<std::string>& env, const std::string& name,
                                 const std::string& value) {
  std::vector<std::string> out;
  out.reserve(env.size() + 1);
  for (const auto& kv : env)
    if (kv.rfind(name + "=", 0) != 0) out.push_back(kv);
  out.push_back(name + "=" + value);
  return out;
}

}  // namespace

void DaemonCore::Trace(int sink, const std::string& json) {
  if (sink == 0) return;
  Message m(kEncDefault);
  const int len = static_cast<int>(json.size());
  (void)m.Pack(DataType::kInt, &len, 1, 1);
  (void)m.Pack(DataType::kByte, json.data(), len, 1);
  SendToTask(Tid(sink), kTraceTag, kSystemCtx, m);
}

bool DaemonCore::LocalTask(Tid t) const {
  // A restore process is not the task until the commit: frames routed here
  // before then would be lost if the move were abandoned.
  auto it = tasks_.find(t);
  return it != tasks_.end() && it->second.state != State::kLeft && !it->second.restoring;
}

int DaemonCore::HostOf(Tid t) const {
  if (t.is_task()) {
    if (LocalTask(t)) return host_.value;
    if (auto it = where_.find(t.raw()); it != where_.end()) return it->second;
  }
  return t.host().value;
}

void DaemonCore::ExpectMoveAnswer(Tid who, uint64_t rid, const ctl::MigrateRequest& m) {
  // Only a request that leaves this host: here, this daemon answers itself.
  const Tid subject(m.tid());
  if (!LocalTask(who) || LocalTask(subject) || !subject.is_task()) return;
  asks_.Expect({who, rid, subject, HostOf(subject), now_ns_ + kMoveAnswerNs});
}

void DaemonCore::AnswerInstead(const PendingAnswer& p, int code, const std::string& why) {
  env_->Log(
      fmt::format("answering {}'s request to move {}: {}", p.asker.str(), p.subject.str(), why));
  ctl::Envelope e = NewEnvelope();
  e.set_rid(p.rid);
  e.mutable_status()->set_code(code);
  e.mutable_status()->set_detail(why);
  SendControlTo(p.asker, std::move(e));
}

void DaemonCore::NoteAnswerTo(Tid t, const Frame& f) {
  if (asks_.empty() || f.header.kind != FrameKind::kControl) return;
  if (auto env = DecodeControl(f.payload); env && env->has_status()) asks_.Answered(t, env->rid());
}

void DaemonCore::AnswerAsker(Tid asker, uint64_t rid, int code, const std::string& detail) {
  if (asker.raw() == 0) return;
  ctl::Envelope e = NewEnvelope();
  e.set_rid(rid);
  e.mutable_status()->set_code(code);
  e.mutable_status()->set_detail(detail);
  SendControlTo(asker, std::move(e));
}

void DaemonCore::DoMigrate(Tid who, ctl::Envelope&& env) {
  auto* m = env.mutable_migrate();
  // A client's request names no asker until its first daemon fills it in;
  // the balancer's never has one (and is never passed back by a member).
  const bool asked_here = m->asker() == 0 && !m->by_balancer();
  if (asked_here) {  // answer the asker wherever the move runs
    m->set_asker(who.raw());
    m->set_asker_rid(env.rid());
  }
  const Tid t(m->tid());
  const Tid asker(m->asker());
  const uint64_t rid = m->asker_rid();
  const MoveOrigin origin = m->by_balancer() ? MoveOrigin::kBalancer : MoveOrigin::kClient;
  if (!t.is_task()) {
    AnswerAsker(asker, rid, Code(Err::kBadParam), fmt::format("{} is not a task", t.str()));
    return;
  }
  int dest = 0;
  for (const auto& [index, h] : hosts_)
    if (h.name == m->host()) dest = index;
  if (dest == 0) {
    AnswerAsker(asker, rid, Code(Err::kNoHost),
                fmt::format("no host named '{}' in the virtual machine", m->host()));
    return;
  }
  if (LocalTask(t)) {
    StartMove(t, dest, asker, rid, origin);
    return;
  }
  // Not here: the master knows where it is. A member passes a request on
  // only if it was asked itself or the task has just left it (its TaskMoved
  // is ahead on the same link); one the master sent here for a task that is
  // gone ends here, or the two would pass it back and forth for ever.
  const bool pass_on = !cfg_.member || asked_here || where_.contains(t.raw());
  const int at = cfg_.member ? 1 : HostOf(t);
  if (!pass_on || at == host_.value || !hosts_.contains(at)) {
    AnswerAsker(asker, rid, Code(Err::kNoTask), fmt::format("no task {}", t.str()));
    return;
  }
  SendControlTo(Tid::DaemonOf(HostIndex{at}), std::move(env));
}

bool DaemonCore::Advance(Move& mv, MoveEvent event) {
  auto next = NextMoveState(mv.state, event);
  if (!next) {
    env_->Debug(fmt::format("move {:x}: '{}' in state {} ignored", mv.id, MoveEventName(event),
                            MoveStateName(mv.state)));
    return false;
  }
  // At info: a daemon killed outright leaves its log, and each move's steps
  // in it explain what happened to the move.
  env_->Info(fmt::format("move {:x} of {}: {} -> {} ({})", mv.id, mv.tid.str(),
                         MoveStateName(mv.state), MoveStateName(*next), MoveEventName(event)));
  mv.state = *next;
  return true;
}

void DaemonCore::RequestBalancerMove(Tid t, int dest) {
  if (!hosts_.contains(dest)) return;
  ctl::Envelope e = NewEnvelope();
  auto* m = e.mutable_migrate();
  m->set_tid(t.raw());
  m->set_host(hosts_.at(dest).name);
  m->set_by_balancer(true);
  DoMigrate(Tid(), std::move(e));
}

std::string DaemonCore::WhyCannotMove(const Task& task) const {
  std::string why;
  if (task.is_tool || !task.spawned || task.pid <= 0)
    why = "only tasks started by mpvmd can move (this one was started by hand)";
  else if (task.restoring)
    why = "it is arriving here";
  else if (task.state != State::kEnrolled && task.from_host == 0)
    why = "it has not called pvm_mytid yet";
  else if (task.move_id != 0)
    why = "it is moving already";
  else if (task.awaiting_siblings)
    why = "its spawn is not complete yet";
  else if (task.exited)
    why = "it has exited";
  else if (!task.spec.stdin_path.empty())
    why = "it reads prun's standard input (prun --stdin none lets rank 0 move)";
  return why;
}

void DaemonCore::FillOffer(const Task& task, uint64_t id, ctl::MigrateOffer* o) const {
  o->set_tid(task.tid.raw());
  o->set_id(id);
  o->set_path(task.spec.path);
  for (const auto& a : task.spec.argv) o->add_argv(a);
  for (const auto& kv : task.spec.env) o->add_env(kv);
  o->set_cwd(task.spec.cwd);
  o->set_ptid(task.ptid);
  o->set_a_out(task.a_out);
  o->set_output_tid(task.out_tid);
  o->set_output_code(task.out_code);
  o->set_output_ctx(task.out_ctx);
  o->set_trace_tid(task.trace_tid);
  o->set_trace_code(task.trace_code);
  o->set_report_to(task.report_to);
  o->set_ctx(task.ctx);
  for (Tid s : task.siblings) o->add_siblings(s.raw());
  o->set_moves(task.moves);
  o->set_event_sink(task.event_sink);
  o->set_stderr_apart(task.stderr_apart);
  o->set_age_ns(now_ns_ - task.spawned_ns);
}

void DaemonCore::StartMove(Tid t, int dest, Tid asker, uint64_t rid, MoveOrigin origin) {
  Task& task = tasks_[t];
  const std::string& dest_name = hosts_.at(dest).name;
  if (dest == host_.value) {
    AnswerAsker(asker, rid, host_tid().raw(),
                fmt::format("{} is on {} already", t.str(), dest_name));
    return;
  }
  const std::string why = WhyCannotMove(task);
  if (!why.empty()) {
    AnswerAsker(asker, rid, Code(Err::kDenied), fmt::format("{} cannot move: {}", t.str(), why));
    return;
  }
  const uint64_t id = (uint64_t(uint32_t(host_.value)) << 40) | next_move_++;
  Move& mv = moves_[id];
  mv.id = id;
  mv.tid = t;
  mv.dest = dest;
  mv.asker = asker;
  mv.asker_rid = rid;
  mv.origin = origin;
  mv.requested_ns = now_ns_;
  mv.requested_wall_ns = env_->WallNs();
  mv.admin_messages = 1;  // the offer
  task.move_id = id;

  ctl::Envelope e = NewEnvelope();
  FillOffer(task, id, e.mutable_migrate_offer());
  env_->Info(fmt::format("moving {} to {} (move {:x})", t.str(), dest_name, id));
  SendControlTo(Tid::DaemonOf(HostIndex{dest}), std::move(e));
}

void DaemonCore::FinishMove(uint64_t id, int code, const std::string& detail) {
  auto it = moves_.find(id);
  if (it == moves_.end()) return;
  Move mv = it->second;
  moves_.erase(it);
  if (auto t = tasks_.find(mv.tid); t != tasks_.end() && t->second.move_id == id)
    t->second.move_id = 0;
  if (code < 0) env_->Log(fmt::format("move {:x} of {}: {}", id, mv.tid.str(), detail));
  AnswerAsker(mv.asker, mv.asker_rid, code, detail);
}

void DaemonCore::HandleMoveControl(const FrameHeader& h, ctl::Envelope&& env) {
  if (env.has_migrate()) {
    DoMigrate(Tid(), std::move(env));
  } else if (env.has_migrate_offer()) {
    OnOffer(h, env.migrate_offer());
  } else if (env.has_migrate_accept()) {
    OnAccept(env.migrate_accept());
  } else if (env.has_task_moved()) {
    OnTaskMoved(env.task_moved());
  } else if (env.has_migrate_abort()) {
    auto t = tasks_.find(Tid(env.migrate_abort().tid()));
    if (t != tasks_.end() && t->second.restoring && t->second.move_id == env.migrate_abort().id()) {
      env_->Log(fmt::format("move {:x} of {} abandoned: {}", env.migrate_abort().id(),
                            t->first.str(), env.migrate_abort().why()));
      t->second.move_id = 0;  // its exit is forgotten quietly (MaybeFinish)
      if (t->second.exited)
        MaybeFinish(t->first);  // it ended already (the image stopped short)
      else
        env_->Signal(t->second.pid, SIGKILL);
    }
  }
}

// ---- Destination ---------------------------------------------------------------

DaemonCore::Task DaemonCore::RestoringTask(const ctl::MigrateOffer& o, const SpawnSpec& spec,
                                           int pid, int from) const {
  Task task;
  task.tid = Tid(o.tid());
  task.pid = pid;
  task.spawned = true;
  task.ptid = o.ptid();
  task.a_out = o.a_out();
  task.out_tid = o.output_tid();
  task.out_code = o.output_code();
  task.out_ctx = o.output_ctx();
  task.stderr_apart = o.stderr_apart();
  task.spawned_ns = now_ns_ - o.age_ns();
  task.trace_tid = o.trace_tid();
  task.trace_code = o.trace_code();
  task.report_to = o.report_to();
  task.ctx = o.ctx();
  for (int s : o.siblings()) task.siblings.push_back(Tid(s));
  task.open_streams = 2;
  task.spec = spec;
  task.restoring = true;
  task.moves = o.moves() + 1;
  task.event_sink = o.event_sink();
  task.arrived_by = o.id();
  task.move_id = o.id();
  task.from_host = from;
  task.restore_deadline_ns = now_ns_ + kRestoreTimeoutNs;
  return task;
}

void DaemonCore::OnOffer(const FrameHeader& h, const ctl::MigrateOffer& o) {
  env_->FaultPoint("offer", 0);
  ctl::Envelope e = NewEnvelope();
  auto* a = e.mutable_migrate_accept();
  a->set_id(o.id());
  a->set_tid(o.tid());
  const Tid t(o.tid());
  auto refuse = [&](Err code, const std::string& why) {
    a->set_code(Code(code));
    a->set_detail(why);
    SendControlTo(Tid(h.src), std::move(e));
  };
  if (halting_) return refuse(Err::kSysErr, "the host is halting");
  if (tasks_.contains(t)) return refuse(Err::kExists, "it has a task with that tid already");
  if (o.path().empty() || env_->Resolve(o.path(), "", "/").empty())
    return refuse(Err::kNoFile, fmt::format("{} is not an executable file there", o.path()));
  SpawnSpec spec;
  spec.tid = t;
  spec.path = o.path();
  spec.argv.assign(o.argv().begin(), o.argv().end());
  std::vector<std::string> env(o.env().begin(), o.env().end());
  spec.env = WithVar(env, "MPVM_RUNDIR", cfg_.rundir);
  spec.cwd = o.cwd();
  const std::string token = env_->RandomBytes(32);
  auto rs = env_->SpawnRestore(spec, token);
  if (!rs)
    return refuse(rs.error(), fmt::format("cannot start {} there: {}", o.path(),
                                          PvmErrorText(Code(rs.error()))));
  Task task = RestoringTask(o, spec, rs->pid, Tid(h.src).host().value);
  tasks_.emplace(t, std::move(task));
  if (!cfg_.member) in_transit_[t.raw()] = Transit{Tid(h.src).host().value, host_.value, now_ns_};
  env_->Debug(fmt::format("move {:x}: restoring {} here from {} (pid {})", o.id(), t.str(),
                          Tid(h.src).host().value, rs->pid));
  a->set_code(0);
  a->set_port(rs->port);
  a->set_token(token);
  SendControlTo(Tid(h.src), std::move(e));
}

void DaemonCore::OnTaskMoved(const ctl::TaskMoved& m) {
  const Tid t(m.tid());
  env_->Debug(fmt::format("move {:x}: {} now runs on host {}", m.id(), t.str(), m.host()));
  if (!cfg_.member) {  // the registry
    if (m.host() != host_.value && !hosts_.contains(m.host())) {
      // Committed to a host that has left meanwhile: the task is lost with
      // it, and said so (its watchers and spawner hear it), never silently.
      env_->Log(
          fmt::format("{} was committed to host {}, which has left the virtual machine: "
                      "the task is lost",
                      t.str(), m.host()));
      where_.erase(m.tid());
      in_transit_.erase(m.tid());
      limbo_.erase(m.tid());
      LoseTask(m.tid());
      BroadcastTaskGone(m.tid(), 0);
      return;
    }
    if (m.bytes() > 0) load_.OnMoveDone(m.bytes(), m.blackout_ns());
    where_[m.tid()] = m.host();
    in_transit_.erase(m.tid());
    limbo_.erase(m.tid());
    if (m.host() != host_.value) {
      ctl::Envelope e = NewEnvelope();
      *e.mutable_task_moved() = m;
      SendControlTo(Tid::DaemonOf(HostIndex{m.host()}), std::move(e));
      return;
    }
  }
  if (m.host() != host_.value) return;
  where_.erase(m.tid());
  for (const auto& n : m.notifies())
    AddNotify(NotifyReg{t, n.what(), n.tag(), n.ctx(), n.target(), n.count()});
  Arrived(t);
}

void DaemonCore::Arrived(Tid t) {
  auto it = tasks_.find(t);
  if (it == tasks_.end() || !it->second.restoring) {
    env_->Debug(fmt::format("{} arrived, but no copy of it is restoring here", t.str()));
    return;
  }
  Task& task = it->second;
  env_->Debug(fmt::format("{} arrived (pid {}{}, {} bytes of output held)", t.str(), task.pid,
                          task.exited ? ", ended already" : "", task.held_output.size()));
  task.restoring = false;
  task.moved_ns = now_ns_;
  in_transit_.erase(t.raw());
  limbo_.erase(t.raw());
  task.move_id = 0;
  // Its output waited for this: what it printed before the move is ahead.
  std::string held = std::move(task.held_output);
  if (!held.empty()) OnOutput(t, held);
  if (task.exited) {
    MaybeFinish(t);
    return;
  }
  MaybeTestMove(task);
}

void DaemonCore::MaybeTestMove(const Task& task) {
  if (cfg_.test_moves <= task.moves || !task.spawned || task.is_tool || task.restoring ||
      task.exited || task.state != State::kEnrolled || task.move_id != 0 || hosts_.size() < 2)
    return;
  // The test driver: on to the next host, while the task runs on.
  auto next = hosts_.upper_bound(host_.value);
  if (next == hosts_.end()) next = hosts_.begin();
  StartMove(task.tid, next->first, Tid(), 0, MoveOrigin::kTest);
}

void DaemonCore::ClaimArrival(Tid t) {
  // The source host died after the commit (the copy enrolled, so it was
  // committed, by the source or by the task itself): this host tells the
  // registry in its place.
  auto it = tasks_.find(t);
  if (it == tasks_.end() || !it->second.restoring || !it->second.committed) return;
  env_->Log(fmt::format("{} arrived from a host that has died; this host registers it", t.str()));
  ctl::Envelope e = NewEnvelope();
  auto* m = e.mutable_task_moved();
  m->set_tid(t.raw());
  m->set_host(host_.value);
  m->set_id(it->second.move_id);
  m->set_from(it->second.from_host);
  if (cfg_.member) {
    where_.erase(t.raw());
    SendControlTo(Tid::DaemonOf(HostIndex{1}), std::move(e));
    Arrived(t);
  } else {
    OnTaskMoved(*m);
  }
}

// ---- Source --------------------------------------------------------------------

void DaemonCore::OnAccept(const ctl::MigrateAccept& a) {
  auto it = moves_.find(a.id());
  if (it == moves_.end()) {
    if (a.code() == 0) {  // we gave up meanwhile: let it drop the restore
      ctl::Envelope e = NewEnvelope();
      e.mutable_migrate_abort()->set_id(a.id());
      e.mutable_migrate_abort()->set_tid(a.tid());
      e.mutable_migrate_abort()->set_why("the source gave up waiting");
      SendControlTo(Tid::DaemonOf(HostIndex{static_cast<int>(a.id() >> 40)}), std::move(e));
    }
    return;
  }
  Move& mv = it->second;
  ++mv.admin_messages;
  const std::string dest_name = hosts_.contains(mv.dest) ? hosts_.at(mv.dest).name : "?";
  if (!Advance(mv, a.code() < 0 ? MoveEvent::kRefused : MoveEvent::kAccepted)) return;
  if (a.code() < 0) {
    FinishMove(mv.id, a.code(),
               fmt::format("{} cannot move to {}: {}", mv.tid.str(), dest_name, a.detail()));
    return;
  }
  auto t = tasks_.find(mv.tid);
  auto abort = [&](const std::string& why, MoveEvent event) {
    Advance(mv, event);
    ctl::Envelope e = NewEnvelope();
    e.mutable_migrate_abort()->set_id(mv.id);
    e.mutable_migrate_abort()->set_tid(mv.tid.raw());
    e.mutable_migrate_abort()->set_why(why);
    SendControlTo(Tid::DaemonOf(HostIndex{mv.dest}), std::move(e));
    FinishMove(mv.id, Code(Err::kSysErr), fmt::format("{} cannot move: {}", mv.tid.str(), why));
  };
  if (t == tasks_.end() || t->second.exited)
    return abort("it ended before it could move", MoveEvent::kTaskEnded);
  if (!hosts_.contains(mv.dest))
    return abort("its destination left the virtual machine", MoveEvent::kDestinationDied);
  std::string addr = hosts_.at(mv.dest).addr;
  if (addr.empty()) addr = cfg_.master_ip;
  if (addr.empty()) addr = "127.0.0.1";
  mv.accepted_ns = now_ns_;
  env_->Debug(fmt::format("move {:x}: accepted; asking {} (pid {}) to stop", mv.id, mv.tid.str(),
                          t->second.pid));
  env_->FaultPoint("accept", t->second.pid);
  auto st = env_->BeginMove(mv.tid, t->second.pid, addr, a.port(), a.token());
  if (!st) return abort(st.error(), MoveEvent::kTaskFailed);
}

void DaemonCore::OnMoveFrozen(Tid t) {
  auto task = tasks_.find(t);
  if (task == tasks_.end()) return;
  auto it = moves_.find(task->second.move_id);
  if (it == moves_.end()) return;
  if (!Advance(it->second, MoveEvent::kFrozen)) return;
  env_->Debug(fmt::format("move {:x}: {} stopped and handed over", it->first, t.str()));
  it->second.frozen_ns = now_ns_;
  it->second.admin_messages += 2;  // the handover and the answer to it
}

void DaemonCore::OnMoveFailed(Tid t, const std::string& why, bool pinned, MoveEvent event) {
  auto task = tasks_.find(t);
  if (task == tasks_.end()) return;
  auto it = moves_.find(task->second.move_id);
  if (it == moves_.end() || !Advance(it->second, event)) return;
  ctl::Envelope e = NewEnvelope();
  e.mutable_migrate_abort()->set_id(it->first);
  e.mutable_migrate_abort()->set_tid(t.raw());
  e.mutable_migrate_abort()->set_why(why);
  SendControlTo(Tid::DaemonOf(HostIndex{it->second.dest}), std::move(e));
  if (pinned) task->second.pinned_why = why;
  FinishMove(it->first, Code(Err::kSysErr), fmt::format("{} cannot move: {}", t.str(), why));
}

void DaemonCore::FillTaskMoved(Tid t, const Move& mv, const MoveTimes& times, ctl::TaskMoved* m) {
  m->set_tid(t.raw());
  m->set_host(mv.dest);
  m->set_id(mv.id);
  m->set_from(host_.value);
  m->set_bytes(times.bytes);
  m->set_blackout_ns(times.restored_ns - times.freeze_ns);
  // What it asked to be told goes with it: its new host watches from now on
  // (and this one may not live as long as the task).
  for (const NotifyReg& r : notify_.TakeWatcher(t)) {
    auto* n = m->add_notifies();
    n->set_what(r.what);
    n->set_tag(r.tag);
    n->set_ctx(r.ctx);
    n->set_target(r.target);
    n->set_count(r.count);
  }
}

bool DaemonCore::MayCommit(Tid t) const {
  auto task = tasks_.find(t);
  if (task == tasks_.end()) return false;
  auto it = moves_.find(task->second.move_id);
  return it != moves_.end() && it->second.state == MoveState::kFrozen &&
         hosts_.contains(it->second.dest);
}

ConnId DaemonCore::OnMoveCommitted(Tid t, const MoveTimes& times) {
  auto task = tasks_.find(t);
  if (task == tasks_.end()) return 0;
  auto it = moves_.find(task->second.move_id);
  if (it == moves_.end()) return 0;
  Move& mv = it->second;
  if (!Advance(mv, MoveEvent::kRestored)) return 0;
  asks_.Forget(t);         // it leaves: what it waits for is answered where it goes
  mv.admin_messages += 2;  // "restored", and the commit to the registry
  where_[t.raw()] = mv.dest;
  ctl::Envelope e = NewEnvelope();
  auto* m = e.mutable_task_moved();
  FillTaskMoved(t, mv, times, m);
  if (cfg_.member) {
    SendControlTo(Tid::DaemonOf(HostIndex{1}), std::move(e));
  } else {
    OnTaskMoved(*m);
  }
  const ConnId c = task->second.conn;
  if (c != 0) {
    DropWaitersOf(c);
    conns_.erase(c);
  }
  // Frames held for it (a restored copy that had not enrolled here) follow it.
  std::deque<Frame> held = std::move(task->second.held);
  // Its mailbox entries, group places and others' notify requests about it
  // stay: they name it by tid, and what they send it follows it.
  mv.admin_messages += 3;  // "exit" to the old process; the copy's enrolment and its answer
  const std::string dest_name = hosts_.contains(mv.dest) ? hosts_.at(mv.dest).name : "?";
  const double blackout = (times.restored_ns - times.freeze_ns) / 1e6;
  if (auto old = forwarding_.find(t.raw()); old != forwarding_.end()) EndForwarding(t.raw());
  Forwarding& fw = forwarding_[t.raw()];
  fw.move_id = mv.id;
  fw.event_sink = task->second.event_sink;
  fw.move = mv;
  fw.times = times;
  fw.to = dest_name;
  fw.commit_wall_ns = env_->WallNs();
  fw.commit_ns = now_ns_;
  tasks_.erase(task);
  for (auto& f : held) Reroute(t, std::move(f));
  FinishMove(mv.id, Tid::DaemonOf(HostIndex{mv.dest}).raw(),
             fmt::format("{} moved to {} ({} bytes, stopped {:.1f} ms)", t.str(), dest_name,
                         times.bytes, blackout));
  return c;
}

void DaemonCore::Reroute(Tid t, Frame&& f) {
  if (f.header.dst == 0) f.header.dst = t.raw();  // our answers to it name no one
  if (f.header.dst != t.raw()) return;
  ++forwarded_;
  if (auto fw = forwarding_.find(t.raw()); fw != forwarding_.end()) ++fw->second.forwarded;
  f.header.flags |= kFrameFlagRelayed;
  AddFrameHop(f.header);
  if (auto it = tasks_.find(t); it != tasks_.end() && it->second.state != State::kLeft) {
    DeliverFrame(it->second, std::move(f));  // it came back here meanwhile
    return;
  }
  RouteFrame(f.header, f.payload);
}

void DaemonCore::OnForwardLink(ConnId c, Tid t, bool encrypted) {
  Conn conn;
  conn.forward_for = t;
  conns_[c] = conn;
  ++link_updates_;
  if (auto fw = forwarding_.find(t.raw()); fw != forwarding_.end()) {
    ++fw->second.link_updates;
    ++fw->second.open_links;
    if (encrypted) ++fw->second.encrypted_links;
  }
}

DaemonCore::Retained DaemonCore::RetainedForMoved() const {
  Retained r{where_.size(), forwarding_.size(), 0};
  for (const auto& [id, c] : conns_) r.held_links += c.forward_for.raw() != 0;
  return r;
}

void DaemonCore::OnCommitDone(Tid t) {
  auto fw = forwarding_.find(t.raw());
  if (fw == forwarding_.end() || fw->second.reported) return;
  Forwarding& f = fw->second;
  f.reported = true;
  Advance(f.move, MoveEvent::kReported);
  const Move& mv = f.move;
  const MoveTimes& times = f.times;
  nlohmann::json record{{"tid", t.str()},
                        {"id", fmt::format("{:x}", mv.id)},
                        {"from", cfg_.hostname},
                        {"to", f.to},
                        {"bytes", times.bytes},
                        {"request_ns", mv.requested_wall_ns},
                        {"freeze_ns", times.freeze_ns},
                        {"transfer_ns", times.sent_ns},
                        {"restored_ns", times.restored_ns},
                        {"stopped", times.by_signal ? "by signal" : "at a boundary"},
                        {"commit_ns", f.commit_wall_ns},
                        {"blackout_ms", (times.restored_ns - times.freeze_ns) / 1e6},
                        {"total_ms", (f.commit_ns - mv.requested_ns) / 1e6},
                        {"admin_messages", mv.admin_messages}};
  record["forwarded"] = f.forwarded;        // frames it had not read, or sent us, at the commit
  record["link_updates"] = f.link_updates;  // its task links, told kMoved
  record["encrypted_links"] = f.encrypted_links;  // of which encrypted
  env_->Info("migration " + record.dump());
  record["ev"] = "migration";
  Trace(f.event_sink, record.dump());
  f.forwarded = 0;                                // from now on: what the links it held bring
  if (f.open_links == 0) EndForwarding(t.raw());  // (its event ends the move's trace)
}

void DaemonCore::EndForwarding(int tid) {
  // Its held links are closed, or it ended: what this host forwarded for it
  // after the commit, in one last event.
  auto fw = forwarding_.find(tid);
  if (fw == forwarding_.end()) return;
  const Forwarding f = std::move(fw->second);
  forwarding_.erase(fw);
  if (!f.reported) return;
  nlohmann::json record{{"tid", Tid(tid).str()},
                        {"id", fmt::format("{:x}", f.move_id)},
                        {"host", cfg_.hostname},
                        {"forwarded", f.forwarded},
                        {"links", f.link_updates}};
  env_->Info("forwarding " + record.dump());
  if (f.event_sink == 0) return;
  record["ev"] = "forwarding";
  record["ts"] = env_->WallNs();
  Trace(f.event_sink, record.dump());
}

void DaemonCore::NoteTransit(const Frame& f) {
  // Members' moves pass through the master: it notes which tasks are moving
  // between which hosts, with no message of its own, so that a source host
  // that dies mid-move does not make it report the task lost too soon.
  auto env = DecodeControl(f.payload);
  if (!env) return;
  if (env->has_migrate_offer()) {
    in_transit_[env->migrate_offer().tid()] =
        Transit{Tid(f.header.src).host().value, Tid(f.header.dst).host().value, now_ns_};
  } else if (env->has_migrate_abort()) {
    in_transit_.erase(env->migrate_abort().tid());
  } else if (env->has_migrate_accept() && env->migrate_accept().code() < 0) {
    in_transit_.erase(env->migrate_accept().tid());
  }
}

void DaemonCore::CheckLimbo() {
  std::erase_if(in_transit_,
                [&](const auto& e) { return now_ns_ - e.second.since_ns > kRestoreTimeoutNs; });
  std::vector<int> lost;
  for (const auto& [tid, deadline] : limbo_)
    if (now_ns_ > deadline) lost.push_back(tid);
  for (int t : lost) {
    limbo_.erase(t);
    env_->Log(
        fmt::format("{} was moving away from a host that died, and did not arrive", Tid(t).str()));
    LoseTask(t);
  }
}

void DaemonCore::CheckMoveTimeouts() {
  struct Late {
    Tid tid;
    std::string why;
    MoveEvent event;
  };
  std::vector<Late> failed;
  for (const auto& [id, mv] : moves_) {
    if (mv.state == MoveState::kOffered && now_ns_ - mv.requested_ns > kOfferTimeoutNs)
      failed.push_back(
          {mv.tid, "no answer from the destination host within 10 s", MoveEvent::kOfferTimeout});
    else if (mv.state == MoveState::kAccepted && now_ns_ - mv.accepted_ns > kFreezeTimeoutNs)
      failed.push_back({mv.tid, "it did not stop within 30 s (blocked inside a library call?)",
                        MoveEvent::kFreezeTimeout});
  }
  for (const auto& f : failed) {
    env_->CancelMove(f.tid);
    OnMoveFailed(f.tid, f.why, false, f.event);
  }
  // Destination: a restore the source never committed nor aborted.
  std::vector<Tid> stale;
  for (auto& [tid, task] : tasks_)
    if (task.restoring && !task.committed && now_ns_ > task.restore_deadline_ns) {
      if (!task.exited) env_->Signal(task.pid, SIGKILL);
      task.move_id = 0;
      if (task.exited) stale.push_back(tid);
    }
  for (Tid t : stale) MaybeFinish(t);
}

}  // namespace mpvm
