#include "core/forwarding.h"

#include <fmt/format.h>

#include <nlohmann/json.hpp>

#include "mpvm/control.h"

namespace mpvm {

void Forwarder::Reroute(Tid t, Frame&& f) {
  if (f.header.dst == 0) f.header.dst = t.raw();  // our answers to it name no one
  if (f.header.dst != t.raw()) return;
  if (auto fw = forwarding_.find(t.raw()); fw != forwarding_.end()) ++fw->second.forwarded;
  f.header.flags |= kFrameFlagRelayed;
  AddFrameHop(f.header);
  if (auto it = cx_.tasks.find(t); it != cx_.tasks.end() && it->second.state != TaskState::kLeft) {
    cx_.DeliverFrame(it->second, std::move(f));  // it came back here meanwhile
    return;
  }
  cx_.RouteFrame(f.header, f.payload);
}

void Forwarder::OnForwardLink(ConnId c, Tid t, bool encrypted) {
  Conn conn;
  conn.forward_for = t;
  cx_.conns[c] = conn;
  if (auto fw = forwarding_.find(t.raw()); fw != forwarding_.end()) {
    ++fw->second.link_updates;
    ++fw->second.open_links;
    if (encrypted) ++fw->second.encrypted_links;
  }
}

void Forwarder::OnCommitDone(Tid t) {
  auto fw = forwarding_.find(t.raw());
  if (fw == forwarding_.end() || fw->second.reported) return;
  Forwarding& f = fw->second;
  f.reported = true;
  AdvanceMove(f.move, MoveEvent::kReported, *cx_.env);
  const Move& mv = f.move;
  const MoveTimes& times = f.times;
  nlohmann::json record{{"tid", t.str()},
                        {"id", fmt::format("{:x}", mv.id)},
                        {"from", cx_.cfg.hostname},
                        {"to", f.to},
                        {"bytes", times.bytes},
                        {"request_ns", mv.requested_wall_ns},
                        {"freeze_ns", times.freeze_ns},
                        {"transfer_ns", times.sent_ns},
                        {"restored_ns", times.restored_ns},
                        {"stopped", times.by_signal ? "by signal" : "at a boundary"},
                        {"commit_ns", f.commit_wall_ns},
                        {"blackout_ms", (times.restored_ns - times.freeze_ns) / 1e6},
                        {"total_ms", (f.commit_ns - mv.requested_ns) / 1e6},
                        {"admin_messages", mv.admin_messages}};
  if (mv.origin == MoveOrigin::kBalancer) record["reason"] = "balancer: " + mv.reason;
  record["forwarded"] = f.forwarded;        // frames it had not read, or sent us, at the commit
  record["link_updates"] = f.link_updates;  // its task links, told kMoved
  record["encrypted_links"] = f.encrypted_links;  // of which encrypted
  cx_.env->Info("migration " + record.dump());
  record["ev"] = "migration";
  cx_.Trace(f.event_sink, record.dump());
  f.forwarded = 0;                                // from now on: what the links it held bring
  if (f.open_links == 0) EndForwarding(t.raw());  // (its event ends the move's trace)
}

void Forwarder::EndForwarding(int tid) {
  // Its held links are closed, or it ended: what this host forwarded for it
  // after the commit, in one last event.
  auto fw = forwarding_.find(tid);
  if (fw == forwarding_.end()) return;
  const Forwarding f = std::move(fw->second);
  forwarding_.erase(fw);
  if (!f.reported) return;
  nlohmann::json record{{"tid", Tid(tid).str()},
                        {"id", fmt::format("{:x}", f.move_id)},
                        {"host", cx_.cfg.hostname},
                        {"forwarded", f.forwarded},
                        {"links", f.link_updates}};
  cx_.env->Info("forwarding " + record.dump());
  if (f.event_sink == 0) return;
  record["ev"] = "forwarding";
  record["ts"] = cx_.env->WallNs();
  cx_.Trace(f.event_sink, record.dump());
}

void Forwarder::Begin(Tid t, Forwarding rec) {
  if (forwarding_.contains(t.raw())) EndForwarding(t.raw());
  forwarding_[t.raw()] = std::move(rec);
}

void Forwarder::Forwarded(int tid) {
  if (auto fw = forwarding_.find(tid); fw != forwarding_.end()) ++fw->second.forwarded;
}

void Forwarder::LinkClosed(int tid) {
  auto fw = forwarding_.find(tid);
  if (fw != forwarding_.end() && --fw->second.open_links <= 0 && fw->second.reported)
    EndForwarding(tid);
}

}  // namespace mpvm
