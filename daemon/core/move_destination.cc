// move_destination.cc — a move at its destination, and the registry's side
// of a commit (docs/design/migration.md).
#include "core/move_destination.h"

#include <fmt/format.h>
#include <signal.h>

#include <algorithm>

#include "mpvm/control.h"

namespace mpvm {
namespace {

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

void MoveDestination::OnOffer(const FrameHeader& h, const ctl::MigrateOffer& o) {
  cx_.env->FaultPoint("offer", 0);
  const Tid t(o.tid()), src(h.src);
  auto refuse = [&](Err code, const std::string& why) {
    Answer({src, o.id(), 0, ""}, t, PvmCode(code), why);
  };
  if (cx_.halting) return refuse(Err::kSysErr, "the host is halting");
  if (cx_.tasks.contains(t)) return refuse(Err::kExists, "it has a task with that tid already");
  if (o.path().empty() || cx_.env->Resolve(o.path(), "", "/").empty())
    return refuse(Err::kNoFile, fmt::format("{} is not an executable file there", o.path()));
  SpawnSpec spec;
  spec.tid = t;
  spec.path = o.path();
  spec.argv.assign(o.argv().begin(), o.argv().end());
  std::vector<std::string> env(o.env().begin(), o.env().end());
  spec.env = WithVar(env, "MPVM_RUNDIR", cx_.cfg.rundir);
  spec.cwd = o.cwd();
  const std::string token = cx_.env->RandomBytes(32);  // the image's key
  auto rs = cx_.env->SpawnRestore(spec, token, o.image_addr());
  if (!rs)
    return refuse(rs.error(), fmt::format("cannot start {} there: {}", o.path(),
                                          PvmErrorText(PvmCode(rs.error()))));
  Task task = RestoringTask(o, spec, rs->pid, src.host().value);
  const Task::PendingAccept accept{src, o.id(), rs->port, token};
  if (rs->says_when_ready) task.pending_accept = accept;
  cx_.tasks.Add(std::move(task));
  // Its readiness goes on from where it was: started afresh (as ready), a
  // task that mostly waits looked busy here for seconds, and the balancer
  // sent it back.
  cx_.samples.Seed(t.raw(), o.ready(), cx_.now_ns);
  if (!cx_.cfg.member)
    cx_.where.BeginTransit(t.raw(), src.host().value, cx_.host.value, cx_.now_ns);
  cx_.env->Debug(fmt::format("move {:x}: restoring {} here from {} (pid {})", o.id(), t.str(),
                             src.host().value, rs->pid));
  if (!rs->says_when_ready) Answer(accept, t, 0, "");
}

void MoveDestination::Answer(const Task::PendingAccept& to, Tid t, int code,
                             const std::string& detail) {
  ctl::Envelope e = NewEnvelope();
  auto* a = e.mutable_migrate_accept();
  a->set_id(to.id);
  a->set_tid(t.raw());
  a->set_code(code);
  if (code == 0) {
    a->set_port(to.port);
    a->set_token(to.token);
  } else {
    a->set_detail(detail);
  }
  cx_.SendControlTo(to.to, std::move(e));
}

void MoveDestination::OnRestoreReady(Tid t) {
  auto it = cx_.tasks.find(t);
  if (it == cx_.tasks.end() || !it->second.restoring || !it->second.pending_accept) return;
  const Task::PendingAccept accept = std::move(*it->second.pending_accept);
  it->second.pending_accept.reset();
  Answer(accept, t, 0, "");
}

void MoveDestination::OnRestoreEnded(Tid t) {
  auto it = cx_.tasks.find(t);
  if (it == cx_.tasks.end() || !it->second.restoring || !it->second.pending_accept) return;
  Task& task = it->second;
  const Task::PendingAccept accept = std::move(*task.pending_accept);
  task.pending_accept.reset();
  task.move_id = 0;  // nothing to wait for: MaybeFinish forgets the copy
  Answer(accept, t, PvmCode(Err::kSysErr),
         fmt::format("the restore process ended before it was ready (exit code {}, signal {})",
                     task.exit_code, task.term_signal));
}

Task MoveDestination::RestoringTask(const ctl::MigrateOffer& o, const SpawnSpec& spec, int pid,
                                    int from) const {
  Task task;
  task.tid = Tid(o.tid());
  task.pid = pid;
  task.spawned = true;
  task.ptid = o.ptid();
  task.a_out = o.a_out();
  TakeOutputSettings(o, &task);
  task.spawned_ns = cx_.now_ns - o.age_ns();
  task.wait = WaitArea{o.wait_area(), o.wait_area_size()};
  task.report_to = o.report_to();
  for (int s : o.siblings()) task.siblings.push_back(Tid(s));
  task.open_streams = 2;
  task.spec = spec;
  task.restoring = true;
  task.moves = o.moves() + 1;
  task.arrived_by = o.id();
  task.move_id = o.id();
  task.from_host = from;
  task.restore_deadline_ns = cx_.now_ns + kRestoreTimeoutNs;
  return task;
}

void MoveDestination::OnTaskMoved(const ctl::TaskMoved& m) {
  const Tid t(m.tid());
  cx_.env->Debug(fmt::format("move {:x}: {} now runs on host {}", m.id(), t.str(), m.host()));
  if (!cx_.cfg.member) {  // the registry
    if (m.host() != cx_.host.value && !cx_.hosts.contains(m.host())) {
      // Committed to a host that has left meanwhile: the task is lost with
      // it, and said so (its watchers and spawner hear it), never silently.
      cx_.env->Log(
          fmt::format("{} was committed to host {}, which has left the virtual machine: "
                      "the task is lost",
                      t.str(), m.host()));
      cx_.where.Forget(m.tid());
      cx_.events->TaskLost(m.tid());
      cx_.BroadcastTaskGone(m.tid(), 0);
      return;
    }
    if (m.bytes() > 0) cx_.load.OnMoveDone(m.bytes(), m.blackout_ns());
    cx_.load.OnMoved(m.tid(), m.host(), cx_.now_ns);
    cx_.where.Set(m.tid(), m.host());
    cx_.where.Settle(m.tid());
    if (m.host() != cx_.host.value) {
      ctl::Envelope e = NewEnvelope();
      *e.mutable_task_moved() = m;
      cx_.SendControlTo(Tid::DaemonOf(HostIndex{m.host()}), std::move(e));
      return;
    }
  }
  if (m.host() != cx_.host.value) return;
  cx_.where.Forget(m.tid());
  for (const auto& n : m.notifies())
    cx_.AddNotify(NotifyReg{t, n.what(), n.tag(), n.ctx(), n.target(), n.count()});
  Arrived(t);
}

void MoveDestination::Arrived(Tid t) {
  auto it = cx_.tasks.find(t);
  if (it == cx_.tasks.end() || !it->second.restoring) {
    cx_.env->Debug(fmt::format("{} arrived, but no copy of it is restoring here", t.str()));
    return;
  }
  Task& task = it->second;
  cx_.env->Debug(fmt::format("{} arrived (pid {}{}, {} bytes of output held)", t.str(), task.pid,
                             task.exited ? ", ended already" : "", task.held_output.size()));
  task.restoring = false;
  task.moved_ns = cx_.now_ns;
  cx_.where.Settle(t.raw());
  task.move_id = 0;
  // Its output waited for this: what it printed before the move is ahead.
  std::string held = std::move(task.held_output);
  if (!held.empty()) cx_.events->TaskOutput(t, held);
  if (task.exited) {
    cx_.events->MaybeFinish(t);
    return;
  }
  cx_.events->TaskReady(t);
}

void MoveDestination::ClaimArrival(Tid t) {
  // The source host died after the commit (the copy enrolled, so it was
  // committed, by the source or by the task itself): this host tells the
  // registry in its place.
  auto it = cx_.tasks.find(t);
  if (it == cx_.tasks.end() || !it->second.restoring || !it->second.committed) return;
  cx_.env->Log(
      fmt::format("{} arrived from a host that has died; this host registers it", t.str()));
  ctl::Envelope e = NewEnvelope();
  auto* m = e.mutable_task_moved();
  m->set_tid(t.raw());
  m->set_host(cx_.host.value);
  m->set_id(it->second.move_id);
  m->set_from(it->second.from_host);
  if (cx_.cfg.member) {
    cx_.where.Forget(t.raw());
    cx_.SendControlTo(Tid::DaemonOf(HostIndex{1}), std::move(e));
    Arrived(t);
  } else {
    OnTaskMoved(*m);
  }
}

void MoveDestination::NoteTransit(const Frame& f) {
  // Members' moves pass through the master: it notes which tasks are moving
  // between which hosts, with no message of its own, so that a source host
  // that dies mid-move does not make it report the task lost too soon.
  auto env = DecodeControl(f.payload);
  if (!env) return;
  if (env->has_migrate_offer()) {
    cx_.where.BeginTransit(env->migrate_offer().tid(), Tid(f.header.src).host().value,
                           Tid(f.header.dst).host().value, cx_.now_ns);
  } else if (env->has_migrate_abort()) {
    cx_.where.EndTransit(env->migrate_abort().tid());
  } else if (env->has_migrate_accept() && env->migrate_accept().code() < 0) {
    cx_.where.EndTransit(env->migrate_accept().tid());
  }
}

void MoveDestination::CheckLimbo() {
  for (int t : cx_.where.Expired(cx_.now_ns)) {
    cx_.env->Log(
        fmt::format("{} was moving away from a host that died, and did not arrive", Tid(t).str()));
    cx_.events->TaskLost(t);
  }
}

void MoveDestination::OnAbort(const ctl::MigrateAbort& a) {
  auto t = cx_.tasks.find(Tid(a.tid()));
  if (t == cx_.tasks.end() || !t->second.restoring || t->second.move_id != a.id()) return;
  cx_.env->Log(fmt::format("move {:x} of {} abandoned: {}", a.id(), t->first.str(), a.why()));
  t->second.move_id = 0;  // its exit is forgotten quietly (MaybeFinish)
  if (t->second.exited)
    cx_.events->MaybeFinish(t->first);  // it ended already (the image stopped short)
  else
    cx_.env->Signal(t->second.pid, SIGKILL);
}

void MoveDestination::CheckRestores() {
  // A restore the source never committed nor aborted.
  std::vector<Tid> stale;
  for (auto& [tid, task] : cx_.tasks)
    if (task.restoring && !task.committed && cx_.now_ns > task.restore_deadline_ns) {
      if (!task.exited) cx_.env->Signal(task.pid, SIGKILL);
      task.move_id = 0;
      if (task.exited) stale.push_back(tid);
    }
  for (Tid t : stale) cx_.events->MaybeFinish(t);
}

void MoveDestination::HostGone(int index) {
  // Copies that arrived here from it and enrolled were committed: this host
  // registers them now, so they are not counted among its lost tasks.
  std::vector<Tid> arrived;
  for (const auto& [tid, task] : cx_.tasks)
    if (task.restoring && task.from_host == index) arrived.push_back(tid);
  for (Tid t : arrived) ClaimArrival(t);
  // A copy that has not enrolled: if the task commits it (the source died
  // after the image was restored), it enrols in moments; if not, it waits
  // for a commit that will never come.
  for (auto& [tid, task] : cx_.tasks)
    if (task.restoring && task.from_host == index && !task.committed)
      task.restore_deadline_ns = std::min(task.restore_deadline_ns, cx_.now_ns + kOrphanRestoreNs);
}

}  // namespace mpvm
