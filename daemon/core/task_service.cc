#include "core/task_service.h"

#include <fmt/format.h>
#include <signal.h>

#include <nlohmann/json.hpp>

#include "mpvm/control.h"

namespace mpvm {

void TaskService::DoEnrol(ConnId c, const ctl::Envelope& env) {
  const auto& r = env.enrol();
  Conn& conn = cx_.conns[c];
  if (conn.tid.raw() != 0) {
    cx_.ReplyStatus(env.rid() == 0 ? 0 : c, env.rid(), PvmCode(Err::kAlready), "already enrolled");
    return;
  }
  if (cx_.halting) {
    cx_.ReplyStatus(c, env.rid(), PvmCode(Err::kSysErr), "the virtual machine is halting");
    return;
  }
  Task* task = nullptr;
  auto it = cx_.tasks.find(Tid(r.tid()));
  if (r.tid() != 0 && it != cx_.tasks.end() && it->second.state == TaskState::kSpawned &&
      it->second.pid == r.pid()) {
    task = &it->second;
  } else {
    Tid t = cx_.tasks.AllocTid(cx_.host);
    if (t.raw() == 0) {
      cx_.ReplyStatus(c, env.rid(), PvmCode(Err::kOutOfRes), "no free task ids");
      return;
    }
    Task nt;
    nt.tid = t;
    nt.pid = r.pid();
    nt.a_out = r.name();
    task = &cx_.tasks.Add(std::move(nt));
  }
  task->state = TaskState::kEnrolled;
  task->conn = c;
  task->is_tool = r.is_tool();
  conn.tid = task->tid;
  if (r.claim_owner() && cx_.cfg.embedded && !owner_) {
    owner_ = c;
    conn.owner = true;
  }
  if (task->restoring) {
    cx_.env->Debug(fmt::format("restored copy of {} enrolled (pid {})", task->tid.str(), r.pid()));
    task->committed = true;
    if (!cx_.hosts.contains(task->from_host)) cx_.events->ClaimArrival(task->tid);
  }
  task->working = r.working();
  if (r.wait_area_size() != 0) task->wait = WaitArea{r.wait_area(), r.wait_area_size()};
  task->worked = task->worked || r.working() || r.restored();
  cx_.load_changed = true;
  if (r.working()) cx_.PublishWork();
  if (r.restored() && task->event_sink != 0)  // a moved task runs again, here
    cx_.Trace(task->event_sink, nlohmann::json{{"ev", "resumed"},
                                               {"tid", task->tid.str()},
                                               {"id", fmt::format("{:x}", task->arrived_by)},
                                               {"host", cx_.cfg.hostname},
                                               {"ts", cx_.env->WallNs()}}
                                    .dump());
  if (task->awaiting_siblings) {  // its spawn spans hosts: answer once all are known
    task->enrol_conn = c;
    task->enrol_rid = env.rid();
    return;
  }
  cx_.SendEnrolReply(*task, c, env.rid());
  cx_.events->TaskReady(task->tid);
}

void TaskService::OnOutput(Tid tid, std::string_view bytes, bool is_stderr) {
  auto it = cx_.tasks.find(tid);
  if (it == cx_.tasks.end()) return;
  Task& t = it->second;
  if (t.restoring) {  // a restored copy before the commit: after what it printed before
    t.held_output.append(bytes);
    return;
  }
  if (t.out_tid != 0 && cx_.SinkAlive(t.out_tid)) {
    cx_.SendOutputRecord(t, static_cast<int>(bytes.size()), bytes, is_stderr);
    return;
  }
  t.partial_log.append(bytes);
  size_t nl;
  while ((nl = t.partial_log.find('\n')) != std::string::npos) {
    cx_.env->LogOutput(tid, std::string_view(t.partial_log).substr(0, nl));
    t.partial_log.erase(0, nl + 1);
  }
}

void TaskService::OnOutputClosed(Tid tid) {
  auto it = cx_.tasks.find(tid);
  if (it == cx_.tasks.end()) return;
  if (--it->second.open_streams <= 0) MaybeFinish(tid);
}

void TaskService::NoteExit(Tid tid, int exit_code, int term_signal) {
  auto it = cx_.tasks.find(tid);
  if (it == cx_.tasks.end()) return;
  cx_.env->Debug(fmt::format("{} (pid {}) ended: exit code {}, signal {}", tid.str(),
                             it->second.pid, exit_code, term_signal));
  it->second.exited = true;
  it->second.exit_code = exit_code;
  it->second.term_signal = term_signal;
}

void TaskService::MaybeFinish(Tid tid) {
  auto it = cx_.tasks.find(tid);
  if (it == cx_.tasks.end()) return;
  Task& t = it->second;
  if (!t.exited || t.open_streams > 0) return;
  if (t.restoring) {
    cx_.env->Debug(fmt::format("restoring {} ended (move {:x})", tid.str(), t.move_id));
    if (t.move_id != 0) return;  // the commit or the abort will tell
    // A restore that was refused or abandoned: the task still runs at its source.
    if (!t.held_output.empty())
      cx_.env->Log(fmt::format("restore process of {} said: {}", tid.str(), t.held_output));
    cx_.tasks.erase(it);
    return;
  }
  if (!t.partial_log.empty()) cx_.env->LogOutput(tid, t.partial_log);
  if (t.out_tid != 0) cx_.SendOutputRecord(t, 0, {});
  if (t.event_sink != 0)
    cx_.Trace(t.event_sink, nlohmann::json{{"ev", "end"},
                                           {"tid", tid.str()},
                                           {"host", cx_.cfg.hostname},
                                           {"code", t.exit_code},
                                           {"signal", t.term_signal},
                                           {"ts", cx_.env->WallNs()}}
                                .dump());
  TaskLeftVm(t);
  if (t.report_to != 0) {
    ctl::Envelope e = NewEnvelope();
    auto* te = e.mutable_task_ended();
    te->set_tid(tid.raw());
    te->set_exit_code(t.exit_code);
    te->set_term_signal(t.term_signal);
    cx_.SendControlTo(Tid(t.report_to), std::move(e));
  }
  cx_.env->RemoveTaskSocket(tid);
  if (t.conn != 0) {
    auto c = cx_.conns.find(t.conn);
    if (c != cx_.conns.end()) c->second.tid = Tid();
  }
  cx_.tasks.erase(it);
}

void TaskService::TaskLeftVm(Task& t) {
  if (t.exit_notified) return;
  t.exit_notified = true;
  t.state = TaskState::kLeft;
  cx_.load_changed = true;
  t.held.clear();
  const int tid = t.tid.raw();
  cx_.ForgetOwner(tid);
  cx_.notify.DropWatcher(t.tid);  // notifications it asked for die with it
  cx_.events->TaskLeft(tid);
  cx_.asks.Forget(t.tid);
  cx_.FireNotify(kNotifyTaskExit, tid);
  cx_.BroadcastTaskGone(tid, 0);
}

void TaskService::DoSetOutput(ConnId c, Tid who, const ctl::Envelope& env) {
  const uint64_t rid = env.rid();
  auto t = cx_.tasks.find(who);
  if (t == cx_.tasks.end()) {
    cx_.ReplyStatus(c, rid, PvmCode(Err::kNoTask));
    return;
  }
  Task& task = t->second;
  const int to = env.set_output().tid();
  if (to != 0 && !cx_.tasks.contains(Tid(to))) {
    cx_.ReplyStatus(c, rid, PvmCode(Err::kNoTask), "no such task to send output to");
    return;
  }
  if (task.out_tid != 0 && task.out_tid != to) cx_.SendOutputRecord(task, 0, {});  // old sink: EOF
  const bool fresh = to != 0 && to != task.out_tid;
  task.out_tid = to;
  task.out_code = env.set_output().code();
  task.out_ctx = env.set_output().ctx();
  if (fresh) cx_.SendOutputRecord(task, -1, {});  // new sink: BEGIN
  cx_.ReplyStatus(c, rid, 0);
}

void TaskService::DoSignal(ConnId c, ctl::Envelope&& env) {
  const uint64_t rid = env.rid();
  const bool kill = env.has_kill();
  const Tid target(kill ? env.kill().tid() : env.signal().tid());
  if (!cx_.LocalTask(target) && cx_.HostOf(target) != cx_.host.value) {  // its host carries it out
    if (!cx_.hosts.contains(cx_.HostOf(target))) {
      cx_.ReplyStatus(c, rid, PvmCode(Err::kNoTask));
      return;
    }
    cx_.SendControlTo(Tid::DaemonOf(HostIndex{cx_.HostOf(target)}), std::move(env));
    cx_.ReplyStatus(c, rid, 0);
    return;
  }
  auto t = cx_.tasks.find(target);
  if (t == cx_.tasks.end() || t->second.exited || t->second.pid <= 0) {
    cx_.ReplyStatus(c, rid, PvmCode(Err::kNoTask));
    return;
  }
  cx_.env->Signal(t->second.pid, kill ? SIGTERM : env.signal().signum());
  cx_.ReplyStatus(c, rid, 0);
}

void TaskService::OnPeerSignal(ctl::Envelope&& env) {
  // kill / signal for a task here
  const Tid target(env.has_kill() ? env.kill().tid() : env.signal().tid());
  auto t = cx_.tasks.find(target);
  if (t == cx_.tasks.end() && cx_.where.contains(target.raw())) {  // it moved on: follow it
    const int at = cx_.cfg.member ? 1 : *cx_.where.At(target.raw());
    if (at != cx_.host.value) cx_.SendControlTo(Tid::DaemonOf(HostIndex{at}), std::move(env));
    return;
  }
  if (t == cx_.tasks.end() || t->second.exited || t->second.pid <= 0) return;
  cx_.env->Signal(t->second.pid, env.has_kill() ? SIGTERM : env.signal().signum());
}

void TaskService::OnTaskRequest(ConnId c, Tid who, const ctl::Envelope& env) {
  const uint64_t rid = env.rid();
  if (env.has_pstat()) {
    auto t = cx_.tasks.find(Tid(env.pstat().tid()));
    bool alive = t != cx_.tasks.end() && t->second.state != TaskState::kLeft && !t->second.exited;
    cx_.ReplyStatus(c, rid, alive ? 0 : PvmCode(Err::kNoTask));
  } else if (env.has_link_port()) {
    if (auto t = cx_.tasks.find(who); t != cx_.tasks.end())
      t->second.link_port = env.link_port().port();
  } else if (env.has_exit()) {
    auto t = cx_.tasks.find(who);
    if (t != cx_.tasks.end()) TaskLeftVm(t->second);
    cx_.ReplyStatus(c, rid, 0);
  } else if (env.has_work()) {
    if (auto t = cx_.tasks.find(who); t != cx_.tasks.end()) {
      t->second.working = env.work().working();
      t->second.worked = true;
    }
    cx_.PublishWork();
  } else if (env.has_traffic()) {
    // From a task of this host only (a tool has no load to report).
    if (auto t = cx_.tasks.find(who); t != cx_.tasks.end() && !t->second.is_tool)
      cx_.traffic.Add(who.raw(), env.traffic(), cx_.now_ns);
  }
}

TaskService::Closed TaskService::OnConnClosed(ConnId c, const Conn& conn) {
  if (conn.owner) {
    cx_.env->Log("the embedded VM's owner disconnected; halting");
    return Closed::kOwner;
  }
  auto t = cx_.tasks.find(conn.tid);
  if (conn.tid.raw() == 0 || t == cx_.tasks.end() || t->second.conn != c) return Closed::kOther;
  t->second.conn = 0;
  TaskLeftVm(t->second);
  if (!t->second.spawned) {
    cx_.env->RemoveTaskSocket(conn.tid);
    cx_.tasks.erase(t);
  }
  return Closed::kTask;
}

void TaskService::KillAll() {
  for (const auto& [tid, t] : cx_.tasks)
    if (t.alive() && !t.is_tool) cx_.env->Signal(t.pid, SIGKILL);
}

void TaskService::SignalAllBut(Tid caller) {
  for (const auto& [tid, t] : cx_.tasks)
    if (t.alive() && !t.is_tool && tid != caller) cx_.env->Signal(t.pid, SIGTERM);
}

}  // namespace mpvm
