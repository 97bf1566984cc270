#include "core/task_table.h"

namespace mpvm {

Tid TaskTable::AllocTid(HostIndex host) {
  for (int tries = 0; tries < Tid::kLocalMask; ++tries) {
    Tid t = Tid::Make(host, next_local_);
    next_local_ = next_local_ >= Tid::kLocalMask ? 1 : next_local_ + 1;
    if (!tasks_.contains(t)) return t;
  }
  return Tid();
}

Task* TaskTable::Here(Tid t) {
  auto it = tasks_.find(t);
  return it != tasks_.end() && it->second.here() ? &it->second : nullptr;
}

const Task* TaskTable::Here(Tid t) const {
  auto it = tasks_.find(t);
  return it != tasks_.end() && it->second.here() ? &it->second : nullptr;
}

std::vector<int> TaskTable::Pids() const {
  std::vector<int> out;
  for (const auto& [tid, t] : tasks_)
    if (t.spawned && t.alive()) out.push_back(t.pid);
  return out;
}

int TaskTable::Count() const {
  int n = 0;
  for (const auto& [tid, t] : tasks_)
    if (t.state != TaskState::kLeft && !t.is_tool) ++n;
  return n;
}

bool TaskTable::List(int where, Tid host_tid, ctl::TasksReply* rep) const {
  bool found = false;
  for (const auto& [tid, t] : tasks_) {
    if (t.state == TaskState::kLeft || (t.restoring && !t.committed)) continue;  // not here yet
    if (where != 0 && where != host_tid.raw() && where != tid.raw()) continue;
    found = true;
    auto* te = rep->add_tasks();
    te->set_tid(tid.raw());
    te->set_ptid(t.ptid > 0 ? t.ptid : 0);
    te->set_host(host_tid.raw());
    te->set_flag((t.state == TaskState::kEnrolled ? 4 : 0) | (t.is_tool ? 0x100 : 0));
    te->set_a_out(t.a_out);
    te->set_pid(t.pid);
    te->set_moves(t.moves);
    te->set_pinned(t.pinned_why);
  }
  return found;
}

Conn* ConnTable::Find(ConnId c) {
  auto it = conns_.find(c);
  return it == conns_.end() ? nullptr : &it->second;
}

ConnId ConnTable::RemoteConn(Tid t) {
  auto it = remote_.find(t.raw());
  if (it != remote_.end()) return it->second;
  const ConnId c = next_remote_++;
  conns_[c] = Conn{t, false, true, Tid()};
  remote_[t.raw()] = c;
  return c;
}

ConnId ConnTable::DropRemote(int tid) {
  auto it = remote_.find(tid);
  if (it == remote_.end()) return 0;
  const ConnId c = it->second;
  conns_.erase(c);
  remote_.erase(it);
  return c;
}

std::vector<int> ConnTable::RemoteTasks() const {
  std::vector<int> out;
  for (const auto& [tid, c] : remote_) out.push_back(tid);
  return out;
}

size_t ConnTable::ForwardLinks() const {
  size_t n = 0;
  for (const auto& [id, c] : conns_) n += c.forward_for.raw() != 0;
  return n;
}

}  // namespace mpvm
