// task_delivery.cc — TaskRuntime's delivery guarantees (mpvm/retransmit.h):
// acknowledgements for the frames it received, and the frames it sent kept
// until acknowledged, probed for when their way broke or no answer came, and
// sent again when the receiver says they are missing. All on the caller's
// thread, inside pvm_* calls, like the rest of the runtime.
#include <cstdio>
#include <cstdlib>

#include "mpvm/clock.h"
#include "mpvm/settings.h"
#include "mpvm/task_runtime.h"

namespace mpvm {

Connection* TaskRuntime::LinkTo(int32_t peer) {
  auto p = peers_.find(peer);
  if (p == peers_.end() || p->second.conn == nullptr) return nullptr;
  Connection* c = p->second.conn;
  return c->open() && !c->close_when_flushed() ? c : nullptr;
}

void TaskRuntime::SendAck(int32_t peer, uint64_t seq, int32_t tag) {
  FrameHeader h;
  h.kind = FrameKind::kAck;
  h.src = mytid_.raw();
  h.dst = peer;
  h.seq = seq;
  h.tag = tag;
  // On the direct link to the peer when there is one (never a new link: this
  // runs inside Progress), else through the daemon.
  if (Connection* c = LinkTo(peer); c != nullptr && c->Send(h, {}, {})) return;
  if (daemon_ && daemon_->open()) daemon_->Send(h, {}, {});
}

void TaskRuntime::SendDueAcks(bool all) {
  for (const auto& [peer, seq] : acks_.Due(MonotonicNs(), all)) SendAck(peer, seq, kAckTagPlain);
}

void TaskRuntime::OnAck(const FrameHeader& h) {
  const int64_t now = MonotonicNs();
  switch (h.tag) {
    case kAckTagGone:  // from a daemon: that task is not there
      sent_.Forget(h.src);
      return;
    case kAckTagProbe: {  // a sender asks what arrived of what it sent
      auto rs = recv_state_.find(h.src);
      const uint64_t upto = rs == recv_state_.end() ? 0 : rs->second.expected - 1;
      SendAck(h.src, upto, upto < h.seq ? kAckTagResend : kAckTagPlain);
      return;
    }
    case kAckTagResend:
      sent_.Acked(h.src, h.seq, now);
      Resend(h.src);
      return;
    default:
      sent_.Acked(h.src, h.seq, now);
  }
}

void TaskRuntime::Resend(int32_t peer) {
  const auto frames = sent_.Frames(peer);
  if (frames.empty()) return;
  if (debugmask_ != 0 || CurrentSettings().debug)
    std::fprintf(stderr, "libpvm [%s]: sending %zu frame(s) to %s again (they did not arrive)\n",
                 mytid_.str().c_str(), frames.size(), Tid(peer).str().c_str());
  Connection* c = LinkTo(peer);
  for (const SendLedger::Kept* k : frames) {
    if (c != nullptr && SendKept(*c, *k)) continue;
    c = nullptr;
    if (daemon_ && daemon_->open()) SendKept(*daemon_, *k);
  }
}

bool TaskRuntime::SendKept(Connection& c, const SendLedger::Kept& k) {
  std::span<const uint8_t> all(k.payload);
  return c.Send(k.header, all.subspan(0, k.header.aux_length), all.subspan(k.header.aux_length));
}

void TaskRuntime::SettleBeforeExit() {
  if (sent_.frames() == 0) return;
  const int64_t now = MonotonicNs();
  for (int32_t peer : sent_.Peers()) sent_.ProbeNow(peer, now);
  const int64_t until = now + kExitAckWaitNs;
  while (sent_.frames() > 0 && daemon_ && daemon_->open()) {
    const int64_t left = until - MonotonicNs();
    if (left <= 0) break;
    Progress(static_cast<int>(left / 1'000'000) + 1);
  }
  if (!daemon_ || !daemon_->open()) return;
  for (int32_t peer : sent_.Peers())
    for (const SendLedger::Kept* k : sent_.Frames(peer)) {
      SendKept(*daemon_, *k);
    }
}

void TaskRuntime::ProbeDue() {
  if (sent_.frames() == 0) return;
  for (const auto& [peer, seq] : sent_.ProbesDue(MonotonicNs())) SendAck(peer, seq, kAckTagProbe);
}

int TaskRuntime::CapWait(int timeout_ms) const {
  const int64_t next = std::min(sent_.NextDue(), acks_.NextDue());
  if (next == INT64_MAX) return timeout_ms;
  const int64_t left = next - MonotonicNs();
  const int cap = left <= 0 ? 0 : static_cast<int>((left + 999'999) / 1'000'000);
  return timeout_ms < 0 ? cap : std::min(timeout_ms, cap);
}

void TaskRuntime::ResumeDelivery() {
  // Frames on their way to the old place may be lost: every sender is told
  // what arrived and sends the rest again; and every receiver is asked what
  // arrived of this task's (what was in its links' buffers may be lost).
  const int64_t now = MonotonicNs();
  for (const auto& [peer, rs] : recv_state_) SendAck(peer, rs.expected - 1, kAckTagResend);
  for (int32_t peer : sent_.Peers()) sent_.ProbeNow(peer, now);
}

}  // namespace mpvm
