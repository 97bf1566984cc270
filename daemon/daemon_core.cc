#include "daemon_core.h"

#include <fmt/format.h>
#include <signal.h>

#include <algorithm>
#include <nlohmann/json.hpp>

#include "mpvm/control.h"

namespace mpvm {
namespace {

// pvm3.h values the daemon needs (the daemon does not include the C header).
constexpr int kTaskHost = 1, kTaskArch = 2, kTaskDebug = 4, kHostCompl = 32, kNoSpawnParent = 64;
constexpr int kMaxSpawn = 4096;
constexpr int kDataSignature = 0x408c41;

int Code(Err e) { return ToPvmCode(e); }

}  // namespace

DaemonCore::DaemonCore(DaemonConfig cfg, DaemonEnv* env)
    : cfg_(std::move(cfg)), env_(env), host_(cfg_.member ? HostIndex{0} : cfg_.host) {
  if (!cfg_.member)
    hosts_.AddSelf(host_.value,
                   HostRec{cfg_.hostname, cfg_.arch, cfg_.speed, 0, 0, 0, "", cfg_.cores});
  placement_ = balancer::MakePlacementPolicy(cfg_.placement);
  if (!placement_) placement_ = std::make_unique<balancer::RoundRobinPlacement>();
}

ctl::LoadReport DaemonCore::LocalLoad() const {
  std::vector<LocalTaskInfo> tasks;
  for (const auto& [tid, t] : tasks_)
    if (t.state != State::kLeft && !t.is_tool && !t.restoring)
      tasks.push_back({tid.raw(), t.spawned_ns, t.moved_ns, !t.pinned_why.empty()});
  return MakeLoadReport(cfg_.speed, cfg_.cores, tasks, now_ns_);
}

balancer::ClusterLoad DaemonCore::LoadSnapshot() {
  load_.OnReport(host_.value, cfg_.speed, LocalLoad(), now_ns_);
  return load_.Snapshot();
}

std::vector<int> DaemonCore::TaskPids() const {
  std::vector<int> out;
  for (const auto& [tid, t] : tasks_)
    if (t.spawned && !t.exited && t.pid > 0) out.push_back(t.pid);
  return out;
}

void DaemonCore::Reply(ConnId c, uint64_t rid, ctl::Envelope&& env) {
  env.set_version(kControlVersion);
  env.set_rid(rid);
  if (!asks_.empty() && env.has_status())
    if (auto it = conns_.find(c); it != conns_.end()) asks_.Answered(it->second.tid, rid);
  if (auto it = conns_.find(c); it != conns_.end() && it->second.remote) {
    SendControlTo(it->second.tid, std::move(env));  // through the task's daemon
    return;
  }
  auto bytes = EncodeControl(env);
  env_->Send(c, ControlHeader(host_tid().raw(), 0), {}, bytes);
}

void DaemonCore::ReplyStatus(ConnId c, uint64_t rid, int code, std::string detail) {
  ctl::Envelope e = NewEnvelope();
  e.mutable_status()->set_code(code);
  e.mutable_status()->set_detail(std::move(detail));
  Reply(c, rid, std::move(e));
}

void DaemonCore::OnAccept(ConnId c) { conns_[c] = Conn{}; }

void DaemonCore::OnBadStream(ConnId c, std::string_view why) {
  ++bad_frames_;
  env_->Log(fmt::format("connection {}: {}; closing it", c, why));
  env_->CloseConn(c);
  OnClose(c);
}

void DaemonCore::OnFrame(ConnId c, Frame&& f) {
  auto it = conns_.find(c);
  if (it == conns_.end()) return;
  if (f.header.kind == FrameKind::kControl) {
    auto env = DecodeControl(f.payload);
    if (!env) {
      ++bad_frames_;
      env_->Log(fmt::format("connection {}: {}; ignored", c, env.error()));
      return;
    }
    HandleControl(c, std::move(*env));
    return;
  }
  if (it->second.forward_for.raw() != 0) {  // a link of a task that moved
    if (f.header.kind == FrameKind::kData) Reroute(it->second.forward_for, std::move(f));
    return;
  }
  if (it->second.tid.raw() == 0) {
    ++bad_frames_;
    env_->Log(fmt::format("connection {}: data before enrolment; ignored", c));
    return;
  }
  HandleData(c, std::move(f));
}

void DaemonCore::HandleData(ConnId c, Frame&& f) {
  const Tid src = conns_[c].tid;
  if (f.header.src != src.raw()) {
    ++bad_frames_;
    env_->Log(fmt::format("{} sent a message claiming to be from {}; dropped", src.str(),
                          Tid(f.header.src).str()));
    return;
  }
  f.header.flags |= kFrameFlagRelayed;
  const Tid dst(f.header.dst);
  if (LocalTask(dst)) {
    DeliverFrame(tasks_.find(dst)->second, std::move(f));
    return;
  }
  if (dst.host() != host_ || where_.contains(dst.raw()))  // on another host, or moved there
    RouteFrame(f.header, f.payload);
  // else: no such task here, dropped
}

void DaemonCore::DeliverFrame(Task& t, Frame&& f) {
  if (t.state == State::kSpawned) {
    t.held.push_back(std::move(f));
    return;
  }
  if (t.state != State::kEnrolled) return;
  NoteAnswerTo(t.tid, f);
  std::span<const uint8_t> all(f.payload);
  env_->Send(t.conn, f.header, all.subspan(0, f.header.aux_length),
             all.subspan(f.header.aux_length));
}

void DaemonCore::SendToTask(Tid dst, int tag, int ctx, Message& m) {
  auto t = tasks_.find(dst);
  const bool remote = !LocalTask(dst);
  if (remote && dst.host() == host_ && !where_.contains(dst.raw())) return;  // no such task
  Frame f;
  f.header.kind = FrameKind::kData;
  f.header.encoding = static_cast<uint8_t>(m.encoding());
  f.header.src = host_tid().raw();
  f.header.dst = dst.raw();
  f.header.tag = tag;
  f.header.ctx = ctx;
  f.header.seq = 0;  // ordered by the daemon connection
  m.Flatten();
  f.payload = m.EncodeTypeMap();
  f.header.aux_length = static_cast<uint32_t>(f.payload.size());
  f.payload.insert(f.payload.end(), m.body().begin(), m.body().end());
  f.header.length = static_cast<uint32_t>(f.payload.size());
  if (remote) {
    RouteFrame(f.header, f.payload);
    return;
  }
  DeliverFrame(t->second, std::move(f));
}

Tid DaemonCore::AllocTid() {
  for (int tries = 0; tries < Tid::kLocalMask; ++tries) {
    Tid t = Tid::Make(host_, next_local_);
    next_local_ = next_local_ >= Tid::kLocalMask ? 1 : next_local_ + 1;
    if (!tasks_.contains(t)) return t;
  }
  return Tid();
}

void DaemonCore::HandleControl(ConnId c, ctl::Envelope&& env) {
  const uint64_t rid = env.rid();
  Conn& conn = conns_[c];
  if (env.has_enrol()) {
    DoEnrol(c, env);
    return;
  }
  if (conn.tid.raw() == 0) {
    ReplyStatus(c, rid, Code(Err::kSysErr), "enrol first");
    return;
  }
  const Tid who = conn.tid;
  if (halting_) {
    ReplyStatus(c, rid, Code(Err::kSysErr), "the virtual machine is halting");
    return;
  }
  if (env.has_migrate()) ExpectMoveAnswer(who, rid, env.migrate());
  if (cfg_.member && ServedByMaster(env)) {
    if (!joined_) {
      ReplyStatus(c, rid, Code(Err::kSysErr), "this host has not joined its virtual machine");
      return;
    }
    auto bytes = EncodeControl(env);
    env_->SendToPeer(kMasterPeer, ControlHeader(who.raw(), Tid::DaemonOf(HostIndex{1}).raw()),
                     bytes);
    return;  // the answer comes back addressed to the task
  }
  if (!HandleVmService(c, who, env) && !HandleTaskRequest(c, who, env)) {
    ++bad_frames_;
    env_->Log(fmt::format("{} sent an unexpected control message (case {}); answered BadParam",
                          who.str(), static_cast<int>(env.body_case())));
    ReplyStatus(c, rid, Code(Err::kBadParam), "not a request");
  }
}

bool DaemonCore::ServedByMaster(const ctl::Envelope& env) const {
  // The mailbox, groups and contexts are VM-wide: the master serves them.
  // So are the whereabouts of tasks that are not here.
  const bool elsewhere = (env.has_migrate() && !LocalTask(Tid(env.migrate().tid()))) ||
                         (env.has_location() && !LocalTask(Tid(env.location().tid()))) ||
                         (env.has_tasks() && env.tasks().where() != host_tid().raw() &&
                          !LocalTask(Tid(env.tasks().where())));
  return env.has_mbox_put() || env.has_mbox_get() || env.has_mbox_del() || env.has_mbox_info() ||
         env.has_group() || env.has_new_context() || elsewhere;
}

bool DaemonCore::HandleVmService(ConnId c, Tid who, const ctl::Envelope& env) {
  const uint64_t rid = env.rid();
  switch (env.body_case()) {
    case ctl::Envelope::kMboxPut:
      mailbox_.Put(c, rid, who, env.mbox_put());
      break;
    case ctl::Envelope::kMboxGet:
      mailbox_.Get(c, rid, who, env.mbox_get());
      break;
    case ctl::Envelope::kMboxDel:
      mailbox_.Del(c, rid, who, env.mbox_del());
      break;
    case ctl::Envelope::kMboxInfo:
      mailbox_.Info(c, rid, env.mbox_info());
      break;
    case ctl::Envelope::kGroup:
      groups_.Handle(c, rid, who, env.group());
      DrainReplies(groups_.Replies());
      return true;
    case ctl::Envelope::kNotify:
      DoNotify(c, who, env);
      return true;
    case ctl::Envelope::kNewContext:
      ReplyStatus(c, rid, (host_tid().raw() | next_ctx_++) & 0x7fffffff);
      return true;
    default:
      return false;
  }
  DrainReplies(mailbox_.Replies());
  return true;
}

bool DaemonCore::HandleTaskRequest(ConnId c, Tid who, ctl::Envelope& env) {
  const uint64_t rid = env.rid();
  switch (env.body_case()) {
    case ctl::Envelope::kSpawn:
      DoSpawn(c, who, env);
      return true;
    case ctl::Envelope::kKill:
    case ctl::Envelope::kSignal:
      DoSignal(c, std::move(env));
      return true;
    case ctl::Envelope::kPstat: {
      auto t = tasks_.find(Tid(env.pstat().tid()));
      bool alive = t != tasks_.end() && t->second.state != State::kLeft && !t->second.exited;
      ReplyStatus(c, rid, alive ? 0 : Code(Err::kNoTask));
      return true;
    }
    case ctl::Envelope::kLinkPort:
      if (auto t = tasks_.find(who); t != tasks_.end())
        t->second.link_port = env.link_port().port();
      return true;
    case ctl::Envelope::kSetOutput:
      DoSetOutput(c, who, env);
      return true;
    case ctl::Envelope::kExit: {
      auto t = tasks_.find(who);
      if (t != tasks_.end()) TaskLeftVm(t->second);
      ReplyStatus(c, rid, 0);
      return true;
    }
    default:
      return HandleVmRequest(c, who, env);
  }
}

bool DaemonCore::HandleVmRequest(ConnId c, Tid who, ctl::Envelope& env) {
  const uint64_t rid = env.rid();
  switch (env.body_case()) {
    case ctl::Envelope::kConfig: {
      ctl::Envelope e = NewEnvelope();
      *e.mutable_config_reply()->mutable_hosts() = Table().hosts();
      Reply(c, rid, std::move(e));
      return true;
    }
    case ctl::Envelope::kTasks:
      DoTasks(c, env);
      return true;
    case ctl::Envelope::kLocate:
      DoLocate(c, env);
      return true;
    case ctl::Envelope::kMigrate:
      DoMigrate(who, std::move(env));
      return true;
    case ctl::Envelope::kLocation: {
      const Tid t(env.location().tid());
      const int at = HostOf(t);
      const bool known = LocalTask(t) || (at != host_.value && hosts_.contains(at));
      ReplyStatus(c, rid, known ? Tid::DaemonOf(HostIndex{at}).raw() : Code(Err::kNoTask));
      return true;
    }
    case ctl::Envelope::kAddHost:
      DoAddHost(c, env);
      return true;
    case ctl::Envelope::kDelHost:
      DoDelHost(c, who, env);
      return true;
    case ctl::Envelope::kHalt:
      ReplyStatus(c, rid, 0);
      Halt(who);
      return true;
    default:
      return false;
  }
}

void DaemonCore::DoSignal(ConnId c, ctl::Envelope&& env) {
  const uint64_t rid = env.rid();
  const bool kill = env.has_kill();
  const Tid target(kill ? env.kill().tid() : env.signal().tid());
  if (!LocalTask(target) && HostOf(target) != host_.value) {  // its host carries it out
    if (!hosts_.contains(HostOf(target))) {
      ReplyStatus(c, rid, Code(Err::kNoTask));
      return;
    }
    SendControlTo(Tid::DaemonOf(HostIndex{HostOf(target)}), std::move(env));
    ReplyStatus(c, rid, 0);
    return;
  }
  auto t = tasks_.find(target);
  if (t == tasks_.end() || t->second.exited || t->second.pid <= 0) {
    ReplyStatus(c, rid, Code(Err::kNoTask));
    return;
  }
  env_->Signal(t->second.pid, kill ? SIGTERM : env.signal().signum());
  ReplyStatus(c, rid, 0);
}

void DaemonCore::DoSetOutput(ConnId c, Tid who, const ctl::Envelope& env) {
  const uint64_t rid = env.rid();
  auto t = tasks_.find(who);
  if (t == tasks_.end()) {
    ReplyStatus(c, rid, Code(Err::kNoTask));
    return;
  }
  Task& task = t->second;
  const int to = env.set_output().tid();
  if (to != 0 && !tasks_.contains(Tid(to))) {
    ReplyStatus(c, rid, Code(Err::kNoTask), "no such task to send output to");
    return;
  }
  if (task.out_tid != 0 && task.out_tid != to) SendOutputRecord(task, 0, {});  // old sink: EOF
  const bool fresh = to != 0 && to != task.out_tid;
  task.out_tid = to;
  task.out_code = env.set_output().code();
  task.out_ctx = env.set_output().ctx();
  if (fresh) SendOutputRecord(task, -1, {});  // new sink: BEGIN
  ReplyStatus(c, rid, 0);
}

void DaemonCore::DoDelHost(ConnId c, Tid who, const ctl::Envelope& env) {
  const uint64_t rid = env.rid();
  if (cfg_.member) {
    ReplyStatus(c, rid, Code(Err::kNotImpl), "delete hosts from the master's host");
    return;
  }
  auto st = DeleteHost(env.del_host().name(), "deleted by " + who.str());
  ReplyStatus(c, rid, st ? 0 : Code(st.error()),
              st ? "" : fmt::format("no host '{}' in the virtual machine", env.del_host().name()));
}

void DaemonCore::DoEnrol(ConnId c, const ctl::Envelope& env) {
  const auto& r = env.enrol();
  Conn& conn = conns_[c];
  if (conn.tid.raw() != 0) {
    ReplyStatus(env.rid() == 0 ? 0 : c, env.rid(), Code(Err::kAlready), "already enrolled");
    return;
  }
  if (halting_) {
    ReplyStatus(c, env.rid(), Code(Err::kSysErr), "the virtual machine is halting");
    return;
  }
  Task* task = nullptr;
  auto it = tasks_.find(Tid(r.tid()));
  if (r.tid() != 0 && it != tasks_.end() && it->second.state == State::kSpawned &&
      it->second.pid == r.pid()) {
    task = &it->second;
  } else {
    Tid t = AllocTid();
    if (t.raw() == 0) {
      ReplyStatus(c, env.rid(), Code(Err::kOutOfRes), "no free task ids");
      return;
    }
    Task nt;
    nt.tid = t;
    nt.pid = r.pid();
    nt.a_out = r.name();
    task = &tasks_.emplace(t, std::move(nt)).first->second;
  }
  task->state = State::kEnrolled;
  task->conn = c;
  task->is_tool = r.is_tool();
  conn.tid = task->tid;
  if (r.claim_owner() && cfg_.embedded && !owner_) {
    owner_ = c;
    conn.owner = true;
  }
  if (task->restoring) {
    env_->Debug(fmt::format("restored copy of {} enrolled (pid {})", task->tid.str(), r.pid()));
    task->committed = true;
    if (!hosts_.contains(task->from_host)) ClaimArrival(task->tid);
  }
  if (r.restored() && task->event_sink != 0)  // a moved task runs again, here
    Trace(task->event_sink, nlohmann::json{{"ev", "resumed"},
                                           {"tid", task->tid.str()},
                                           {"id", fmt::format("{:x}", task->arrived_by)},
                                           {"host", cfg_.hostname},
                                           {"ts", env_->WallNs()}}
                                .dump());
  if (task->awaiting_siblings) {  // its spawn spans hosts: answer once all are known
    task->enrol_conn = c;
    task->enrol_rid = env.rid();
    return;
  }
  SendEnrolReply(*task, c, env.rid());
  MaybeTestMove(*task);
}

void DaemonCore::SendEnrolReply(Task& t, ConnId c, uint64_t rid) {
  ctl::Envelope e = NewEnvelope();
  auto* rep = e.mutable_enrol_reply();
  rep->set_code(0);
  rep->set_tid(t.tid.raw());
  rep->set_ptid(t.ptid);
  for (Tid s : t.siblings) rep->add_siblings(s.raw());
  rep->set_host_tid(host_tid().raw());
  rep->set_host_name(cfg_.hostname);
  rep->set_arch(cfg_.arch);
  rep->set_output_tid(t.out_tid);
  rep->set_output_code(t.out_code);
  rep->set_output_ctx(t.out_ctx);
  rep->set_trace_tid(t.trace_tid);
  rep->set_trace_code(t.trace_code);
  rep->set_ctx(t.ctx);
  if (!cfg_.link_key.empty()) {
    rep->set_link_key(cfg_.link_key);
    rep->set_link_encrypt(cfg_.link_encrypt);
  }
  Reply(c, rid, std::move(e));
  while (!t.held.empty()) {
    Frame f = std::move(t.held.front());
    t.held.pop_front();
    DeliverFrame(t, std::move(f));
  }
}

std::vector<std::string> DaemonCore::ChildEnv(const ctl::SpawnRequest& s, Tid tid, int rank,
                                              bool spawner_here) const {
  std::map<std::string, std::string> vars;
  auto put = [&](const std::string& kv) {
    auto eq = kv.find('=');
    if (eq == std::string::npos || eq == 0) return;
    vars[kv.substr(0, eq)] = kv.substr(eq + 1);
  };
  for (const auto& kv : cfg_.base_env) put(kv);
  if (spawner_here)
    for (const auto& kv : s.local_env()) put(kv);
  for (const auto& kv : s.env()) put(kv);
  vars.erase("MPVM_RANK");
  vars.erase("MPVM_SIZE");
  vars["MPVM_TID"] = std::to_string(tid.raw());
  vars["MPVM_RUNDIR"] = cfg_.rundir;
  vars["PVM_ARCH"] = cfg_.arch;
  if (!cfg_.libdir.empty()) {
    auto old = vars.find("LD_LIBRARY_PATH");
    vars["LD_LIBRARY_PATH"] =
        cfg_.libdir +
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

void DaemonCore::DoSpawn(ConnId c, Tid who, const ctl::Envelope& env) {
  ctl::SpawnRequest s = env.spawn();
  if (auto spawner = tasks_.find(who); spawner != tasks_.end()) {
    if (s.event_sink() == 0)
      s.set_event_sink(spawner->second.event_sink);  // a traced run's children are traced
    // Children that write to their parent's sink keep its stdout/stderr split.
    if (spawner->second.stderr_apart && s.output_tid() == spawner->second.out_tid)
      s.set_stderr_apart(true);
  }
  const uint64_t rid = env.rid();
  if (s.ntask() < 1 || s.ntask() > kMaxSpawn || s.file().empty()) {
    ReplyStatus(c, rid, Code(Err::kBadParam),
                fmt::format("ntask must be 1..{} and the file named", kMaxSpawn));
    return;
  }
  auto fail_all = [&](Err e, std::string why) {
    ctl::Envelope r = NewEnvelope();
    for (int i = 0; i < s.ntask(); ++i) r.mutable_spawn_reply()->add_tids(Code(e));
    r.mutable_spawn_reply()->set_detail(std::move(why));
    Reply(c, rid, std::move(r));
  };
  auto order = SpawnCandidates(s);
  if (!order) return fail_all(Err::kNoHost, order.error());
  std::map<int, std::vector<int>> ranks_by_host;
  const auto placed = placement_->Place(LoadSnapshot(), *order, s.ntask());
  for (int i = 0; i < s.ntask(); ++i) ranks_by_host[placed[static_cast<size_t>(i)]].push_back(i);
  const bool spans = ranks_by_host.size() > 1 || !ranks_by_host.contains(host_.value);
  std::vector<int> tids(static_cast<size_t>(s.ntask()), Code(Err::kNoFile));
  if (auto here = ranks_by_host.find(host_.value); here != ranks_by_host.end()) {
    if (env_->Resolve(s.file(), s.path(), s.cwd()).empty() && !spans)
      return fail_all(Err::kNoFile, fmt::format("'{}' not found", s.file()));
    auto got = SpawnHere(s, who, here->second, spans);
    for (size_t k = 0; k < got.size(); ++k) tids[static_cast<size_t>(here->second[k])] = got[k];
  }
  const Tid job_of = s.end_with_spawner() && tasks_.contains(who) ? who : Tid();
  if (!spans) {
    NoteJob(job_of, tids);
    ApplySiblings(tids);
    ctl::Envelope r = NewEnvelope();
    for (int t : tids) r.mutable_spawn_reply()->add_tids(t);
    Reply(c, rid, std::move(r));
    return;
  }
  SpawnElsewhere(PendingSpawn{c, rid, tids, {}, 0, job_of}, s, who, ranks_by_host);
}

mpvm::expected<std::vector<int>, std::string> DaemonCore::SpawnCandidates(
    const ctl::SpawnRequest& s) const {
  // Which hosts may run it: all of them (in turn, starting here), one named
  // host (PvmTaskHost), or all but one (PvmHostCompl).
  std::vector<int> order = {host_.value};
  for (const auto& [index, h] : hosts_)
    if (index != host_.value) order.push_back(index);
  auto names = [&](int index) {
    const std::string& n = hosts_.at(index).name;
    return s.where() == n ||
           (index == host_.value &&
            (s.where() == "." || s.where() == "localhost" || s.where() == cfg_.hostname));
  };
  if (s.flags() & kTaskHost) {
    std::vector<int> chosen;
    for (int index : order)
      if (names(index) != bool(s.flags() & kHostCompl)) chosen.push_back(index);
    if (chosen.empty())
      return mpvm::unexpected(fmt::format("no host '{}' in this virtual machine", s.where()));
    order = chosen;
  }
  if ((s.flags() & kTaskArch) && !s.where().empty() && s.where() != cfg_.arch)
    return mpvm::unexpected(fmt::format("no host of architecture '{}'", s.where()));
  return order;
}

void DaemonCore::SpawnElsewhere(PendingSpawn ps, const ctl::SpawnRequest& s, Tid who,
                                const std::map<int, std::vector<int>>& ranks_by_host) {
  const uint64_t id = next_spawn_id_++;
  for (const auto& [index, ranks] : ranks_by_host) {
    if (index == host_.value) continue;
    ctl::Envelope e = NewEnvelope();
    auto* rs = e.mutable_remote_spawn();
    *rs->mutable_request() = s;
    rs->set_spawner(who.raw());
    rs->set_spawn_id(id);
    for (int r : ranks) rs->add_ranks(r);
    SendControlTo(Tid::DaemonOf(HostIndex{index}), std::move(e));
    ps.ranks[index] = ranks;
    ++ps.outstanding;
  }
  ps.ranks[host_.value];  // this host takes part too (siblings are applied here)
  spawns_[id] = std::move(ps);
}

DaemonCore::Task DaemonCore::SpawnedTask(const ctl::SpawnRequest& s, Tid who, const SpawnSpec& spec,
                                         int pid, bool await_siblings) const {
  Task task;
  task.tid = spec.tid;
  task.pid = pid;
  task.spawned = true;
  task.ptid = s.orphan() ? 0 : (s.flags() & kNoSpawnParent) ? Code(Err::kParentNotSet) : who.raw();
  task.a_out = s.file();
  task.out_tid = s.output_tid();
  task.out_code = s.output_code();
  task.out_ctx = s.output_ctx();
  task.stderr_apart = s.stderr_apart();
  task.trace_tid = s.trace_tid();
  task.trace_code = s.trace_code();
  task.event_sink = s.event_sink();
  task.report_to = s.report_exit() ? who.raw() : 0;
  task.ctx = s.ctx();
  task.open_streams = 2;
  task.awaiting_siblings = await_siblings;
  task.spec = spec;
  task.spawned_ns = now_ns_;
  return task;
}

std::vector<int> DaemonCore::SpawnHere(const ctl::SpawnRequest& s, Tid who,
                                       const std::vector<int>& ranks, bool await_siblings) {
  std::vector<int> out;
  const bool spawner_here = tasks_.contains(who);  // local_env applies on its host only
  const std::string path = env_->Resolve(s.file(), s.path(), s.cwd());
  if (path.empty()) return std::vector<int>(ranks.size(), Code(Err::kNoFile));
  // PvmTaskDebug: run the program under $PVM_DEBUGGER (as PVM ran its
  // debugger script) when the daemon has one; otherwise start it normally.
  std::string debugger;
  if (s.flags() & kTaskDebug) {
    for (const auto& kv : cfg_.base_env)
      if (kv.rfind("PVM_DEBUGGER=", 0) == 0) debugger = env_->Resolve(kv.substr(13), "", s.cwd());
    if (debugger.empty())
      env_->Log(
          fmt::format("PvmTaskDebug for {}: PVM_DEBUGGER is not set (or not found); "
                      "starting it without a debugger",
                      s.file()));
  }
  for (int rank : ranks) {
    Tid t = AllocTid();
    if (t.raw() == 0) {
      out.push_back(Code(Err::kOutOfRes));
      continue;
    }
    SpawnSpec spec;
    spec.tid = t;
    spec.path = debugger.empty() ? path : debugger;
    if (!debugger.empty()) spec.argv.push_back(debugger);
    spec.argv.push_back(debugger.empty() ? s.file() : path);
    spec.argv.insert(spec.argv.end(), s.argv().begin(), s.argv().end());
    spec.env = ChildEnv(s, t, rank, spawner_here);
    spec.cwd = cfg_.workdir.empty() ? s.cwd() : cfg_.workdir;
    if (rank == 0 && spawner_here) spec.stdin_path = s.rank0_stdin();
    auto pid = env_->Spawn(spec);
    if (!pid) {
      out.push_back(Code(pid.error()));
      continue;
    }
    tasks_.emplace(t, SpawnedTask(s, who, spec, *pid, await_siblings));
    if (s.output_tid() != 0) SendOutputRecord(tasks_[t], -1, {});
    if (s.event_sink() != 0)
      Trace(s.event_sink(), nlohmann::json{{"ev", "start"},
                                           {"tid", t.str()},
                                           {"host", cfg_.hostname},
                                           {"a_out", s.file()},
                                           {"ts", env_->WallNs()}}
                                .dump());
    out.push_back(t.raw());
  }
  return out;
}

void DaemonCore::ApplySiblings(const std::vector<int>& tids) {
  std::vector<Tid> sibs;
  for (int t : tids)
    if (t > 0) sibs.push_back(Tid(t));
  for (Tid t : sibs) {
    auto it = tasks_.find(t);
    if (it == tasks_.end()) continue;
    Task& task = it->second;
    task.siblings = sibs;
    task.awaiting_siblings = false;
    if (task.enrol_conn != 0) {
      SendEnrolReply(task, task.enrol_conn, task.enrol_rid);
      task.enrol_conn = 0;
    }
  }
}

void DaemonCore::FinishSpawn(uint64_t id) {
  auto it = spawns_.find(id);
  if (it == spawns_.end()) return;
  PendingSpawn ps = std::move(it->second);
  spawns_.erase(it);
  NoteJob(ps.job_of, ps.tids);
  for (const auto& [index, ranks] : ps.ranks) {
    if (index == host_.value) {
      ApplySiblings(ps.tids);
      continue;
    }
    ctl::Envelope e = NewEnvelope();
    for (int t : ps.tids) e.mutable_spawn_siblings()->add_tids(t);
    SendControlTo(Tid::DaemonOf(HostIndex{index}), std::move(e));
  }
  if (!conns_.contains(ps.conn)) return;
  ctl::Envelope r = NewEnvelope();
  for (int t : ps.tids) r.mutable_spawn_reply()->add_tids(t);
  Reply(ps.conn, ps.rid, std::move(r));
}

void DaemonCore::SendOutputRecord(const Task& t, int count, std::string_view data, bool is_stderr) {
  Message m(kEncDefault);
  int head[2] = {t.tid.raw(), count};
  (void)m.Pack(DataType::kInt, head, 2, 1);
  if (count > 0) (void)m.Pack(DataType::kByte, data.data(), count, 1);
  SendToTask(Tid(t.out_tid), is_stderr && t.stderr_apart ? kStderrTag : t.out_code, t.out_ctx, m);
}

void DaemonCore::OnOutput(Tid tid, std::string_view bytes, bool is_stderr) {
  auto it = tasks_.find(tid);
  if (it == tasks_.end()) return;
  Task& t = it->second;
  if (t.restoring) {  // a restored copy before the commit: after what it printed before
    t.held_output.append(bytes);
    return;
  }
  if (t.out_tid != 0 && SinkAlive(t.out_tid)) {
    SendOutputRecord(t, static_cast<int>(bytes.size()), bytes, is_stderr);
    return;
  }
  t.partial_log.append(bytes);
  size_t nl;
  while ((nl = t.partial_log.find('\n')) != std::string::npos) {
    env_->LogOutput(tid, std::string_view(t.partial_log).substr(0, nl));
    t.partial_log.erase(0, nl + 1);
  }
}

void DaemonCore::OnOutputClosed(Tid tid) {
  auto it = tasks_.find(tid);
  if (it == tasks_.end()) return;
  if (--it->second.open_streams <= 0) MaybeFinish(tid);
}

void DaemonCore::OnProcessExit(Tid tid, int exit_code, int term_signal) {
  auto it = tasks_.find(tid);
  if (it == tasks_.end()) return;
  env_->Debug(fmt::format("{} (pid {}) ended: exit code {}, signal {}", tid.str(), it->second.pid,
                          exit_code, term_signal));
  it->second.exited = true;
  it->second.exit_code = exit_code;
  it->second.term_signal = term_signal;
  if (auto mv = moves_.find(it->second.move_id);
      mv != moves_.end() && mv->second.state != MoveState::kFrozen) {
    env_->CancelMove(tid);  // it ended before it stopped for the move
    OnMoveFailed(tid, "it ended before it could move", false, MoveEvent::kTaskEnded);
  }
  MaybeFinish(tid);
}

void DaemonCore::MaybeFinish(Tid tid) {
  auto it = tasks_.find(tid);
  if (it == tasks_.end()) return;
  Task& t = it->second;
  if (!t.exited || t.open_streams > 0) return;
  if (t.restoring) {
    env_->Debug(fmt::format("restoring {} ended (move {:x})", tid.str(), t.move_id));
    if (t.move_id != 0) return;  // the commit or the abort will tell
    // A restore that was refused or abandoned: the task still runs at its source.
    if (!t.held_output.empty())
      env_->Log(fmt::format("restore process of {} said: {}", tid.str(), t.held_output));
    tasks_.erase(it);
    return;
  }
  if (!t.partial_log.empty()) env_->LogOutput(tid, t.partial_log);
  if (t.out_tid != 0) SendOutputRecord(t, 0, {});
  if (t.event_sink != 0)
    Trace(t.event_sink, nlohmann::json{{"ev", "end"},
                                       {"tid", tid.str()},
                                       {"host", cfg_.hostname},
                                       {"code", t.exit_code},
                                       {"signal", t.term_signal},
                                       {"ts", env_->WallNs()}}
                            .dump());
  TaskLeftVm(t);
  if (t.report_to != 0) {
    ctl::Envelope e = NewEnvelope();
    auto* te = e.mutable_task_ended();
    te->set_tid(tid.raw());
    te->set_exit_code(t.exit_code);
    te->set_term_signal(t.term_signal);
    SendControlTo(Tid(t.report_to), std::move(e));
  }
  env_->RemoveTaskSocket(tid);
  if (t.conn != 0) {
    auto c = conns_.find(t.conn);
    if (c != conns_.end()) c->second.tid = Tid();
  }
  tasks_.erase(it);
}

void DaemonCore::TaskLeftVm(Task& t) {
  if (t.exit_notified) return;
  t.exit_notified = true;
  t.state = State::kLeft;
  t.held.clear();
  const int tid = t.tid.raw();
  ForgetOwner(tid);
  notify_.DropWatcher(t.tid);  // notifications it asked for die with it
  ForgetJobTask(tid);
  asks_.Forget(t.tid);
  FireNotify(kNotifyTaskExit, tid);
  BroadcastTaskGone(tid, 0);
}

void DaemonCore::FireNotify(int what, int target) {
  notify_.Fire(what, target);
  DrainNotices();
}

void DaemonCore::DrainNotices() {
  for (const auto& n : notify_.TakeMessages()) {
    Message m(kEncDefault);
    (void)m.Pack(DataType::kInt, n.ints.data(), static_cast<int>(n.ints.size()), 1);
    SendToTask(n.to, n.tag, n.ctx, m);
  }
}

void DaemonCore::DoNotify(ConnId c, Tid who, const ctl::Envelope& env) {
  const auto& n = env.notify();
  if (n.what() == kNotifyHostAdd) {
    notify_.WatchHostAdds(who, n.tag(), n.ctx(), n.count(), n.cancel());
  } else {
    for (int target : n.tids()) {
      if (n.cancel()) {  // delivers the message now, as if the event had happened
        notify_.Cancel(who, n.what(), target, n.tag());
      } else {
        AddNotify(NotifyReg{who, n.what(), n.tag(), n.ctx(), target, 1});
      }
    }
  }
  DrainNotices();
  ReplyStatus(c, env.rid(), 0);
}

void DaemonCore::AddNotify(const NotifyReg& reg) {
  if (reg.what == kNotifyHostAdd) {
    notify_.WatchHostAdds(reg.watcher, reg.tag, reg.ctx, reg.count, false);
    return;
  }
  notify_.Watch(reg, NotifyTargetExists(reg.what, reg.target));
  DrainNotices();
}

bool DaemonCore::NotifyTargetExists(int what, int target) const {
  if (const int at = HostOf(Tid(target)); what == kNotifyTaskExit && at != host_.value) {
    // Its host (where it runs now, which may not be where it was born)
    // tells us when it goes (TaskGone); it may have told us already.
    return hosts_.contains(at) && !gone_remote_.contains(target);
  }
  if (what == kNotifyTaskExit) {
    auto t = tasks_.find(Tid(target));
    return t != tasks_.end() && t->second.state != State::kLeft;
  }
  const Tid h(target);
  return h.is_daemon() && hosts_.contains(h.host().value);
}

bool DaemonCore::ListTasks(int where, ctl::TasksReply* rep) const {
  bool found = false;
  for (const auto& [tid, t] : tasks_) {
    if (t.state == State::kLeft || (t.restoring && !t.committed)) continue;  // not here yet
    if (where != 0 && where != host_tid().raw() && where != tid.raw()) continue;
    found = true;
    auto* te = rep->add_tasks();
    te->set_tid(tid.raw());
    te->set_ptid(t.ptid > 0 ? t.ptid : 0);
    te->set_host(host_tid().raw());
    te->set_flag((t.state == State::kEnrolled ? 4 : 0) | (t.is_tool ? 0x100 : 0));
    te->set_a_out(t.a_out);
    te->set_pid(t.pid);
    te->set_moves(t.moves);
    te->set_pinned(t.pinned_why);
  }
  return found;
}

void DaemonCore::DoTasks(ConnId c, const ctl::Envelope& env) {
  const int where = env.tasks().where();
  // The master answers for the whole VM: all hosts (where 0), another host,
  // or a task that runs on another host. It asks them and answers once all
  // have (or after 2 s, without a host that said nothing).
  std::vector<int> ask;
  if (!cfg_.member && hosts_.size() > 1) {
    const Tid w(where);
    if (where == 0) {
      for (const auto& [index, h] : hosts_)
        if (index != host_.value && h.peer != 0) ask.push_back(index);
    } else if (w.is_daemon() && w.host() != host_ && hosts_.contains(w.host().value)) {
      ask.push_back(w.host().value);
    } else if (w.is_task() && !LocalTask(w) && HostOf(w) != host_.value &&
               hosts_.contains(HostOf(w))) {
      ask.push_back(HostOf(w));
    }
  }
  if (ask.empty()) {
    ctl::Envelope e = NewEnvelope();
    auto* rep = e.mutable_tasks_reply();
    const bool found = ListTasks(where, rep);
    if (where != 0 && where != host_tid().raw() && !found)
      rep->set_code(Code(Tid(where).host() == host_ ? Err::kNoTask : Err::kNoHost));
    Reply(c, env.rid(), std::move(e));
    return;
  }
  const uint64_t id = next_task_query_++;
  TaskQuery& q = task_queries_[id];
  q.conn = c;
  q.rid = env.rid();
  q.where = where;
  q.outstanding = static_cast<int>(ask.size());
  q.deadline_ns = now_ns_ + 2'000'000'000;
  if (where == 0) ListTasks(0, &q.reply);
  for (int index : ask) {
    ctl::Envelope e = NewEnvelope();
    e.set_rid(id);
    e.mutable_tasks()->set_where(where == 0 ? Tid::DaemonOf(HostIndex{index}).raw() : where);
    SendPeerControl(hosts_.at(index).peer, std::move(e));
  }
}

void DaemonCore::FinishTaskQuery(uint64_t id) {
  auto it = task_queries_.find(id);
  if (it == task_queries_.end()) return;
  TaskQuery q = std::move(it->second);
  task_queries_.erase(it);
  auto* tasks = q.reply.mutable_tasks();
  std::stable_sort(tasks->begin(), tasks->end(), [](const auto& a, const auto& b) {
    return std::pair(Tid(a.host()).host().value, a.tid()) <
           std::pair(Tid(b.host()).host().value, b.tid());
  });
  if (q.where != 0 && tasks->empty() && q.reply.code() == 0)
    q.reply.set_code(Code(Tid(q.where).is_task() ? Err::kNoTask : Err::kNoHost));
  if (!conns_.contains(q.conn)) return;  // the asker left
  ctl::Envelope e = NewEnvelope();
  *e.mutable_tasks_reply() = std::move(q.reply);
  Reply(q.conn, q.rid, std::move(e));
}

void DaemonCore::CheckTaskQueries() {
  std::vector<uint64_t> late;
  for (const auto& [id, q] : task_queries_)
    if (now_ns_ > q.deadline_ns) late.push_back(id);
  for (uint64_t id : late) FinishTaskQuery(id);
}

// ---- Mailbox -----------------------------------------------------------------

void DaemonCore::DrainReplies(ReplyOutbox& out) {
  for (auto& r : out.Take()) Reply(r.conn, r.rid, std::move(r.env));
}

void DaemonCore::DropWaitersOf(ConnId c) {
  mailbox_.DropWaitersOf(c);
  groups_.DropWaitersOf(c);
  std::erase_if(pending_adds_, [&](const auto& kv) { return kv.second.first == c; });
}

// ---- Connections and shutdown ------------------------------------------------

void DaemonCore::OnClose(ConnId c) {
  auto it = conns_.find(c);
  if (it == conns_.end()) return;
  Conn conn = it->second;
  conns_.erase(it);
  DropWaitersOf(c);
  if (conn.forward_for.raw() != 0) {  // a link the task held here before it moved
    auto fw = forwarding_.find(conn.forward_for.raw());
    if (fw != forwarding_.end() && --fw->second.open_links <= 0 && fw->second.reported)
      EndForwarding(conn.forward_for.raw());
    return;
  }
  if (conn.owner) {
    env_->Log("the embedded VM's owner disconnected; halting");
    Halt();
    return;
  }
  auto t = tasks_.find(conn.tid);
  if (conn.tid.raw() == 0 || t == tasks_.end() || t->second.conn != c) return;
  t->second.conn = 0;
  EndJob(conn.tid);
  TaskLeftVm(t->second);
  if (!t->second.spawned) {
    env_->RemoveTaskSocket(conn.tid);
    tasks_.erase(t);
  }
}

void DaemonCore::NoteJob(Tid spawner, const std::vector<int>& tids) {
  if (spawner.raw() == 0) return;
  auto& job = jobs_[spawner];
  for (int t : tids)
    if (t > 0) job.push_back(t);
}

void DaemonCore::ForgetJobTask(int tid) {
  for (auto it = jobs_.begin(); it != jobs_.end();) {
    std::erase(it->second, tid);
    it = it->second.empty() ? jobs_.erase(it) : std::next(it);
  }
}

void DaemonCore::EndJob(Tid spawner) {
  auto job = jobs_.find(spawner);
  if (job == jobs_.end()) return;
  const std::vector<int> tids = std::move(job->second);
  jobs_.erase(job);
  int ended = 0;
  for (int raw : tids) {
    const Tid t(raw);
    if (auto it = tasks_.find(t); it != tasks_.end()) {
      if (it->second.exited || it->second.pid <= 0 || it->second.state == State::kLeft) continue;
      env_->Signal(it->second.pid, SIGTERM);
    } else if (const int at = HostOf(t); at != host_.value && hosts_.contains(at)) {
      ctl::Envelope e = NewEnvelope();
      e.mutable_kill()->set_tid(raw);
      SendControlTo(Tid::DaemonOf(HostIndex{at}), std::move(e));
    } else {
      continue;
    }
    ++ended;
  }
  if (ended > 0)
    env_->Info(fmt::format("{} left without waiting for its job: ending its {} task(s)",
                           spawner.str(), ended));
}

void DaemonCore::Halt(Tid caller) {
  if (halting_) return;
  halting_ = true;
  if (!cfg_.member)
    for (const auto& [index, h] : hosts_) {
      if (h.peer == 0) continue;
      ctl::Envelope e = NewEnvelope();
      e.mutable_host_leave()->set_host(index);
      e.mutable_host_leave()->set_reason("the master halts the virtual machine");
      SendPeerControl(h.peer, std::move(e));
    }
  for (const auto& [tid, t] : tasks_)
    if (t.pid > 0 && !t.exited && !t.is_tool && tid != caller) env_->Signal(t.pid, SIGTERM);
  env_->RequestShutdown();
}

// ---- Hosts: the table, joining, heartbeats, failures ------------------------

void DaemonCore::DoAddHost(ConnId c, const ctl::Envelope& env) {
  const uint64_t rid = env.rid();
  if (cfg_.member) {
    ReplyStatus(c, rid, Code(Err::kNotImpl), "add hosts from the master's host");
    return;
  }
  auto parsed = ParseHostfile(env.add_host().line(), "host");
  if (!parsed || parsed->size() != 1) {
    ReplyStatus(c, rid, Code(Err::kBadParam),
                parsed ? "give exactly one host" : parsed.error().message);
    return;
  }
  const HostSpec& h = parsed->front();
  for (const auto& [index, rec] : hosts_)
    if (rec.name == h.name) {
      ReplyStatus(c, rid, Code(Err::kDupHost), fmt::format("'{}' is already a host", h.name));
      return;
    }
  if (auto hint = ManualStartHint(h); !hint.empty()) {
    ReplyStatus(c, rid, Code(Err::kCantStart),
                fmt::format("{} has {} (this master's address is in {}/master.addr once it "
                            "listens, its key in vm.key beside it)",
                            h.name, hint, cfg_.rundir));
    return;
  }
  if (pending_adds_.contains(h.name)) {
    ReplyStatus(c, rid, Code(Err::kAlready), fmt::format("'{}' is already being added", h.name));
    return;
  }
  if (auto st = env_->StartHost(h); !st) {
    ReplyStatus(c, rid, Code(st.error().code),
                fmt::format("cannot start the daemon of {}: {}", h.name, st.error().why));
    return;
  }
  pending_adds_[h.name] = {c, rid};
}

std::vector<std::string> DaemonCore::StartHosts(const std::vector<HostSpec>& hosts) {
  std::vector<std::string> failed;
  for (const auto& h : hosts) {
    if (h.deferred) continue;
    std::string why;
    if (auto hint = ManualStartHint(h); !hint.empty()) {
      why = hint;
    } else if (auto st = env_->StartHost(h); !st) {
      why = st.error().why;
    } else {
      starting_.insert(h.name);
      continue;
    }
    failed.push_back(fmt::format("host '{}' (line {}) not started: {}", h.name, h.line, why));
    env_->Log(failed.back());
  }
  return failed;
}

void DaemonCore::OnHostStartFailed(const std::string& name, const std::string& why) {
  if (starting_.erase(name) > 0) env_->Log(fmt::format("host {} did not join: {}", name, why));
  auto it = pending_adds_.find(name);
  if (it == pending_adds_.end()) {
    // We started it, so we know at once that it is gone: no need to wait
    // for its heartbeats to stop.
    for (const auto& [index, h] : hosts_)
      if (h.name == name && index != host_.value) {
        RemoveHost(index, why);
        return;
      }
    return;
  }
  env_->Log(fmt::format("emulated host {} did not join: {}", name, why));
  ReplyStatus(it->second.first, it->second.second, Code(Err::kCantStart), why);
  pending_adds_.erase(it);
}

int DaemonCore::LocalTaskCount() const {
  int n = 0;
  for (const auto& [tid, t] : tasks_)
    if (t.state != State::kLeft && !t.is_tool) ++n;
  return n;
}

ctl::HostTable DaemonCore::Table() const {
  return hosts_.ToProto(host_.value, LocalTaskCount(), kDataSignature);
}

void DaemonCore::SendPeerControl(PeerId p, ctl::Envelope&& env) {
  env.set_version(kControlVersion);
  auto bytes = EncodeControl(env);
  env_->SendToPeer(p, ControlHeader(host_tid().raw(), 0), bytes);
}

void DaemonCore::BroadcastTable(PeerId except) {
  for (const auto& [index, h] : hosts_) {
    if (h.peer == 0 || h.peer == except) continue;
    ctl::Envelope e = NewEnvelope();
    *e.mutable_host_table() = Table();
    SendPeerControl(h.peer, std::move(e));
  }
}

void DaemonCore::HostsAdded(const std::vector<int>& added) {
  std::vector<int> tids;
  for (int index : added) tids.push_back(Tid::DaemonOf(HostIndex{index}).raw());
  notify_.HostsAdded(tids);
  DrainNotices();
}

void DaemonCore::RemoveHost(int index, const std::string& reason) {
  if (index == host_.value) return;
  auto rec = hosts_.Remove(index);
  if (!rec) return;
  env_->Log(fmt::format("host {} ({}) removed from the virtual machine: {}", rec->name,
                        Tid::DaemonOf(HostIndex{index}).str(), reason));
  load_.OnHostGone(index);
  if (rec->peer != 0) env_->DropPeer(rec->peer);
  for (const auto& p : asks_.HostGone(index))
    AnswerInstead(p, Code(Err::kHostFail),
                  fmt::format("the host running {} ({}) left the virtual machine while it was "
                              "asked to move ({}); pvm_notify, prun and `mpvm ps` tell its fate",
                              p.subject.str(), rec->name, reason));
  FireNotify(kNotifyHostDelete, Tid::DaemonOf(HostIndex{index}).raw());
  LoseHostTasks(index);
  if (!cfg_.member) BroadcastTable();
}

Status DaemonCore::DeleteHost(const std::string& name, const std::string& reason) {
  for (const auto& [index, h] : hosts_) {
    if (h.name != name || index == host_.value) continue;
    if (h.peer != 0) {
      ctl::Envelope e = NewEnvelope();
      e.mutable_host_leave()->set_host(index);
      e.mutable_host_leave()->set_reason(reason);
      SendPeerControl(h.peer, std::move(e));
    }
    RemoveHost(index, reason);
    return {};
  }
  return Fail(Err::kNoHost);
}

void DaemonCore::ApplyTable(const ctl::HostTable& t) {
  const auto changes = hosts_.Apply(t, host_.value);
  for (int index : changes.gone) {
    for (const auto& p : asks_.HostGone(index))
      AnswerInstead(p, Code(Err::kHostFail),
                    fmt::format("the host running {} left the virtual machine while it was "
                                "asked to move",
                                p.subject.str()));
    FireNotify(kNotifyHostDelete, Tid::DaemonOf(HostIndex{index}).raw());
    LoseHostTasks(index);
  }
  HostsAdded(changes.added);
}

void DaemonCore::StartJoin(int64_t now_ns) {
  now_ns_ = last_master_ns_ = now_ns;
  clock_started_ = true;
  ctl::Envelope e = NewEnvelope();
  e.mutable_join()->set_name(cfg_.hostname);
  e.mutable_join()->set_arch(cfg_.arch);
  e.mutable_join()->set_speed(cfg_.speed);
  e.mutable_join()->set_addr(cfg_.link_addr);
  e.mutable_join()->set_cores(cfg_.cores);
  SendPeerControl(kMasterPeer, std::move(e));
}

void DaemonCore::OnPeerFrame(PeerId p, Frame&& f) {
  const Tid dst(f.header.dst);
  // Any frame from a peer shows it is alive, not only heartbeats: a link busy
  // with a burst of messages must not look silent.
  if (cfg_.member) {
    last_master_ns_ = now_ns_;
  } else {
    hosts_.SawPeer(p, now_ns_);
  }
  // The master forwards what is addressed to another member's host (for a
  // task that moved: to the host it is on now).
  if (!cfg_.member && f.header.dst != 0 && !LocalTask(dst) && HostOf(dst) != host_.value) {
    if (!FromMember(p)) return;
    if (f.header.kind == FrameKind::kControl && dst.is_daemon()) NoteTransit(f);
    RouteFrame(f.header, f.payload);
    return;
  }
  if (f.header.kind == FrameKind::kData || (f.header.dst != 0 && !dst.is_daemon())) {
    PeerFrameForTask(std::move(f));
    return;
  }
  auto env = DecodeControl(f.payload);
  if (!env) {
    ++bad_frames_;
    env_->Log(fmt::format("peer link {}: {}; ignored", p, env.error()));
    return;
  }
  OnPeerControl(p, f.header, std::move(*env));
}

bool DaemonCore::FromMember(PeerId p) const {
  for (const auto& [index, h] : hosts_)
    if (h.peer == p) return true;
  return false;
}

void DaemonCore::PeerFrameForTask(Frame&& f) {
  // For a task here: data, or a control message such as TaskEnded.
  const Tid dst(f.header.dst);
  auto t = tasks_.find(dst);
  if (t != tasks_.end() && t->second.state != State::kLeft) {
    DeliverFrame(t->second, std::move(f));  // held until it enrols
    return;
  }
  // It moved on: back to the master, which knows where it is now.
  if (cfg_.member && where_.contains(dst.raw())) {
    ++forwarded_;
    if (auto fw = forwarding_.find(dst.raw()); fw != forwarding_.end()) ++fw->second.forwarded;
    AddFrameHop(f.header);
    RouteFrame(f.header, f.payload);
  }
}

void DaemonCore::OnPeerControl(PeerId p, const FrameHeader& h, ctl::Envelope&& env) {
  if (env.has_migrate() || env.has_migrate_offer() || env.has_migrate_accept() ||
      env.has_task_moved() || env.has_migrate_abort()) {
    HandleMoveControl(h, std::move(env));
  } else if (cfg_.member && env.has_tasks()) {  // the master lists the VM's tasks
    ctl::Envelope r = NewEnvelope();
    r.set_rid(env.rid());
    ListTasks(env.tasks().where(), r.mutable_tasks_reply());
    SendPeerControl(kMasterPeer, std::move(r));
  } else if (!cfg_.member && env.has_tasks_reply() && Tid(h.src).is_daemon()) {
    auto q = task_queries_.find(env.rid());
    if (q == task_queries_.end()) return;  // answered already (it came too late)
    for (auto& t : *env.mutable_tasks_reply()->mutable_tasks())
      *q->second.reply.add_tasks() = std::move(t);
    if (--q->second.outstanding <= 0) FinishTaskQuery(env.rid());
  } else if (env.has_remote_spawn() || env.has_remote_spawn_reply() || env.has_spawn_siblings() ||
             env.has_task_gone() || env.has_kill() || env.has_signal() || env.has_locate_query() ||
             env.has_locate_reply()) {
    HandlePeerControl(p, h, std::move(env));
  } else if (!cfg_.member && Tid(h.src).is_task()) {  // a remote task's request
    // Not one of ours, wherever it was born: a task born here may have moved.
    if (FromMember(p) && !LocalTask(Tid(h.src)))
      HandleControl(RemoteConn(Tid(h.src)), std::move(env));
  } else if (!cfg_.member) {
    OnMemberControl(p, env);
  } else {
    OnMasterControl(env);
  }
}

void DaemonCore::OnMemberControl(PeerId p, const ctl::Envelope& env) {
  if (env.has_join()) {
    AdmitHost(p, env.join());
    return;
  }
  const auto index = hosts_.SawPeer(p, now_ns_);
  if (!index) {
    env_->Log(fmt::format("peer link {}: message from a daemon that has not joined; ignored", p));
    return;
  }
  if (env.has_heartbeat()) {
    hosts_.SetTaskCount(*index, env.heartbeat().load().tasks_size());
    load_.OnReport(*index, hosts_.at(*index).speed, env.heartbeat().load(), now_ns_);
  }
}

void DaemonCore::AdmitHost(PeerId p, const ctl::JoinRequest& j) {
  for (const auto& [index, h] : hosts_)
    if (h.peer == p) {
      env_->Log(fmt::format("host {} asked to join again; ignored", h.name));
      return;
    }
  ctl::Envelope r = NewEnvelope();
  auto admitted = hosts_.Admit(p, j, now_ns_);
  if (!admitted) {
    r.mutable_join_reply()->set_code(Code(Err::kDupHost));
    r.mutable_join_reply()->set_detail(admitted.error());
    SendPeerControl(p, std::move(r));
    env_->Log(fmt::format("refused a second host named '{}'", j.name()));
    return;
  }
  const int index = *admitted;
  r.mutable_join_reply()->set_code(0);
  r.mutable_join_reply()->set_host(index);
  *r.mutable_join_reply()->mutable_table() = Table();
  SendPeerControl(p, std::move(r));
  env_->Info(fmt::format("host {} ({}) joined the virtual machine", j.name(),
                         Tid::DaemonOf(HostIndex{index}).str()));
  BroadcastTable(p);  // the joiner has the table in its reply
  HostsAdded({index});
  starting_.erase(j.name());
  if (auto w = pending_adds_.find(j.name()); w != pending_adds_.end()) {
    ReplyStatus(w->second.first, w->second.second, Tid::DaemonOf(HostIndex{index}).raw());
    pending_adds_.erase(w);
  }
}

void DaemonCore::OnMasterControl(const ctl::Envelope& env) {
  if (env.has_join_reply()) {
    const auto& r = env.join_reply();
    if (r.code() < 0) {
      join_error_ = r.detail().empty() ? std::string(PvmErrorText(r.code())) : r.detail();
      return;
    }
    host_ = HostIndex{r.host()};
    joined_ = true;
    ApplyTable(r.table());
  } else if (env.has_host_table()) {
    ApplyTable(env.host_table());
  } else if (env.has_host_leave()) {
    env_->Log(fmt::format("the master removed this host: {}", env.host_leave().reason()));
    Halt();
  }
}

void DaemonCore::OnPeerGone(PeerId p) {
  if (cfg_.member) {
    if (p == kMasterPeer && joined_) {
      env_->Log("lost the link to the master; halting (a virtual machine ends with its master)");
      Halt();
    }
    return;
  }
  for (const auto& [index, h] : hosts_)
    if (h.peer == p) {
      RemoveHost(index, "its daemon disconnected");
      return;
    }
}

void DaemonCore::OnTick(int64_t now_ns) {
  // If this daemon itself did not run for a while (a long burst, a stopped
  // process), others' silence over that gap proves nothing: restart the
  // clocks. So too at the first tick: a host that joined before it was
  // stamped with a clock that had not started.
  if (!clock_started_ || now_ns - now_ns_ > cfg_.dead_after_ns / 2) {
    last_master_ns_ = now_ns;
    hosts_.RestartClocks(now_ns);
  }
  now_ns_ = now_ns;
  clock_started_ = true;
  CheckMoveTimeouts();
  for (const auto& p : asks_.Expired(now_ns))
    AnswerInstead(p, Code(Err::kSysErr),
                  fmt::format("no answer about moving {} within {} s; `mpvm ps` shows where it "
                              "runs",
                              p.subject.str(), kMoveAnswerNs / 1'000'000'000));
  CheckLimbo();
  CheckTaskQueries();
  const bool beat = now_ns - last_beat_sent_ns_ >= cfg_.heartbeat_ns;
  if (beat) last_beat_sent_ns_ = now_ns;
  if (cfg_.member) {
    if (!joined_ || halting_) return;
    if (now_ns - last_master_ns_ > cfg_.dead_after_ns) {
      env_->Log(
          fmt::format("no word from the master for {} ms; halting (a virtual machine ends "
                      "with its master)",
                      (now_ns - last_master_ns_) / 1'000'000));
      Halt();
      return;
    }
    if (beat) {
      ctl::Envelope e = NewEnvelope();
      e.mutable_heartbeat()->set_host(host_.value);
      *e.mutable_heartbeat()->mutable_load() = LocalLoad();
      SendPeerControl(kMasterPeer, std::move(e));
    }
    return;
  }
  for (int index : hosts_.Silent(now_ns, cfg_.dead_after_ns))
    RemoveHost(index, fmt::format("no heartbeat for {} ms", cfg_.dead_after_ns / 1'000'000));
  if (beat)
    for (const auto& [index, h] : hosts_) {
      if (h.peer == 0) continue;
      ctl::Envelope e = NewEnvelope();
      e.mutable_heartbeat()->set_host(host_.value);
      SendPeerControl(h.peer, std::move(e));
    }
}

// ---- Cross-host: routing, remote spawn, task exits ---------------------------

void DaemonCore::ForgetOwner(int tid) {
  mailbox_.ForgetOwner(tid);
  groups_.ForgetMember(tid);
  if (auto rc = remote_conns_.find(tid); rc != remote_conns_.end()) {
    DropWaitersOf(rc->second);
    conns_.erase(rc->second);
    remote_conns_.erase(rc);
  }
}

ConnId DaemonCore::RemoteConn(Tid task) {
  auto it = remote_conns_.find(task.raw());
  if (it != remote_conns_.end()) return it->second;
  const ConnId c = next_remote_conn_++;
  conns_[c] = Conn{task, false, true, Tid()};
  remote_conns_[task.raw()] = c;
  return c;
}

void DaemonCore::NoteRemoteGone(int tid) {
  if (!gone_remote_.insert(tid).second) return;
  gone_order_.push_back(tid);
  if (gone_order_.size() > 65536) {
    gone_remote_.erase(gone_order_.front());
    gone_order_.pop_front();
  }
}

bool DaemonCore::SinkAlive(int tid) const {
  const Tid t(tid);
  const int at = HostOf(t);  // a sink may have moved
  return at == host_.value ? tasks_.contains(t) : hosts_.contains(at);
}

void DaemonCore::RouteFrame(const FrameHeader& h, std::span<const uint8_t> payload) {
  const int index = HostOf(Tid(h.dst));
  if (cfg_.member) {  // members reach every other host through the master
    if (joined_) env_->SendToPeer(kMasterPeer, h, payload);
    return;
  }
  auto it = hosts_.find(index);
  if (it == hosts_.end() || it->second.peer == 0) return;  // host gone: dropped, as in PVM
  env_->SendToPeer(it->second.peer, h, payload);
}

void DaemonCore::SendControlTo(Tid dst, ctl::Envelope&& env) {
  env.set_version(kControlVersion);
  if (dst == host_tid()) return;
  if (LocalTask(dst) || (dst.host() == host_ && !where_.contains(dst.raw()))) {
    auto t = tasks_.find(dst);
    if (t != tasks_.end() && t->second.state == State::kEnrolled)
      Reply(t->second.conn, env.rid(), std::move(env));
    return;
  }
  auto bytes = EncodeControl(env);
  RouteFrame(ControlHeader(host_tid().raw(), dst.raw()), bytes);
}

void DaemonCore::BroadcastTaskGone(int tid, PeerId except) {
  remote_children_.erase(tid);
  if (hosts_.size() < 2) return;
  ctl::Envelope e = NewEnvelope();
  e.mutable_task_gone()->set_tid(tid);
  auto bytes = EncodeControl(e);
  if (cfg_.member) {
    if (joined_) env_->SendToPeer(kMasterPeer, ControlHeader(host_tid().raw(), 0), bytes);
    return;
  }
  for (const auto& [index, h] : hosts_)
    if (h.peer != 0 && h.peer != except)
      env_->SendToPeer(h.peer, ControlHeader(host_tid().raw(), 0), bytes);
}

void DaemonCore::LoseHostTasks(int index) {
  // Copies that arrived here from it and enrolled were committed: this host
  // registers them now, so they are not counted among its lost tasks.
  std::vector<Tid> arrived;
  for (const auto& [tid, task] : tasks_)
    if (task.restoring && task.from_host == index) arrived.push_back(tid);
  for (Tid t : arrived) ClaimArrival(t);
  // A copy that has not enrolled: if the task commits it (the source died
  // after the image was restored), it enrols in moments; if not, it waits
  // for a commit that will never come.
  for (auto& [tid, task] : tasks_)
    if (task.restoring && task.from_host == index && !task.committed)
      task.restore_deadline_ns = std::min(task.restore_deadline_ns, now_ns_ + kOrphanRestoreNs);
  // Moves to it that have not frozen their task yet fail now.
  std::vector<Tid> failed;
  for (const auto& [id, mv] : moves_)
    if (mv.dest == index && mv.state != MoveState::kFrozen) failed.push_back(mv.tid);
  for (Tid t : failed) {
    env_->CancelMove(t);
    OnMoveFailed(t, "the destination host died", false, MoveEvent::kDestinationDied);
  }
  // Every task that was there, by where it is now rather than where it was
  // born; the master waits a while for one that was moving away from it.
  std::set<int> lost;
  for (int t : mailbox_.Owners()) lost.insert(t);
  for (int t : groups_.Members()) lost.insert(t);
  for (const auto& [tid, c] : remote_conns_) lost.insert(tid);
  for (int t : notify_.WatchedTasks()) lost.insert(t);
  for (const auto& [tid, parent] : remote_children_) lost.insert(tid);
  std::erase_if(lost, [&](int t) { return HostOf(Tid(t)) != index; });
  for (auto it = in_transit_.begin(); it != in_transit_.end();) {
    if (it->second.from == index && lost.erase(it->first) > 0) {
      limbo_[it->first] = now_ns_ + kLimboNs;
    } else if (it->second.to != index) {
      ++it;
      continue;
    }
    it = in_transit_.erase(it);
  }
  for (int t : lost) LoseTask(t);
  std::erase_if(where_, [&](const auto& w) { return w.second == index; });
  // Spawns waiting on it fail there.
  std::vector<uint64_t> done;
  for (auto& [id, ps] : spawns_) {
    auto r = ps.ranks.find(index);
    if (r == ps.ranks.end() || index == host_.value) continue;
    for (int rank : r->second) ps.tids[static_cast<size_t>(rank)] = Code(Err::kHostFail);
    ps.ranks.erase(r);
    if (--ps.outstanding == 0) done.push_back(id);
  }
  for (uint64_t id : done) FinishSpawn(id);
}

void DaemonCore::LoseTask(int tid) {
  // Its mailbox entries and group places go; watchers hear it exited;
  // its spawner hears it was lost with its host.
  ForgetOwner(tid);
  FireNotify(kNotifyTaskExit, tid);
  if (auto it = remote_children_.find(tid); it != remote_children_.end()) {
    ctl::Envelope e = NewEnvelope();
    e.mutable_task_ended()->set_tid(tid);
    e.mutable_task_ended()->set_host_died(true);
    SendControlTo(Tid(it->second), std::move(e));
    remote_children_.erase(it);
  }
}

void DaemonCore::DoLocate(ConnId c, const ctl::Envelope& env) {
  const Tid t(env.locate().tid());
  ctl::Envelope r = NewEnvelope();
  auto* lr = r.mutable_locate_reply();
  lr->set_tid(t.raw());
  if (cfg_.link_key.empty() || !t.is_task() || LocalTask(t) || HostOf(t) == host_.value ||
      !hosts_.contains(HostOf(t))) {
    lr->set_code(Code(Err::kNoTask));
    lr->set_detail(cfg_.link_key.empty() ? "not a multi-host VM" : "no such task on another host");
    Reply(c, env.rid(), std::move(r));
    return;
  }
  const uint64_t q = next_query_++;
  locates_[q] = {c, env.rid()};
  ctl::Envelope ask = NewEnvelope();
  ask.mutable_locate_query()->set_tid(t.raw());
  ask.mutable_locate_query()->set_query(q);
  SendControlTo(Tid::DaemonOf(HostIndex{HostOf(t)}), std::move(ask));
}

void DaemonCore::HandlePeerControl(PeerId p, const FrameHeader& h, ctl::Envelope&& env) {
  if (env.has_locate_query()) {
    OnLocateQuery(h, env);
  } else if (env.has_locate_reply()) {
    auto it = locates_.find(env.locate_reply().query());
    if (it == locates_.end()) return;
    auto [conn, rid] = it->second;
    locates_.erase(it);
    auto host = hosts_.find(Tid(h.src).host().value);
    if (host != hosts_.end() && env.locate_reply().code() == 0)
      env.mutable_locate_reply()->set_addr(host->second.addr.empty() ? cfg_.master_ip
                                                                     : host->second.addr);
    Reply(conn, rid, std::move(env));
  } else if (env.has_remote_spawn()) {
    const auto& rs = env.remote_spawn();
    std::vector<int> ranks(rs.ranks().begin(), rs.ranks().end());
    auto tids = SpawnHere(rs.request(), Tid(rs.spawner()), ranks, /*await_siblings=*/true);
    ctl::Envelope r = NewEnvelope();
    r.mutable_remote_spawn_reply()->set_spawn_id(rs.spawn_id());
    for (int t : tids) r.mutable_remote_spawn_reply()->add_tids(t);
    SendControlTo(Tid(h.src), std::move(r));
  } else if (env.has_remote_spawn_reply()) {
    OnRemoteSpawnReply(Tid(h.src).host().value, env.remote_spawn_reply());
  } else if (env.has_spawn_siblings()) {
    ApplySiblings(
        std::vector<int>(env.spawn_siblings().tids().begin(), env.spawn_siblings().tids().end()));
  } else if (env.has_task_gone()) {
    const int tid = env.task_gone().tid();
    remote_children_.erase(tid);
    ForgetJobTask(tid);
    where_.erase(tid);
    EndForwarding(tid);
    NoteRemoteGone(tid);
    FireNotify(kNotifyTaskExit, tid);
    if (!cfg_.member) ForgetOwner(tid);
    if (!cfg_.member) BroadcastTaskGone(tid, p);  // the master passes it on
  } else {
    OnPeerSignal(std::move(env));
  }
}

void DaemonCore::OnLocateQuery(const FrameHeader& h, const ctl::Envelope& env) {
  // Where a task of ours accepts direct links; the asker adds our address.
  const auto& q = env.locate_query();
  auto t = tasks_.find(Tid(q.tid()));
  if (t == tasks_.end() && where_.contains(q.tid())) {
    // It moved on: ask where it is now (the answer goes to the asker).
    const int at = cfg_.member ? 1 : where_[q.tid()];
    auto bytes = EncodeControl(env);
    FrameHeader fh = h;
    fh.dst = Tid::DaemonOf(HostIndex{at}).raw();
    if (at != host_.value) RouteFrame(fh, bytes);
    return;
  }
  ctl::Envelope r = NewEnvelope();
  auto* lr = r.mutable_locate_reply();
  lr->set_tid(q.tid());
  lr->set_query(q.query());
  if (t == tasks_.end() || t->second.state != State::kEnrolled || t->second.link_port == 0) {
    lr->set_code(Code(Err::kNoTask));
    lr->set_detail("the task is gone or accepts no direct links");
  } else {
    lr->set_port(t->second.link_port);
  }
  SendControlTo(Tid(h.src), std::move(r));
}

void DaemonCore::OnRemoteSpawnReply(int from, const ctl::RemoteSpawnReply& rr) {
  auto it = spawns_.find(rr.spawn_id());
  if (it == spawns_.end() || !it->second.ranks.contains(from)) return;
  PendingSpawn& ps = it->second;
  const auto& ranks = ps.ranks[from];
  for (int k = 0; k < rr.tids_size() && k < static_cast<int>(ranks.size()); ++k) {
    ps.tids[static_cast<size_t>(ranks[static_cast<size_t>(k)])] = rr.tids(k);
    if (rr.tids(k) > 0)
      remote_children_[rr.tids(k)] = conns_.contains(ps.conn) ? conns_[ps.conn].tid.raw() : 0;
  }
  if (--ps.outstanding == 0) FinishSpawn(rr.spawn_id());
}

void DaemonCore::OnPeerSignal(ctl::Envelope&& env) {
  // kill / signal for a task here
  const Tid target(env.has_kill() ? env.kill().tid() : env.signal().tid());
  auto t = tasks_.find(target);
  if (t == tasks_.end() && where_.contains(target.raw())) {  // it moved on: follow it
    const int at = cfg_.member ? 1 : where_[target.raw()];
    if (at != host_.value) SendControlTo(Tid::DaemonOf(HostIndex{at}), std::move(env));
    return;
  }
  if (t == tasks_.end() || t->second.exited || t->second.pid <= 0) return;
  env_->Signal(t->second.pid, env.has_kill() ? SIGTERM : env.signal().signum());
}

}  // namespace mpvm
