// move_source.cc — the source daemon's side of a move (docs/design/migration.md).
#include "core/move_source.h"

#include <fmt/format.h>
#include <signal.h>

#include <nlohmann/json.hpp>

#include "mpvm/control.h"

namespace mpvm {
namespace {

constexpr int64_t kOfferTimeoutNs = 10'000'000'000;   // D must answer an offer
constexpr int64_t kFreezeTimeoutNs = 30'000'000'000;  // T must reach a boundary

}  // namespace

void MoveSource::DoMigrate(Tid who, ctl::Envelope&& env) {
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
    cx_.AnswerAsker(asker, rid, PvmCode(Err::kBadParam), fmt::format("{} is not a task", t.str()));
    return;
  }
  int dest = 0;
  for (const auto& [index, h] : cx_.hosts)
    if (h.name == m->host()) dest = index;
  if (dest == 0) {
    cx_.AnswerAsker(asker, rid, PvmCode(Err::kNoHost),
                    fmt::format("no host named '{}' in the virtual machine", m->host()));
    return;
  }
  if (cx_.LocalTask(t)) {
    StartMove(t, dest, asker, rid, origin, m->reason());
    return;
  }
  // Not here: the master knows where it is. A member passes a request on
  // only if it was asked itself or the task has just left it (its TaskMoved
  // is ahead on the same link); one the master sent here for a task that is
  // gone ends here, or the two would pass it back and forth for ever.
  const bool pass_on = !cx_.cfg.member || asked_here || cx_.where.contains(t.raw());
  const int at = cx_.cfg.member ? 1 : cx_.HostOf(t);
  if (!pass_on || at == cx_.host.value || !cx_.hosts.contains(at)) {
    cx_.AnswerAsker(asker, rid, PvmCode(Err::kNoTask), fmt::format("no task {}", t.str()));
    return;
  }
  cx_.SendControlTo(Tid::DaemonOf(HostIndex{at}), std::move(env));
}

void MoveSource::RequestBalancerMove(Tid t, int dest, const std::string& reason) {
  if (!cx_.hosts.contains(dest)) return;
  ctl::Envelope e = NewEnvelope();
  auto* m = e.mutable_migrate();
  m->set_tid(t.raw());
  m->set_host(cx_.hosts.at(dest).name);
  m->set_by_balancer(true);
  m->set_reason(reason);
  DoMigrate(Tid(), std::move(e));
}

MoveSource::Refusal MoveSource::WhyCannotMove(const Task& task) const {
  if (task.is_tool || !task.spawned || task.pid <= 0)
    return {"only tasks started by mpvmd can move (this one was started by hand)", true};
  if (!task.spec.stdin_path.empty())
    return {"it reads prun's standard input (prun --stdin none lets rank 0 move)", true};
  if (task.restoring) return {"it is arriving here"};
  if (task.state != TaskState::kEnrolled && task.from_host == 0)
    return {"it has not called pvm_mytid yet"};
  if (task.move_id != 0) return {"it is moving already"};
  if (task.awaiting_siblings) return {"its spawn is not complete yet"};
  if (task.exited) return {"it has exited"};
  return {};
}

std::string MoveSource::ImageAddr(int dest) const {
  std::string addr = cx_.hosts.at(dest).addr;
  if (addr.empty()) addr = cx_.cfg.master_ip;
  if (addr.empty()) addr = "127.0.0.1";
  return addr;
}

void MoveSource::FillOffer(const Task& task, uint64_t id, ctl::MigrateOffer* o) const {
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
  o->set_age_ns(cx_.now_ns - task.spawned_ns);
  o->set_ready(cx_.samples.Get(task.tid.raw()).runnable);
  o->set_wait_area(task.wait.addr);
  o->set_wait_area_size(static_cast<uint32_t>(task.wait.size));
}

