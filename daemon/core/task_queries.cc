#include "core/task_queries.h"

#include <fmt/format.h>

#include <algorithm>

#include "mpvm/control.h"

namespace mpvm {

void TaskQueries::DoTasks(ConnId c, const ctl::Envelope& env) {
  const int where = env.tasks().where();
  // The master answers for the whole VM: all hosts (where 0), another host,
  // or a task that runs on another host. It asks them and answers once all
  // have (or after 2 s, without a host that said nothing).
  std::vector<int> ask;
  if (!cx_.cfg.member && cx_.hosts.size() > 1) {
    const Tid w(where);
    if (where == 0) {
      for (const auto& [index, h] : cx_.hosts)
        if (index != cx_.host.value && h.peer != 0) ask.push_back(index);
    } else if (w.is_daemon() && w.host() != cx_.host && cx_.hosts.contains(w.host().value)) {
      ask.push_back(w.host().value);
    } else if (w.is_task() && !cx_.LocalTask(w) && cx_.HostOf(w) != cx_.host.value &&
               cx_.hosts.contains(cx_.HostOf(w))) {
      ask.push_back(cx_.HostOf(w));
    }
  }
  if (ask.empty()) {
    ctl::Envelope e = NewEnvelope();
    auto* rep = e.mutable_tasks_reply();
    const bool found = cx_.tasks.List(where, cx_.host_tid(), rep);
    if (where != 0 && where != cx_.host_tid().raw() && !found)
      rep->set_code(PvmCode(Tid(where).host() == cx_.host ? Err::kNoTask : Err::kNoHost));
    cx_.Reply(c, env.rid(), std::move(e));
    return;
  }
  const uint64_t id = next_task_query_++;
  TaskQuery& q = task_queries_[id];
  q.conn = c;
  q.rid = env.rid();
  q.where = where;
  q.outstanding = static_cast<int>(ask.size());
  q.deadline_ns = cx_.now_ns + 2'000'000'000;
  if (where == 0) cx_.tasks.List(0, cx_.host_tid(), &q.reply);
  for (int index : ask) {
    ctl::Envelope e = NewEnvelope();
    e.set_rid(id);
    e.mutable_tasks()->set_where(where == 0 ? Tid::DaemonOf(HostIndex{index}).raw() : where);
    cx_.SendPeerControl(cx_.hosts.at(index).peer, std::move(e));
  }
}

void TaskQueries::FinishTaskQuery(uint64_t id) {
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
    q.reply.set_code(PvmCode(Tid(q.where).is_task() ? Err::kNoTask : Err::kNoHost));
  if (!cx_.conns.contains(q.conn)) return;  // the asker left
  ctl::Envelope e = NewEnvelope();
  *e.mutable_tasks_reply() = std::move(q.reply);
  cx_.Reply(q.conn, q.rid, std::move(e));
}

void TaskQueries::CheckTaskQueries() {
  std::vector<uint64_t> late;
  for (const auto& [id, q] : task_queries_)
    if (cx_.now_ns > q.deadline_ns) late.push_back(id);
  for (uint64_t id : late) FinishTaskQuery(id);
}

void TaskQueries::DoLocate(ConnId c, const ctl::Envelope& env) {
  const Tid t(env.locate().tid());
  ctl::Envelope r = NewEnvelope();
  auto* lr = r.mutable_locate_reply();
  lr->set_tid(t.raw());
  if (cx_.cfg.link_key.empty() || !t.is_task() || cx_.LocalTask(t) ||
      cx_.HostOf(t) == cx_.host.value || !cx_.hosts.contains(cx_.HostOf(t))) {
    lr->set_code(PvmCode(Err::kNoTask));
    lr->set_detail(cx_.cfg.link_key.empty() ? "not a multi-host VM"
                                            : "no such task on another host");
    cx_.Reply(c, env.rid(), std::move(r));
    return;
  }
  const uint64_t q = next_query_++;
  locates_[q] = {c, env.rid()};
  ctl::Envelope ask = NewEnvelope();
  ask.mutable_locate_query()->set_tid(t.raw());
  ask.mutable_locate_query()->set_query(q);
  cx_.SendControlTo(Tid::DaemonOf(HostIndex{cx_.HostOf(t)}), std::move(ask));
}

void TaskQueries::OnLocateQuery(const FrameHeader& h, const ctl::Envelope& env) {
  // Where a task of ours accepts direct links; the asker adds our address.
  const auto& q = env.locate_query();
  auto t = cx_.tasks.find(Tid(q.tid()));
  if (t == cx_.tasks.end() && cx_.where.contains(q.tid())) {
    // It moved on: ask where it is now (the answer goes to the asker).
    const int at = cx_.cfg.member ? 1 : *cx_.where.At(q.tid());
    auto bytes = EncodeControl(env);
    FrameHeader fh = h;
    fh.dst = Tid::DaemonOf(HostIndex{at}).raw();
    if (at != cx_.host.value) cx_.RouteFrame(fh, bytes);
    return;
  }
  ctl::Envelope r = NewEnvelope();
  auto* lr = r.mutable_locate_reply();
  lr->set_tid(q.tid());
  lr->set_query(q.query());
  if (t == cx_.tasks.end() || t->second.state != TaskState::kEnrolled || t->second.link_port == 0) {
    lr->set_code(PvmCode(Err::kNoTask));
    lr->set_detail("the task is gone or accepts no direct links");
  } else {
    lr->set_port(t->second.link_port);
  }
  cx_.SendControlTo(Tid(h.src), std::move(r));
}

void TaskQueries::OnTasksReply(ctl::Envelope&& env) {
  auto q = task_queries_.find(env.rid());
  if (q == task_queries_.end()) return;  // answered already (it came too late)
  for (auto& t : *env.mutable_tasks_reply()->mutable_tasks())
    *q->second.reply.add_tasks() = std::move(t);
  if (--q->second.outstanding <= 0) FinishTaskQuery(env.rid());
}

void TaskQueries::OnPeerTasks(const ctl::Envelope& env) {
  ctl::Envelope r = NewEnvelope();
  r.set_rid(env.rid());
  cx_.tasks.List(env.tasks().where(), cx_.host_tid(), r.mutable_tasks_reply());
  cx_.SendPeerControl(kMasterPeer, std::move(r));
}

void TaskQueries::OnLocateReply(Tid from, ctl::Envelope&& env) {
  auto it = locates_.find(env.locate_reply().query());
  if (it == locates_.end()) return;
  auto [conn, rid] = it->second;
  locates_.erase(it);
  auto host = cx_.hosts.find(from.host().value);
  if (host != cx_.hosts.end() && env.locate_reply().code() == 0)
    env.mutable_locate_reply()->set_addr(host->second.addr.empty() ? cx_.cfg.master_ip
                                                                   : host->second.addr);
  cx_.Reply(conn, rid, std::move(env));
}

void TaskQueries::DoLocation(ConnId c, const ctl::Envelope& env) {
  const Tid t(env.location().tid());
  const int at = cx_.HostOf(t);
  const bool known = cx_.LocalTask(t) || (at != cx_.host.value && cx_.hosts.contains(at));
  cx_.ReplyStatus(c, env.rid(), known ? Tid::DaemonOf(HostIndex{at}).raw() : PvmCode(Err::kNoTask));
}

}  // namespace mpvm
