#include "core/membership.h"

#include <fmt/format.h>

#include "mpvm/control.h"

namespace mpvm {

void Membership::DoAddHost(ConnId c, const ctl::Envelope& env) {
  const uint64_t rid = env.rid();
  if (cx_.cfg.member) {
    cx_.ReplyStatus(c, rid, PvmCode(Err::kNotImpl), "add hosts from the master's host");
    return;
  }
  auto parsed = ParseHostfile(env.add_host().line(), "host");
  if (!parsed || parsed->size() != 1) {
    cx_.ReplyStatus(c, rid, PvmCode(Err::kBadParam),
                    parsed ? "give exactly one host" : parsed.error().message);
    return;
  }
  const HostSpec& h = parsed->front();
  for (const auto& [index, rec] : cx_.hosts)
    if (rec.name == h.name) {
      cx_.ReplyStatus(c, rid, PvmCode(Err::kDupHost),
                      fmt::format("'{}' is already a host", h.name));
      return;
    }
  if (auto hint = ManualStartHint(h); !hint.empty()) {
    cx_.ReplyStatus(c, rid, PvmCode(Err::kCantStart),
                    fmt::format("{} has {} (this master's address is in {}/master.addr once it "
                                "listens, its key in vm.key beside it)",
                                h.name, hint, cx_.cfg.rundir));
    return;
  }
  if (pending_adds_.contains(h.name)) {
    cx_.ReplyStatus(c, rid, PvmCode(Err::kAlready),
                    fmt::format("'{}' is already being added", h.name));
    return;
  }
  if (auto st = cx_.env->StartHost(h); !st) {
    cx_.ReplyStatus(c, rid, PvmCode(st.error().code),
                    fmt::format("cannot start the daemon of {}: {}", h.name, st.error().why));
    return;
  }
  pending_adds_[h.name] = {c, rid};
}

void Membership::DoDelHost(ConnId c, Tid who, const ctl::Envelope& env) {
  const uint64_t rid = env.rid();
  if (cx_.cfg.member) {
    cx_.ReplyStatus(c, rid, PvmCode(Err::kNotImpl), "delete hosts from the master's host");
    return;
  }
  auto st = DeleteHost(env.del_host().name(), "deleted by " + who.str());
  cx_.ReplyStatus(
      c, rid, st ? 0 : PvmCode(st.error()),
      st ? "" : fmt::format("no host '{}' in the virtual machine", env.del_host().name()));
}

std::vector<std::string> Membership::StartHosts(const std::vector<HostSpec>& hosts) {
  std::vector<std::string> failed;
  for (const auto& h : hosts) {
    if (h.deferred) continue;
    std::string why;
    if (auto hint = ManualStartHint(h); !hint.empty()) {
      why = hint;
    } else if (auto st = cx_.env->StartHost(h); !st) {
      why = st.error().why;
    } else {
      starting_.insert(h.name);
      continue;
    }
    failed.push_back(fmt::format("host '{}' (line {}) not started: {}", h.name, h.line, why));
    cx_.env->Log(failed.back());
  }
  return failed;
}

void Membership::OnHostStartFailed(const std::string& name, const std::string& why) {
  if (starting_.erase(name) > 0) cx_.env->Log(fmt::format("host {} did not join: {}", name, why));
  auto it = pending_adds_.find(name);
  if (it == pending_adds_.end()) {
    // We started it, so we know at once that it is gone: no need to wait
    // for its heartbeats to stop.
    for (const auto& [index, h] : cx_.hosts)
      if (h.name == name && index != cx_.host.value) {
        RemoveHost(index, why);
        return;
      }
    return;
  }
  cx_.env->Log(fmt::format("emulated host {} did not join: {}", name, why));
  cx_.ReplyStatus(it->second.first, it->second.second, PvmCode(Err::kCantStart), why);
  pending_adds_.erase(it);
}

void Membership::BroadcastTable(PeerId except) {
  for (const auto& [index, h] : cx_.hosts) {
    if (h.peer == 0 || h.peer == except) continue;
    ctl::Envelope e = NewEnvelope();
    *e.mutable_host_table() = cx_.Table();
    cx_.SendPeerControl(h.peer, std::move(e));
  }
}

void Membership::HostsAdded(const std::vector<int>& added) {
  std::vector<int> tids;
  for (int index : added) tids.push_back(Tid::DaemonOf(HostIndex{index}).raw());
  cx_.notify.HostsAdded(tids);
  cx_.DrainNotices();
}

void Membership::RemoveHost(int index, const std::string& reason, bool departing) {
  if (index == cx_.host.value) return;
  auto rec = cx_.hosts.Remove(index);
  if (!rec) return;
  // Hosts leaving a halting VM are expected: not a warning.
  const std::string what = fmt::format("host {} ({}) removed from the virtual machine: {}",
                                       rec->name, Tid::DaemonOf(HostIndex{index}).str(), reason);
  if (cx_.halting)
    cx_.env->Info(what);
  else
    cx_.env->Log(what);
  cx_.load.OnHostGone(index);
  // A deleted host says goodbye (its tasks' ends and last output) until its
  // link closes; a failed one is a stranger from now on (FromStranger).
  if (rec->peer != 0 && departing) departing_.insert(rec->peer);
  if (rec->peer != 0 && !departing) cx_.env->DropPeer(rec->peer);
  for (const auto& p : cx_.asks.HostGone(index))
    cx_.AnswerInstead(
        p, PvmCode(Err::kHostFail),
        fmt::format("the host running {} ({}) left the virtual machine while it was "
                    "asked to move ({}); pvm_notify, prun and `mpvm ps` tell its fate",
                    p.subject.str(), rec->name, reason));
  cx_.FireNotify(kNotifyHostDelete, Tid::DaemonOf(HostIndex{index}).raw());
  cx_.events->HostGone(index);
  if (!cx_.cfg.member) BroadcastTable();
}

Status Membership::DeleteHost(const std::string& name, const std::string& reason) {
  for (const auto& [index, h] : cx_.hosts) {
    if (h.name != name || index == cx_.host.value) continue;
    if (h.peer != 0) {
      ctl::Envelope e = NewEnvelope();
      e.mutable_host_leave()->set_host(index);
      e.mutable_host_leave()->set_reason(reason);
      cx_.SendPeerControl(h.peer, std::move(e));
    }
    RemoveHost(index, reason, /*departing=*/true);
    return {};
  }
  return Fail(Err::kNoHost);
}

void Membership::ApplyTable(const ctl::HostTable& t) {
  const auto changes = cx_.hosts.Apply(t, cx_.host.value);
  for (int index : changes.gone) {
    for (const auto& p : cx_.asks.HostGone(index))
      cx_.AnswerInstead(p, PvmCode(Err::kHostFail),
                        fmt::format("the host running {} left the virtual machine while it was "
                                    "asked to move",
                                    p.subject.str()));
    cx_.FireNotify(kNotifyHostDelete, Tid::DaemonOf(HostIndex{index}).raw());
    cx_.events->HostGone(index);
  }
  HostsAdded(changes.added);
}

void Membership::StartJoin(int64_t now_ns) {
  cx_.now_ns = last_master_ns_ = now_ns;
  clock_started_ = true;
  ctl::Envelope e = NewEnvelope();
  e.mutable_join()->set_name(cx_.cfg.hostname);
  e.mutable_join()->set_arch(cx_.cfg.arch);
  e.mutable_join()->set_speed(cx_.cfg.speed);
  e.mutable_join()->set_addr(cx_.cfg.link_addr);
  e.mutable_join()->set_cores(cx_.cfg.cores);
  cx_.SendPeerControl(kMasterPeer, std::move(e));
}

void Membership::OnMemberControl(PeerId p, const ctl::Envelope& env) {
  if (env.has_join()) {
    AdmitHost(p, env.join());
    return;
  }
  const auto index = cx_.hosts.SawPeer(p, cx_.now_ns);
  if (!index) {
    cx_.env->Log(
        fmt::format("peer link {}: message from a daemon that has not joined; ignored", p));
    return;
  }
  if (env.has_heartbeat()) {
    cx_.hosts.SetTaskCount(*index, env.heartbeat().load().tasks_size());
    cx_.load.OnReport(*index, cx_.hosts.at(*index).speed, env.heartbeat().load(), cx_.now_ns);
    if (env.heartbeat().load().changed()) cx_.load_news = true;
  }
}

void Membership::AdmitHost(PeerId p, const ctl::JoinRequest& j) {
  for (const auto& [index, h] : cx_.hosts)
    if (h.peer == p) {
      cx_.env->Log(fmt::format("host {} asked to join again; ignored", h.name));
      return;
    }
  ctl::Envelope r = NewEnvelope();
  auto admitted = cx_.hosts.Admit(p, j, cx_.now_ns);
  if (!admitted) {
    r.mutable_join_reply()->set_code(PvmCode(Err::kDupHost));
    r.mutable_join_reply()->set_detail(admitted.error());
    cx_.SendPeerControl(p, std::move(r));
    cx_.env->Log(fmt::format("refused a second host named '{}'", j.name()));
    return;
  }
  const int index = *admitted;
  r.mutable_join_reply()->set_code(0);
  r.mutable_join_reply()->set_host(index);
  *r.mutable_join_reply()->mutable_table() = cx_.Table();
  cx_.SendPeerControl(p, std::move(r));
  cx_.env->Info(fmt::format("host {} ({}) joined the virtual machine", j.name(),
                            Tid::DaemonOf(HostIndex{index}).str()));
  BroadcastTable(p);  // the joiner has the table in its reply
  HostsAdded({index});
  starting_.erase(j.name());
  if (auto w = pending_adds_.find(j.name()); w != pending_adds_.end()) {
    cx_.ReplyStatus(w->second.first, w->second.second, Tid::DaemonOf(HostIndex{index}).raw());
    pending_adds_.erase(w);
  }
}

void Membership::OnMasterControl(const ctl::Envelope& env) {
  if (env.has_join_reply()) {
    const auto& r = env.join_reply();
    if (r.code() < 0) {
      join_error_ = r.detail().empty() ? std::string(PvmErrorText(r.code())) : r.detail();
      return;
    }
    cx_.host = HostIndex{r.host()};
    cx_.joined = true;
    ApplyTable(r.table());
  } else if (env.has_host_table()) {
    ApplyTable(env.host_table());
  } else if (env.has_host_leave()) {
    cx_.env->Log(fmt::format("the master removed this host: {}{}", env.host_leave().reason(),
                             env.host_leave().fenced() ? "; killing its tasks" : ""));
    cx_.events->HaltVm(env.host_leave().fenced());
  }
}

void Membership::OnPeerGone(PeerId p) {
  if (cx_.cfg.member) {
    if (p == kMasterPeer && cx_.joined) {
      cx_.env->Log("lost the link to the master; halting (a virtual machine ends with its master)");
      cx_.events->HaltVm();
    }
    return;
  }
  if (departing_.erase(p) > 0) {  // a deleted host's link closed: done with it
    cx_.env->DropPeer(p);
    return;
  }
  for (const auto& [index, h] : cx_.hosts)
    if (h.peer == p) {
      RemoveHost(index, "its daemon disconnected");
      return;
    }
}

bool Membership::Departing(PeerId p) const { return departing_.contains(p); }

void Membership::FromStranger(PeerId p, const Frame& f) {
  if (f.header.kind == FrameKind::kControl) {
    auto env = DecodeControl(f.payload);
    if (env && env->has_join()) {
      AdmitHost(p, env->join());
      return;
    }
  }
  if (told_to_leave_.size() > 1000) told_to_leave_.clear();  // strangers that went on sending
  if (!told_to_leave_.insert(p).second) return;
  cx_.env->Log(fmt::format(
      "peer link {}: a daemon that is not a member (a host declared gone, or one that never "
      "joined) sent a message; dropped, and told it to kill its tasks and leave",
      p));
  ctl::Envelope e = NewEnvelope();
  e.mutable_host_leave()->set_host(-1);
  e.mutable_host_leave()->set_reason(
      "the master had declared this host gone and reported its tasks lost");
  e.mutable_host_leave()->set_fenced(true);
  cx_.SendPeerControl(p, std::move(e));
}

bool Membership::FromMember(PeerId p) const {
  for (const auto& [index, h] : cx_.hosts)
    if (h.peer == p) return true;
  return false;
}

void Membership::ClockCheck(int64_t now_ns) {
  // If this daemon itself did not run for a while (a long burst, a stopped
  // process), others' silence over that gap proves nothing: restart the
  // clocks. So too at the first tick: a host that joined before it was
  // stamped with a clock that had not started.
  if (!clock_started_ || now_ns - cx_.now_ns > cx_.cfg.dead_after_ns / 2) {
    last_master_ns_ = now_ns;
    cx_.hosts.RestartClocks(now_ns);
  }
  clock_started_ = true;
}

void Membership::Beat(int64_t now_ns) {
  // A change of this host's load (a task ended or arrived, one started or
  // stopped working) is reported at once, at most every 50 ms, so that the
  // balancer need not wait for the next heartbeat.
  const int64_t since = now_ns - last_beat_sent_ns_;
  const bool early = cx_.cfg.member && cx_.load_changed && since >= 50'000'000;
  const bool beat = since >= cx_.cfg.heartbeat_ns || early;
  if (beat) cx_.load_changed = false;
  if (beat) last_beat_sent_ns_ = now_ns;
  if (cx_.cfg.member) {
    if (!cx_.joined || cx_.halting) return;
    if (now_ns - last_master_ns_ > cx_.cfg.dead_after_ns) {
      cx_.env->Log(
          fmt::format("no word from the master for {} ms; killing this host's tasks and halting "
                      "(the master counts them lost by now)",
                      (now_ns - last_master_ns_) / 1'000'000));
      cx_.events->HaltVm(/*fenced=*/true);
      return;
    }
    if (beat) {
      ctl::Envelope e = NewEnvelope();
      e.mutable_heartbeat()->set_host(cx_.host.value);
      *e.mutable_heartbeat()->mutable_load() = cx_.LocalLoad();
      e.mutable_heartbeat()->mutable_load()->set_changed(early);
      cx_.SendPeerControl(kMasterPeer, std::move(e));
    }
    return;
  }
  for (int index : cx_.hosts.Silent(now_ns, cx_.cfg.dead_after_ns))
    RemoveHost(index, fmt::format("no heartbeat for {} ms", cx_.cfg.dead_after_ns / 1'000'000));
  if (beat)
    for (const auto& [index, h] : cx_.hosts) {
      if (h.peer == 0) continue;
      ctl::Envelope e = NewEnvelope();
      e.mutable_heartbeat()->set_host(cx_.host.value);
      cx_.SendPeerControl(h.peer, std::move(e));
    }
}

void Membership::SawPeer(PeerId p) {
  // Any frame from a peer shows it is alive, not only heartbeats: a link busy
  // with a burst of messages must not look silent.
  if (cx_.cfg.member) {
    last_master_ns_ = cx_.now_ns;
  } else {
    cx_.hosts.SawPeer(p, cx_.now_ns);
  }
}

void Membership::LeaveAll() {
  if (cx_.cfg.member) return;
  for (const auto& [index, h] : cx_.hosts) {
    if (h.peer == 0) continue;
    ctl::Envelope e = NewEnvelope();
    e.mutable_host_leave()->set_host(index);
    e.mutable_host_leave()->set_reason("the master halts the virtual machine");
    cx_.SendPeerControl(h.peer, std::move(e));
  }
}

void Membership::DropWaitersOf(ConnId c) {
  std::erase_if(pending_adds_, [&](const auto& kv) { return kv.second.first == c; });
}

}  // namespace mpvm
