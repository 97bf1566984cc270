#include "core/spawner.h"

#include <fmt/format.h>
#include <signal.h>

#include <nlohmann/json.hpp>

#include "mpvm/control.h"

namespace mpvm {
namespace {

// pvm3.h values the daemon needs (the daemon does not include the C header).
constexpr int kTaskHost = 1, kTaskArch = 2, kTaskDebug = 4, kHostCompl = 32, kNoSpawnParent = 64;
constexpr int kMaxSpawn = 4096;

}  // namespace

Spawner::Spawner(CoreContext& cx) : cx_(cx) {
  placement_ = balancer::MakePlacementPolicy(cx_.cfg.placement);
  if (!placement_) placement_ = std::make_unique<balancer::RoundRobinPlacement>();
}

void Spawner::DoSpawn(ConnId c, Tid who, const ctl::Envelope& env) {
  ctl::SpawnRequest s = env.spawn();
  if (auto spawner = cx_.tasks.find(who); spawner != cx_.tasks.end()) {
    if (s.event_sink() == 0)
      s.set_event_sink(spawner->second.event_sink);  // a traced run's children are traced
    // Children that write to their parent's sink keep its stdout/stderr split.
    if (spawner->second.stderr_apart && s.output_tid() == spawner->second.out_tid)
      s.set_stderr_apart(true);
  }
  const uint64_t rid = env.rid();
  if (s.ntask() < 1 || s.ntask() > kMaxSpawn || s.file().empty()) {
    cx_.ReplyStatus(c, rid, PvmCode(Err::kBadParam),
                    fmt::format("ntask must be 1..{} and the file named", kMaxSpawn));
    return;
  }
  auto fail_all = [&](Err e, std::string why) {
    ctl::Envelope r = NewEnvelope();
    for (int i = 0; i < s.ntask(); ++i) r.mutable_spawn_reply()->add_tids(PvmCode(e));
    r.mutable_spawn_reply()->set_detail(std::move(why));
    cx_.Reply(c, rid, std::move(r));
  };
  auto order = SpawnCandidates(s);
  if (!order) return fail_all(Err::kNoHost, order.error());
  std::map<int, std::vector<int>> ranks_by_host;
  const auto placed = placement_->Place(cx_.LoadSnapshot(), *order, s.ntask());
  for (int i = 0; i < s.ntask(); ++i) ranks_by_host[placed[static_cast<size_t>(i)]].push_back(i);
  const bool spans = ranks_by_host.size() > 1 || !ranks_by_host.contains(cx_.host.value);
  std::vector<int> tids(static_cast<size_t>(s.ntask()), PvmCode(Err::kNoFile));
  if (auto here = ranks_by_host.find(cx_.host.value); here != ranks_by_host.end()) {
    if (cx_.env->Resolve(s.file(), s.path(), s.cwd()).empty() && !spans)
      return fail_all(Err::kNoFile, fmt::format("'{}' not found", s.file()));
    auto got = SpawnHere(s, who, here->second, spans);
    for (size_t k = 0; k < got.size(); ++k) tids[static_cast<size_t>(here->second[k])] = got[k];
  }
  const Tid job_of = s.end_with_spawner() && cx_.tasks.contains(who) ? who : Tid();
  if (!spans) {
    NoteJob(job_of, tids);
    ApplySiblings(tids);
    ctl::Envelope r = NewEnvelope();
    for (int t : tids) r.mutable_spawn_reply()->add_tids(t);
    cx_.Reply(c, rid, std::move(r));
    return;
  }
  SpawnElsewhere(PendingSpawn{c, rid, tids, {}, 0, job_of}, s, who, ranks_by_host);
}

mpvm::expected<std::vector<int>, std::string> Spawner::SpawnCandidates(
    const ctl::SpawnRequest& s) const {
  // Which hosts may run it: all of them (in turn, starting here), one named
  // host (PvmTaskHost), or all but one (PvmHostCompl).
  std::vector<int> order = {cx_.host.value};
  for (const auto& [index, h] : cx_.hosts)
    if (index != cx_.host.value) order.push_back(index);
  auto names = [&](int index) {
    const std::string& n = cx_.hosts.at(index).name;
    return s.where() == n ||
           (index == cx_.host.value &&
            (s.where() == "." || s.where() == "localhost" || s.where() == cx_.cfg.hostname));
  };
  if (s.flags() & kTaskHost) {
    std::vector<int> chosen;
    for (int index : order)
      if (names(index) != bool(s.flags() & kHostCompl)) chosen.push_back(index);
    if (chosen.empty())
      return mpvm::unexpected(fmt::format("no host '{}' in this virtual machine", s.where()));
    order = chosen;
  }
  if ((s.flags() & kTaskArch) && !s.where().empty() && s.where() != cx_.cfg.arch)
    return mpvm::unexpected(fmt::format("no host of architecture '{}'", s.where()));
  return order;
}

void Spawner::SpawnElsewhere(PendingSpawn ps, const ctl::SpawnRequest& s, Tid who,
                             const std::map<int, std::vector<int>>& ranks_by_host) {
  const uint64_t id = next_spawn_id_++;
  for (const auto& [index, ranks] : ranks_by_host) {
    if (index == cx_.host.value) continue;
    ctl::Envelope e = NewEnvelope();
    auto* rs = e.mutable_remote_spawn();
    *rs->mutable_request() = s;
    rs->set_spawner(who.raw());
    rs->set_spawn_id(id);
    for (int r : ranks) rs->add_ranks(r);
    cx_.SendControlTo(Tid::DaemonOf(HostIndex{index}), std::move(e));
    if (!cx_.cfg.member) cx_.load.OnPlaced(index, static_cast<int>(ranks.size()), cx_.now_ns);
    ps.ranks[index] = ranks;
    ++ps.outstanding;
  }
  ps.ranks[cx_.host.value];  // this host takes part too (siblings are applied here)
  spawns_[id] = std::move(ps);
}

Task Spawner::SpawnedTask(const ctl::SpawnRequest& s, Tid who, const SpawnSpec& spec, int pid,
                          bool await_siblings) const {
  Task task;
  task.tid = spec.tid;
  task.pid = pid;
  task.spawned = true;
  task.ptid = s.orphan()                     ? 0
              : (s.flags() & kNoSpawnParent) ? PvmCode(Err::kParentNotSet)
                                             : who.raw();
  task.a_out = s.file();
  TakeOutputSettings(s, &task);
  task.report_to = s.report_exit() ? who.raw() : 0;
  task.open_streams = 2;
  task.awaiting_siblings = await_siblings;
  task.spec = spec;
  task.spawned_ns = cx_.now_ns;
  return task;
}

std::vector<int> Spawner::SpawnHere(const ctl::SpawnRequest& s, Tid who,
                                    const std::vector<int>& ranks, bool await_siblings) {
  std::vector<int> out;
  const bool spawner_here = cx_.tasks.contains(who);  // local_env applies on its host only
  const std::string path = cx_.env->Resolve(s.file(), s.path(), s.cwd());
  if (path.empty()) return std::vector<int>(ranks.size(), PvmCode(Err::kNoFile));
  // PvmTaskDebug: run the program under $PVM_DEBUGGER (as PVM ran its
  // debugger script) when the daemon has one; otherwise start it normally.
  std::string debugger;
  if (s.flags() & kTaskDebug) {
    for (const auto& kv : cx_.cfg.base_env)
      if (kv.rfind("PVM_DEBUGGER=", 0) == 0)
        debugger = cx_.env->Resolve(kv.substr(13), "", s.cwd());
    if (debugger.empty())
      cx_.env->Log(
          fmt::format("PvmTaskDebug for {}: PVM_DEBUGGER is not set (or not found); "
                      "starting it without a debugger",
                      s.file()));
  }
  for (int rank : ranks) {
    Tid t = cx_.tasks.AllocTid(cx_.host);
    if (t.raw() == 0) {
      out.push_back(PvmCode(Err::kOutOfRes));
      continue;
    }
    SpawnSpec spec;
    spec.tid = t;
    spec.path = debugger.empty() ? path : debugger;
    if (!debugger.empty()) spec.argv.push_back(debugger);
    spec.argv.push_back(debugger.empty() ? s.file() : path);
    spec.argv.insert(spec.argv.end(), s.argv().begin(), s.argv().end());
    spec.env = ChildEnv(s, t, rank, spawner_here);
    spec.cwd = cx_.cfg.workdir.empty() ? s.cwd() : cx_.cfg.workdir;
    if (rank == 0 && spawner_here) spec.stdin_path = s.rank0_stdin();
    auto pid = cx_.env->Spawn(spec);
    if (!pid) {
      out.push_back(PvmCode(pid.error()));
      continue;
    }
    Task& task = cx_.tasks.Add(SpawnedTask(s, who, spec, *pid, await_siblings));
    if (s.output_tid() != 0) cx_.SendOutputRecord(task, -1, {});
    if (s.event_sink() != 0)
      cx_.Trace(s.event_sink(), nlohmann::json{{"ev", "start"},
                                               {"tid", t.str()},
                                               {"host", cx_.cfg.hostname},
                                               {"a_out", s.file()},
                                               {"ts", cx_.env->WallNs()}}
                                    .dump());
    out.push_back(t.raw());
  }
  return out;
}

void Spawner::ApplySiblings(const std::vector<int>& tids) {
  std::vector<Tid> sibs;
  for (int t : tids)
    if (t > 0) sibs.push_back(Tid(t));
  for (Tid t : sibs) {
    auto it = cx_.tasks.find(t);
    if (it == cx_.tasks.end()) continue;
    Task& task = it->second;
    task.siblings = sibs;
    task.awaiting_siblings = false;
    if (task.enrol_conn != 0) {
      cx_.SendEnrolReply(task, task.enrol_conn, task.enrol_rid);
      task.enrol_conn = 0;
    }
  }
}

void Spawner::FinishSpawn(uint64_t id) {
  auto it = spawns_.find(id);
  if (it == spawns_.end()) return;
  PendingSpawn ps = std::move(it->second);
  spawns_.erase(it);
  NoteJob(ps.job_of, ps.tids);
  for (const auto& [index, ranks] : ps.ranks) {
    if (index == cx_.host.value) {
      ApplySiblings(ps.tids);
      continue;
    }
    ctl::Envelope e = NewEnvelope();
    for (int t : ps.tids) e.mutable_spawn_siblings()->add_tids(t);
    cx_.SendControlTo(Tid::DaemonOf(HostIndex{index}), std::move(e));
  }
  if (!cx_.conns.contains(ps.conn)) return;
  ctl::Envelope r = NewEnvelope();
  for (int t : ps.tids) r.mutable_spawn_reply()->add_tids(t);
  cx_.Reply(ps.conn, ps.rid, std::move(r));
}

std::vector<std::string> Spawner::ChildEnv(const ctl::SpawnRequest& s, Tid tid, int rank,
                                           bool spawner_here) const {
  std::map<std::string, std::string> vars;
  auto put = [&](const std::string& kv) {
    auto eq = kv.find('=');
    if (eq == std::string::npos || eq == 0) return;
    vars[kv.substr(0, eq)] = kv.substr(eq + 1);
  };
  for (const auto& kv : cx_.cfg.base_env) put(kv);
  if (spawner_here)
    for (const auto& kv : s.local_env()) put(kv);
  for (const auto& kv : s.env()) put(kv);
  vars.erase("MPVM_RANK");
  vars.erase("MPVM_SIZE");
  vars["MPVM_TID"] = std::to_string(tid.raw());
  vars["MPVM_RUNDIR"] = cx_.cfg.rundir;
  vars["PVM_ARCH"] = cx_.cfg.arch;
  if (!cx_.cfg.libdir.empty()) {
    auto old = vars.find("LD_LIBRARY_PATH");
    vars["LD_LIBRARY_PATH"] =
        cx_.cfg.libdir +
        (old != vars.end() && !old->second.empty() ? ":" + old->second : std::string());
  }
  if (s.rank_env()) {
    vars["MPVM_RANK"] = std::to_string(rank);
    vars["MPVM_SIZE"] = std::to_string(s.ntask());
  }
  std::vector<std::string> out;
  out.reserve(vars.size());
  for (const auto& [k, v] : vars) out.push_back(k + "=" + v);
  return out;
}

void Spawner::OnRemoteSpawnReply(int from, const ctl::RemoteSpawnReply& rr) {
  auto it = spawns_.find(rr.spawn_id());
  if (it == spawns_.end() || !it->second.ranks.contains(from)) return;
  PendingSpawn& ps = it->second;
  const auto& ranks = ps.ranks[from];
  for (int k = 0; k < rr.tids_size() && k < static_cast<int>(ranks.size()); ++k) {
    ps.tids[static_cast<size_t>(ranks[static_cast<size_t>(k)])] = rr.tids(k);
    if (rr.tids(k) > 0)
      remote_children_[rr.tids(k)] = cx_.conns.contains(ps.conn) ? cx_.conns[ps.conn].tid.raw() : 0;
  }
  if (--ps.outstanding == 0) FinishSpawn(rr.spawn_id());
}

void Spawner::NoteJob(Tid spawner, const std::vector<int>& tids) {
  if (spawner.raw() == 0) return;
  auto& job = jobs_[spawner];
  for (int t : tids)
    if (t > 0) job.push_back(t);
}

void Spawner::ForgetJobTask(int tid) {
  for (auto it = jobs_.begin(); it != jobs_.end();) {
    std::erase(it->second, tid);
    it = it->second.empty() ? jobs_.erase(it) : std::next(it);
  }
}

void Spawner::EndJob(Tid spawner) {
  auto job = jobs_.find(spawner);
  if (job == jobs_.end()) return;
  const std::vector<int> tids = std::move(job->second);
  jobs_.erase(job);
  int ended = 0;
  for (int raw : tids) {
    const Tid t(raw);
    if (auto it = cx_.tasks.find(t); it != cx_.tasks.end()) {
      if (it->second.exited || it->second.pid <= 0 || it->second.state == TaskState::kLeft)
        continue;
      cx_.env->Signal(it->second.pid, SIGTERM);
    } else if (const int at = cx_.HostOf(t); at != cx_.host.value && cx_.hosts.contains(at)) {
      ctl::Envelope e = NewEnvelope();
      e.mutable_kill()->set_tid(raw);
      cx_.SendControlTo(Tid::DaemonOf(HostIndex{at}), std::move(e));
    } else {
      continue;
    }
    ++ended;
  }
  if (ended > 0)
    cx_.env->Info(fmt::format("{} left without waiting for its job: ending its {} task(s)",
                              spawner.str(), ended));
}

void Spawner::OnRemoteSpawn(Tid from, const ctl::RemoteSpawn& rs) {
  std::vector<int> ranks(rs.ranks().begin(), rs.ranks().end());
  auto tids = SpawnHere(rs.request(), Tid(rs.spawner()), ranks, /*await_siblings=*/true);
  for (int t : tids)
    if (auto it = cx_.tasks.find(Tid(t)); t > 0 && it != cx_.tasks.end())
      it->second.siblings_from = from.host().value;
  ctl::Envelope r = NewEnvelope();
  r.mutable_remote_spawn_reply()->set_spawn_id(rs.spawn_id());
  for (int t : tids) r.mutable_remote_spawn_reply()->add_tids(t);
  cx_.SendControlTo(from, std::move(r));
}

void Spawner::ChildLost(int tid) {
  auto it = remote_children_.find(tid);
  if (it == remote_children_.end()) return;
  ctl::Envelope e = NewEnvelope();
  e.mutable_task_ended()->set_tid(tid);
  e.mutable_task_ended()->set_host_died(true);
  cx_.SendControlTo(Tid(it->second), std::move(e));
  remote_children_.erase(it);
}

std::vector<int> Spawner::RemoteChildren() const {
  std::vector<int> out;
  for (const auto& [tid, parent] : remote_children_) out.push_back(tid);
  return out;
}

void Spawner::HostGone(int index) {
  // Children here of a spawn that host was completing will never hear of
  // their siblings: each goes on knowing only itself (its spawner is gone).
  std::vector<int> orphans;
  for (const auto& [tid, t] : cx_.tasks)
    if (t.awaiting_siblings && t.siblings_from == index) orphans.push_back(tid.raw());
  for (int t : orphans) ApplySiblings({t});
  // Spawns waiting on it fail there.
  std::vector<uint64_t> done;
  for (auto& [id, ps] : spawns_) {
    auto r = ps.ranks.find(index);
    if (r == ps.ranks.end() || index == cx_.host.value) continue;
    for (int rank : r->second) ps.tids[static_cast<size_t>(rank)] = PvmCode(Err::kHostFail);
    ps.ranks.erase(r);
    if (--ps.outstanding == 0) done.push_back(id);
  }
  for (uint64_t id : done) FinishSpawn(id);
}

}  // namespace mpvm