void MoveSource::StartMove(Tid t, int dest, Tid asker, uint64_t rid, MoveOrigin origin,
                           const std::string& reason) {
  Task& task = cx_.tasks[t];
  const std::string& dest_name = cx_.hosts.at(dest).name;
  if (dest == cx_.host.value) {
    cx_.AnswerAsker(asker, rid, cx_.host_tid().raw(),
                    fmt::format("{} is on {} already", t.str(), dest_name));
    return;
  }
  const auto [why, lasting] = WhyCannotMove(task);
  if (!why.empty()) {
    cx_.AnswerAsker(asker, rid, PvmCode(Err::kDenied),
                    fmt::format("{} cannot move: {}", t.str(), why));
    if (origin == MoveOrigin::kBalancer) {
      // A lasting reason pins the task: the balancer will not ask again. A
      // passing one (its spawn not complete yet, a move under way) only
      // fails this order. Pinned for those, a task left on a slow host at
      // start stayed there to the end (E2, N = 40: 9.3 s against 7.3 s).
      if (lasting) task.pinned_why = why;
      Move refused;
      refused.tid = t;
      refused.dest = dest;
      refused.origin = origin;
      refused.requested_ns = cx_.now_ns;
      ReportFailure(refused, PvmCode(Err::kDenied), why);
    }
    return;
  }
  const uint64_t id = (uint64_t(uint32_t(cx_.host.value)) << 40) | next_move_++;
  Move& mv = moves_[id];
  mv.id = id;
  mv.tid = t;
  mv.dest = dest;
  mv.asker = asker;
  mv.asker_rid = rid;
  mv.origin = origin;
  mv.reason = reason;
  mv.requested_ns = cx_.now_ns;
  mv.requested_wall_ns = cx_.env->WallNs();
  mv.admin_messages = 1;  // the offer
  task.move_id = id;

  ctl::Envelope e = NewEnvelope();
  FillOffer(task, id, e.mutable_migrate_offer());
  e.mutable_migrate_offer()->set_image_addr(ImageAddr(dest));
  cx_.env->Info(fmt::format("moving {} to {} (move {:x})", t.str(), dest_name, id));
  cx_.SendControlTo(Tid::DaemonOf(HostIndex{dest}), std::move(e));
}

void MoveSource::FinishMove(uint64_t id, int code, const std::string& detail) {
  auto it = moves_.find(id);
  if (it == moves_.end()) return;
  Move mv = it->second;
  moves_.erase(it);
  if (auto t = cx_.tasks.find(mv.tid); t != cx_.tasks.end() && t->second.move_id == id)
    t->second.move_id = 0;
  if (code < 0) {
    cx_.env->Log(fmt::format("move {:x} of {}: {}", id, mv.tid.str(), detail));
    ReportFailure(mv, code, detail);
  }
  cx_.AnswerAsker(mv.asker, mv.asker_rid, code, detail);
}

void MoveSource::ReportFailure(const Move& mv, int code, const std::string& why) {
  ctl::Envelope e = NewEnvelope();
  auto* o = e.mutable_move_outcome();
  o->set_tid(mv.tid.raw());
  o->set_id(mv.id);
  o->set_from(cx_.host.value);
  o->set_to(mv.dest);
  o->set_code(code);
  o->set_why(why);
  o->set_elapsed_ns(cx_.now_ns - mv.requested_ns);
  o->set_by_balancer(mv.origin == MoveOrigin::kBalancer);
  const auto task = cx_.tasks.find(mv.tid);
  o->set_pinned(task != cx_.tasks.end() && !task->second.pinned_why.empty());
  if (task != cx_.tasks.end() && task->second.event_sink != 0)
    cx_.Trace(task->second.event_sink, nlohmann::json{{"ev", "move-failed"},
                                                      {"tid", mv.tid.str()},
                                                      {"id", fmt::format("{:x}", mv.id)},
                                                      {"from", cx_.cfg.hostname},
                                                      {"to_host", mv.dest},
                                                      {"code", code},
                                                      {"why", why},
                                                      {"elapsed_ms", o->elapsed_ns() / 1e6},
                                                      {"ts", cx_.env->WallNs()}}
                                           .dump());
  if (cx_.cfg.member) {
    cx_.SendControlTo(Tid::DaemonOf(HostIndex{1}), std::move(e));
  } else {
    cx_.load.OnMoveFailed(mv.tid.raw(), mv.dest, o->pinned(), cx_.now_ns);
  }
}

