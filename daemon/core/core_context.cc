#include "core/core_context.h"

#include <fmt/format.h>

#include "mpvm/control.h"
#include "mpvm/retransmit.h"

namespace mpvm {
namespace {
constexpr int kDataSignature = 0x408c41;  // pvm3.h's, for pvm_config
}  // namespace

CoreContext::CoreContext(DaemonConfig c, DaemonEnv* e)
    : cfg(std::move(c)), env(e), host(cfg.member ? HostIndex{0} : cfg.host) {
  if (!cfg.member)
    hosts.AddSelf(host.value, HostRec{cfg.hostname, cfg.arch, cfg.speed, 0, 0, 0, "", cfg.cores});
}

int CoreContext::HostOf(Tid t) const {
  if (t.is_task()) {
    if (LocalTask(t)) return host.value;
    if (auto at = where.At(t.raw())) return *at;
  }
  return t.host().value;
}

bool CoreContext::SinkAlive(int tid) const {
  const Tid t(tid);
  const int at = HostOf(t);  // a sink may have moved
  return at == host.value ? tasks.contains(t) : hosts.contains(at);
}

void CoreContext::Reply(ConnId c, uint64_t rid, ctl::Envelope&& env) {
  env.set_version(kControlVersion);
  env.set_rid(rid);
  if (!asks.empty() && env.has_status())
    if (auto it = conns.find(c); it != conns.end()) asks.Answered(it->second.tid, rid);
  if (auto it = conns.find(c); it != conns.end() && it->second.remote) {
    SendControlTo(it->second.tid, std::move(env));  // through the task's daemon
    return;
  }
  auto bytes = EncodeControl(env);
  this->env->Send(c, ControlHeader(host_tid().raw(), 0), {}, bytes);
}

void CoreContext::ReplyStatus(ConnId c, uint64_t rid, int code, std::string detail) {
  ctl::Envelope e = NewEnvelope();
  e.mutable_status()->set_code(code);
  e.mutable_status()->set_detail(std::move(detail));
  Reply(c, rid, std::move(e));
}

void CoreContext::DrainReplies(ReplyOutbox& out) {
  for (auto& r : out.Take()) Reply(r.conn, r.rid, std::move(r.env));
}

void CoreContext::SendToTask(Tid dst, int tag, int ctx, Message& m) {
  auto t = tasks.find(dst);
  const bool remote = !LocalTask(dst);
  if (remote && dst.host() == host && !where.contains(dst.raw())) return;  // no such task
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

void CoreContext::DeliverFrame(Task& t, Frame&& f) {
  if (t.state == TaskState::kSpawned) {
    t.held.push_back(std::move(f));
    return;
  }
  if (t.state != TaskState::kEnrolled) {
    TellGone(f.header);  // it left the VM
    return;
  }
  NoteAnswerTo(t.tid, f);
  std::span<const uint8_t> all(f.payload);
  env->Send(t.conn, f.header, all.subspan(0, f.header.aux_length),
            all.subspan(f.header.aux_length));
}

void CoreContext::TellGone(const FrameHeader& h) {
  const bool data = h.kind == FrameKind::kData && h.seq != 0;
  const bool probe = h.kind == FrameKind::kAck && h.tag == kAckTagProbe;
  if ((!data && !probe) || !Tid(h.src).is_task()) return;
  Frame f;
  f.header.kind = FrameKind::kAck;
  f.header.src = h.dst;
  f.header.dst = h.src;
  f.header.tag = kAckTagGone;
  if (Task* sender = tasks.Here(Tid(h.src))) {
    DeliverFrame(*sender, std::move(f));
    return;
  }
  RouteFrame(f.header, f.payload);
}

void CoreContext::SendControlTo(Tid dst, ctl::Envelope&& env) {
  env.set_version(kControlVersion);
  if (dst == host_tid()) return;
  if (LocalTask(dst) || (dst.host() == host && !where.contains(dst.raw()))) {
    auto t = tasks.find(dst);
    if (t != tasks.end() && t->second.state == TaskState::kEnrolled)
      Reply(t->second.conn, env.rid(), std::move(env));
    return;
  }
  auto bytes = EncodeControl(env);
  RouteFrame(ControlHeader(host_tid().raw(), dst.raw()), bytes);
}

void CoreContext::RouteFrame(const FrameHeader& h, std::span<const uint8_t> payload) {
  const int index = HostOf(Tid(h.dst));
  if (cfg.member) {  // members reach every other host through the master
    if (joined) env->SendToPeer(kMasterPeer, h, payload);
    return;
  }
  auto it = hosts.find(index);
  if (it == hosts.end() || it->second.peer == 0) return;  // host gone: dropped, as in PVM
  env->SendToPeer(it->second.peer, h, payload);
}

void CoreContext::SendPeerControl(PeerId p, ctl::Envelope&& env) {
  env.set_version(kControlVersion);
  auto bytes = EncodeControl(env);
  this->env->SendToPeer(p, ControlHeader(host_tid().raw(), 0), bytes);
}

void CoreContext::Trace(int sink, const std::string& json) {
  if (sink == 0) return;
  Message m(kEncDefault);
  const int len = static_cast<int>(json.size());
  (void)m.Pack(DataType::kInt, &len, 1, 1);
  (void)m.Pack(DataType::kByte, json.data(), len, 1);
  SendToTask(Tid(sink), kTraceTag, kSystemCtx, m);
}

void CoreContext::BroadcastTaskGone(int tid, PeerId except) {
  if (hosts.size() < 2) return;
  ctl::Envelope e = NewEnvelope();
  e.mutable_task_gone()->set_tid(tid);
  auto bytes = EncodeControl(e);
  if (cfg.member) {
    if (joined) env->SendToPeer(kMasterPeer, ControlHeader(host_tid().raw(), 0), bytes);
    return;
  }
  for (const auto& [index, h] : hosts)
    if (h.peer != 0 && h.peer != except)
      env->SendToPeer(h.peer, ControlHeader(host_tid().raw(), 0), bytes);
}

void CoreContext::SendEnrolReply(Task& t, ConnId c, uint64_t rid) {
  ctl::Envelope e = NewEnvelope();
  auto* rep = e.mutable_enrol_reply();
  rep->set_code(0);
  rep->set_tid(t.tid.raw());
  rep->set_ptid(t.ptid);
  for (Tid s : t.siblings) rep->add_siblings(s.raw());
  rep->set_host_tid(host_tid().raw());
  rep->set_host_name(cfg.hostname);
  rep->set_arch(cfg.arch);
  rep->set_output_tid(t.out_tid);
  rep->set_output_code(t.out_code);
  rep->set_output_ctx(t.out_ctx);
  rep->set_trace_tid(t.trace_tid);
  rep->set_trace_code(t.trace_code);
  rep->set_ctx(t.ctx);
  if (!cfg.link_key.empty()) {
    rep->set_link_key(cfg.link_key);
    rep->set_link_encrypt(cfg.link_encrypt);
  }
  Reply(c, rid, std::move(e));
  while (!t.held.empty()) {
    Frame f = std::move(t.held.front());
    t.held.pop_front();
    DeliverFrame(t, std::move(f));
  }
}

void CoreContext::SendOutputRecord(const Task& t, int count, std::string_view data,
                                   bool is_stderr) {
  Message m(kEncDefault);
  int head[2] = {t.tid.raw(), count};
  (void)m.Pack(DataType::kInt, head, 2, 1);
  if (count > 0) (void)m.Pack(DataType::kByte, data.data(), count, 1);
  SendToTask(Tid(t.out_tid), is_stderr && t.stderr_apart ? kStderrTag : t.out_code, t.out_ctx, m);
}

void CoreContext::FireNotify(int what, int target) {
  notify.Fire(what, target);
  DrainNotices();
}

void CoreContext::AddNotify(const NotifyReg& reg) {
  if (reg.what == kNotifyHostAdd) {
    notify.WatchHostAdds(reg.watcher, reg.tag, reg.ctx, reg.count, false);
    return;
  }
  notify.Watch(reg, NotifyTargetExists(reg.what, reg.target));
  DrainNotices();
}

void CoreContext::DrainNotices() {
  for (const auto& n : notify.TakeMessages()) {
    Message m(kEncDefault);
    (void)m.Pack(DataType::kInt, n.ints.data(), static_cast<int>(n.ints.size()), 1);
    SendToTask(n.to, n.tag, n.ctx, m);
  }
}

bool CoreContext::NotifyTargetExists(int what, int target) const {
  if (const int at = HostOf(Tid(target)); what == kNotifyTaskExit && at != host.value) {
    // Its host (where it runs now, which may not be where it was born)
    // tells us when it goes (TaskGone); it may have told us already.
    return hosts.contains(at) && !where.KnownGone(target);
  }
  if (what == kNotifyTaskExit) {
    auto t = tasks.find(Tid(target));
    return t != tasks.end() && t->second.state != TaskState::kLeft;
  }
  const Tid h(target);
  return h.is_daemon() && hosts.contains(h.host().value);
}

void CoreContext::AnswerAsker(Tid asker, uint64_t rid, int code, const std::string& detail) {
  if (asker.raw() == 0) return;
  ctl::Envelope e = NewEnvelope();
  e.set_rid(rid);
  e.mutable_status()->set_code(code);
  e.mutable_status()->set_detail(detail);
  SendControlTo(asker, std::move(e));
}

void CoreContext::AnswerInstead(const PendingAnswer& p, int code, const std::string& why) {
  env->Log(
      fmt::format("answering {}'s request to move {}: {}", p.asker.str(), p.subject.str(), why));
  ctl::Envelope e = NewEnvelope();
  e.set_rid(p.rid);
  e.mutable_status()->set_code(code);
  e.mutable_status()->set_detail(why);
  SendControlTo(p.asker, std::move(e));
}

void CoreContext::NoteAnswerTo(Tid t, const Frame& f) {
  if (asks.empty() || f.header.kind != FrameKind::kControl) return;
  if (auto env = DecodeControl(f.payload); env && env->has_status()) asks.Answered(t, env->rid());
}

void CoreContext::ForgetOwner(int tid) {
  mailbox.ForgetOwner(tid);
  groups.ForgetMember(tid);
  if (const ConnId c = conns.DropRemote(tid); c != 0) DropWaitersOf(c);
}

void CoreContext::DropWaitersOf(ConnId c) {
  mailbox.DropWaitersOf(c);
  groups.DropWaitersOf(c);
}

ctl::HostTable CoreContext::Table() const {
  return hosts.ToProto(host.value, tasks.Count(), kDataSignature);
}

ctl::LoadReport CoreContext::LocalLoad() const {
  std::vector<LocalTaskInfo> mine;
  for (const auto& [tid, t] : tasks)
    // A task arriving here (restoring) counts here already.
    if (t.state != TaskState::kLeft && !t.is_tool) {
      LoadSampler::Sampled s = samples.Get(tid.raw());
      // A task that has not worked yet counts as load while it starts: while
      // it waits for its siblings (a spawn over several hosts), and while
      // younger than the balancer's minimum age. A host whose new tasks
      // counted for nothing drew moves in, then had to send them out again.
      if (!t.worked && (t.awaiting_siblings || now_ns - t.spawned_ns < cfg.balance_min_age_ns))
        s.runnable = 1;
      // Pinned: a move of it was refused, or it reads prun's stdin.
      const bool pinned = !t.pinned_why.empty() || !t.spec.stdin_path.empty();
      mine.push_back({tid.raw(), t.spawned_ns, t.moved_ns, pinned, s.runnable, s.cpu_ns,
                      s.rss_bytes, traffic.Rates(tid.raw(), now_ns)});
    }
  ctl::LoadReport r = MakeLoadReport(cfg.speed, cfg.cores, mine, now_ns);
  r.set_background(background.value());
  return r;
}

void CoreContext::PublishWork() {
  if (!cfg.virtual_work) return;
  int working = 0;
  for (const auto& [tid, t] : tasks)
    working += t.working && t.state != TaskState::kLeft && !t.exited && !t.restoring;
  if (working == published_working) return;
  published_working = working;
  load_changed = true;
  env->PublishVirtualCpu(cfg.speed, working);
}

void CoreContext::SampleTasks() {
  if (sampled_ns != 0 && now_ns - sampled_ns < kSampleEveryNs) return;
  sampled_ns = now_ns;
  std::vector<int> ours;
  int running = 0;
  for (const auto& [tid, t] : tasks)
    if (t.pid > 0 && !t.is_tool && t.state != TaskState::kLeft) {
      ProcessSample s = env->Sample(t.pid);
      ours.push_back(t.pid);
      running += s.ok && s.runnable;
      // Virtual work sleeps: a task is ready while it works. Averaged as
      // the kernel's state is: a task that works and rests in turns (E4's
      // background) counts for the time it works, not for its phase of the
      // moment, which drew moves to a host that looked idle for 0.1 s.
      if (cfg.virtual_work && (t.worked || t.working)) s.runnable = t.working;
      samples.Add(tid.raw(), s, now_ns);
    }
  background.Add(env->SampleBackground(ours, running));
  samples.Prune(now_ns - 5'000'000'000);
  traffic.Prune(now_ns - 2 * TrafficMeter::kQuietNs);
}

balancer::ClusterLoad CoreContext::LoadSnapshot() {
  load.OnReport(host.value, cfg.speed, LocalLoad(), now_ns);
  return load.Snapshot();
}

}  // namespace mpvm
