#include "host_table.h"

#include <fmt/format.h>

#include <algorithm>

#include "mpvm/tid.h"

namespace mpvm {

mpvm::expected<int, std::string> HostTable::Admit(PeerId p, const ctl::JoinRequest& j,
                                                  int64_t now) {
  bool taken = j.name().empty();
  for (const auto& [index, h] : hosts_) taken |= h.name == j.name();
  if (taken)
    return mpvm::unexpected(
        fmt::format("a host named '{}' is already in the virtual machine", j.name()));
  const int index = next_host_++;
  hosts_[index] = HostRec{j.name(),
                          j.arch(),
                          j.speed() > 0 ? j.speed() : 1000,
                          0,
                          p,
                          now,
                          j.addr(),
                          std::max(1, j.cores())};
  return index;
}

std::optional<int> HostTable::SawPeer(PeerId p, int64_t now) {
  for (auto& [index, h] : hosts_)
    if (h.peer == p) {
      h.last_seen_ns = now;
      return index;
    }
  return std::nullopt;
}

std::vector<int> HostTable::Silent(int64_t now, int64_t dead_after) const {
  std::vector<int> dead;
  for (const auto& [index, h] : hosts_)
    if (h.peer != 0 && now - h.last_seen_ns > dead_after) dead.push_back(index);
  return dead;
}

void HostTable::RestartClocks(int64_t now) {
  for (auto& [index, h] : hosts_) h.last_seen_ns = now;
}

void HostTable::SetTaskCount(int index, int ntasks) {
  if (auto it = hosts_.find(index); it != hosts_.end()) it->second.ntasks = ntasks;
}

std::optional<HostRec> HostTable::Remove(int index) {
  auto it = hosts_.find(index);
  if (it == hosts_.end()) return std::nullopt;
  HostRec rec = std::move(it->second);
  hosts_.erase(it);
  return rec;
}

HostTable::Changes HostTable::Apply(const ctl::HostTable& t, int self) {
  Map next;
  Changes c;
  for (const auto& e : t.hosts()) {
    const int index = Tid(e.tid()).host().value;
    next[index] =
        HostRec{e.name(), e.arch(), e.speed(), e.ntasks(), 0, 0, e.addr(), std::max(1, e.cores())};
    if (!hosts_.contains(index) && index != self) c.added.push_back(index);
  }
  for (const auto& [index, h] : hosts_)
    if (!next.contains(index)) c.gone.push_back(index);
  hosts_ = std::move(next);
  return c;
}

ctl::HostTable HostTable::ToProto(int self, int self_ntasks, int data_signature) const {
  ctl::HostTable t;
  for (const auto& [index, h] : hosts_) {
    auto* e = t.add_hosts();
    e->set_tid(Tid::DaemonOf(HostIndex{index}).raw());
    e->set_name(h.name);
    e->set_arch(h.arch);
    e->set_speed(h.speed);
    e->set_dsig(data_signature);
    e->set_ntasks(index == self ? self_ntasks : h.ntasks);
    e->set_addr(h.addr);
    e->set_cores(h.cores);
  }
  return t;
}

std::optional<int> HostTable::IndexOf(const std::string& name) const {
  for (const auto& [index, h] : hosts_)
    if (h.name == name) return index;
  return std::nullopt;
}

}  // namespace mpvm