void MoveSource::OnAccept(const ctl::MigrateAccept& a) {
  auto it = moves_.find(a.id());
  if (it == moves_.end()) {
    if (a.code() == 0) {  // we gave up meanwhile: let it drop the restore
      ctl::Envelope e = NewEnvelope();
      e.mutable_migrate_abort()->set_id(a.id());
      e.mutable_migrate_abort()->set_tid(a.tid());
      e.mutable_migrate_abort()->set_why("the source gave up waiting");
      cx_.SendControlTo(Tid::DaemonOf(HostIndex{static_cast<int>(a.id() >> 40)}), std::move(e));
    }
    return;
  }
  Move& mv = it->second;
  ++mv.admin_messages;
  const std::string dest_name = cx_.hosts.contains(mv.dest) ? cx_.hosts.at(mv.dest).name : "?";
  if (!AdvanceMove(mv, a.code() < 0 ? MoveEvent::kRefused : MoveEvent::kAccepted, *cx_.env)) return;
  if (a.code() < 0) {
    FinishMove(mv.id, a.code(),
               fmt::format("{} cannot move to {}: {}", mv.tid.str(), dest_name, a.detail()));
    return;
  }
  auto t = cx_.tasks.find(mv.tid);
  auto abort = [&](const std::string& why, MoveEvent event) {
    AdvanceMove(mv, event, *cx_.env);
    ctl::Envelope e = NewEnvelope();
    e.mutable_migrate_abort()->set_id(mv.id);
    e.mutable_migrate_abort()->set_tid(mv.tid.raw());
    e.mutable_migrate_abort()->set_why(why);
    cx_.SendControlTo(Tid::DaemonOf(HostIndex{mv.dest}), std::move(e));
    FinishMove(mv.id, PvmCode(Err::kSysErr), fmt::format("{} cannot move: {}", mv.tid.str(), why));
  };
  if (t == cx_.tasks.end() || t->second.exited)
    return abort("it ended before it could move", MoveEvent::kTaskEnded);
  if (!cx_.hosts.contains(mv.dest))
    return abort("its destination left the virtual machine", MoveEvent::kDestinationDied);
  const std::string addr = ImageAddr(mv.dest);
  mv.accepted_ns = cx_.now_ns;
  cx_.env->Debug(fmt::format("move {:x}: accepted; asking {} (pid {}) to stop", mv.id, mv.tid.str(),
                             t->second.pid));
  cx_.env->FaultPoint("accept", t->second.pid);
  const Task& task = t->second;
  auto st = cx_.env->BeginMove(MoveAsk{mv.tid, task.pid, addr, a.port(), a.token(), task.wait});
  if (!st) return abort(st.error(), MoveEvent::kTaskFailed);
}

void MoveSource::OnMoveFrozen(Tid t) {
  auto task = cx_.tasks.find(t);
  if (task == cx_.tasks.end()) return;
  auto it = moves_.find(task->second.move_id);
  if (it == moves_.end()) return;
  if (!AdvanceMove(it->second, MoveEvent::kFrozen, *cx_.env)) return;
  cx_.env->Debug(fmt::format("move {:x}: {} stopped and handed over", it->first, t.str()));
  it->second.frozen_ns = cx_.now_ns;
  it->second.admin_messages += 2;  // the handover and the answer to it
}

void MoveSource::OnMoveFailed(Tid t, const std::string& why, bool pinned, MoveEvent event) {
  auto task = cx_.tasks.find(t);
  if (task == cx_.tasks.end()) return;
  auto it = moves_.find(task->second.move_id);
  if (it == moves_.end() || !AdvanceMove(it->second, event, *cx_.env)) return;
  ctl::Envelope e = NewEnvelope();
  e.mutable_migrate_abort()->set_id(it->first);
  e.mutable_migrate_abort()->set_tid(t.raw());
  e.mutable_migrate_abort()->set_why(why);
  cx_.SendControlTo(Tid::DaemonOf(HostIndex{it->second.dest}), std::move(e));
  if (pinned) task->second.pinned_why = why;
  FinishMove(it->first, PvmCode(Err::kSysErr), fmt::format("{} cannot move: {}", t.str(), why));
}

void MoveSource::FillTaskMoved(Tid t, const Move& mv, const MoveTimes& times, ctl::TaskMoved* m) {
  m->set_tid(t.raw());
  m->set_host(mv.dest);
  m->set_id(mv.id);
  m->set_from(cx_.host.value);
  m->set_bytes(times.bytes);
  m->set_blackout_ns(times.restored_ns - times.freeze_ns);
  // What it asked to be told goes with it: its new host watches from now on
  // (and this one may not live as long as the task).
  for (const NotifyReg& r : cx_.notify.TakeWatcher(t)) {
    auto* n = m->add_notifies();
    n->set_what(r.what);
    n->set_tag(r.tag);
    n->set_ctx(r.ctx);
    n->set_target(r.target);
    n->set_count(r.count);
  }
}

bool MoveSource::MayCommit(Tid t) const {
  auto task = cx_.tasks.find(t);
  if (task == cx_.tasks.end()) return false;
  auto it = moves_.find(task->second.move_id);
  return it != moves_.end() && it->second.state == MoveState::kFrozen &&
         cx_.hosts.contains(it->second.dest);
}

ConnId MoveSource::OnMoveCommitted(Tid t, const MoveTimes& times) {
  auto task = cx_.tasks.find(t);
  if (task == cx_.tasks.end()) return 0;
  auto it = moves_.find(task->second.move_id);
  if (it == moves_.end()) return 0;
  Move& mv = it->second;
  if (!AdvanceMove(mv, MoveEvent::kRestored, *cx_.env)) return 0;
  cx_.asks.Forget(t);      // it leaves: what it waits for is answered where it goes
  mv.admin_messages += 2;  // "restored", and the commit to the registry
  cx_.where.Set(t.raw(), mv.dest);
  ctl::Envelope e = NewEnvelope();
  auto* m = e.mutable_task_moved();
  FillTaskMoved(t, mv, times, m);
  if (cx_.cfg.member) {
    cx_.SendControlTo(Tid::DaemonOf(HostIndex{1}), std::move(e));
  } else {
    cx_.events->Committed(*m);
  }
  const ConnId c = task->second.conn;
  if (c != 0) {
    cx_.DropWaitersOf(c);
    cx_.conns.erase(c);
  }
  // Frames held for it (a restored copy that had not enrolled here) follow it.
  std::deque<Frame> held = std::move(task->second.held);
  // Its mailbox entries, group places and others' notify requests about it
  // stay: they name it by tid, and what they send it follows it.
  mv.admin_messages += 3;  // "exit" to the old process; the copy's enrolment and its answer
  const std::string dest_name = cx_.hosts.contains(mv.dest) ? cx_.hosts.at(mv.dest).name : "?";
  const double blackout = (times.restored_ns - times.freeze_ns) / 1e6;
  Forwarding fw;
  fw.move_id = mv.id;
  fw.event_sink = task->second.event_sink;
  fw.move = mv;
  fw.times = times;
  fw.to = dest_name;
  fw.commit_wall_ns = cx_.env->WallNs();
  fw.commit_ns = cx_.now_ns;
  forwarder_.Begin(t, std::move(fw));
  cx_.tasks.erase(task);
  for (auto& f : held) forwarder_.Reroute(t, std::move(f));
  FinishMove(mv.id, Tid::DaemonOf(HostIndex{mv.dest}).raw(),
             fmt::format("{} moved to {} ({} bytes, stopped {:.1f} ms)", t.str(), dest_name,
                         times.bytes, blackout));
  return c;
}

void MoveSource::CheckMoveTimeouts() {
  struct Late {
    Tid tid;
    std::string why;
    MoveEvent event;
  };
  std::vector<Late> failed;
  for (const auto& [id, mv] : moves_) {
    if (mv.state == MoveState::kOffered && cx_.now_ns - mv.requested_ns > kOfferTimeoutNs)
      failed.push_back(
          {mv.tid, "no answer from the destination host within 10 s", MoveEvent::kOfferTimeout});
    else if (mv.state == MoveState::kAccepted && cx_.now_ns - mv.accepted_ns > kFreezeTimeoutNs)
      failed.push_back({mv.tid, "it did not stop within 30 s (blocked inside a library call?)",
                        MoveEvent::kFreezeTimeout});
  }
  for (const auto& f : failed) {
    cx_.env->CancelMove(f.tid);
    OnMoveFailed(f.tid, f.why, false, f.event);
  }
}

void MoveSource::MaybeTestMove(const Task& task) {
  if (cx_.cfg.test_moves <= task.moves || !task.spawned || task.is_tool || task.restoring ||
      task.exited || task.state != TaskState::kEnrolled || task.move_id != 0 ||
      cx_.hosts.size() < 2)
    return;
  // The test driver: on to the next host, while the task runs on.
  auto next = cx_.hosts.upper_bound(cx_.host.value);
  if (next == cx_.hosts.end()) next = cx_.hosts.begin();
  StartMove(task.tid, next->first, Tid(), 0, MoveOrigin::kTest);
}

void MoveSource::ExpectMoveAnswer(Tid who, uint64_t rid, const ctl::MigrateRequest& m) {
  // Only a request that leaves this host: here, this daemon answers itself.
  const Tid subject(m.tid());
  if (!cx_.LocalTask(who) || cx_.LocalTask(subject) || !subject.is_task()) return;
  cx_.asks.Expect({who, rid, subject, cx_.HostOf(subject), cx_.now_ns + kMoveAnswerNs});
}

void MoveSource::HostGone(int index) {
  // Moves to it that have not frozen their task yet fail now.
  std::vector<Tid> failed;
  for (const auto& [id, mv] : moves_)
    if (mv.dest == index && mv.state != MoveState::kFrozen) failed.push_back(mv.tid);
  for (Tid t : failed) {
    cx_.env->CancelMove(t);
    OnMoveFailed(t, "the destination host died", false, MoveEvent::kDestinationDied);
  }
}

void MoveSource::TaskEnded(Tid t) {
  auto task = cx_.tasks.find(t);
  if (task == cx_.tasks.end()) return;
  if (auto mv = moves_.find(task->second.move_id);
      mv != moves_.end() && mv->second.state != MoveState::kFrozen) {
    cx_.env->CancelMove(t);  // it ended before it stopped for the move
    OnMoveFailed(t, "it ended before it could move", false, MoveEvent::kTaskEnded);
  }
}

}  // namespace mpvm
