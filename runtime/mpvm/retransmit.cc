#include "mpvm/retransmit.h"

#include <algorithm>
#include <climits>

namespace mpvm {

void SendLedger::Keep(const FrameHeader& h, std::span<const uint8_t> aux,
                      std::span<const uint8_t> body, int64_t now) {
  Peer& p = peers_[h.dst];
  if (p.kept.empty()) {
    p.due_ns = now + p.wait_ns;
    p.last_progress_ns = now;
  }
  Kept k{h, TakeBuffer(aux.size() + body.size())};
  k.header.aux_length = static_cast<uint32_t>(aux.size());
  k.header.length = static_cast<uint32_t>(aux.size() + body.size());
  std::copy(aux.begin(), aux.end(), k.payload.begin());
  std::copy(body.begin(), body.end(), k.payload.begin() + static_cast<ptrdiff_t>(aux.size()));
  bytes_ += k.payload.size();
  p.kept.push_back(std::move(k));
}

void SendLedger::Pool(std::vector<uint8_t>&& buf) {
  // Small buffers come cheaply from malloc; large ones are worth keeping,
  // the largest first.
  if (buf.capacity() < kPoolMinBytes || buf.capacity() > kPoolBytes) return;
  while (!pool_.empty() &&
         (pool_.size() >= kPoolBuffers || pool_bytes_ + buf.capacity() > kPoolBytes)) {
    auto smallest = std::min_element(pool_.begin(), pool_.end(), [](const auto& a, const auto& b) {
      return a.capacity() < b.capacity();
    });
    if (smallest->capacity() >= buf.capacity()) return;
    pool_bytes_ -= smallest->capacity();
    pool_.erase(smallest);
  }
  pool_bytes_ += buf.capacity();
  pool_.push_back(std::move(buf));
}

std::vector<uint8_t> SendLedger::TakeBuffer(size_t size) {
  // The smallest pooled buffer that is large enough, else a new one.
  auto best = pool_.end();
  for (auto it = pool_.begin(); it != pool_.end(); ++it)
    if (it->capacity() >= size && (best == pool_.end() || it->capacity() < best->capacity()))
      best = it;
  std::vector<uint8_t> buf;
  if (best != pool_.end()) {
    pool_bytes_ -= best->capacity();
    buf = std::move(*best);
    pool_.erase(best);
  }
  buf.resize(size);
  return buf;
}

void SendLedger::Drop(Peer& p, size_t n) {
  for (size_t i = 0; i < n; ++i) {
    bytes_ -= p.kept.front().payload.size();
    Pool(std::move(p.kept.front().payload));
    p.kept.pop_front();
  }
}

void SendLedger::Acked(int32_t peer, uint64_t seq, int64_t now) {
  auto it = peers_.find(peer);
  if (it == peers_.end()) return;
  Peer& p = it->second;
  size_t n = 0;
  while (n < p.kept.size() && p.kept[n].header.seq <= seq) ++n;
  if (n == 0) return;
  Drop(p, n);
  p.wait_ns = kFirstWaitNs;
  p.last_progress_ns = now;
  p.due_ns = now + p.wait_ns;
  if (p.kept.empty()) peers_.erase(it);
}

void SendLedger::Forget(int32_t peer) {
  auto it = peers_.find(peer);
  if (it == peers_.end()) return;
  Drop(it->second, it->second.kept.size());
  peers_.erase(it);
}

void SendLedger::ProbeNow(int32_t peer, int64_t now) {
  if (auto it = peers_.find(peer); it != peers_.end()) it->second.due_ns = now;
}

std::vector<std::pair<int32_t, uint64_t>> SendLedger::ProbesDue(int64_t now) {
  std::vector<std::pair<int32_t, uint64_t>> out;
  for (auto it = peers_.begin(); it != peers_.end();) {
    Peer& p = it->second;
    if (now - p.last_progress_ns > kGiveUpNs) {
      abandoned_ += p.kept.size();
      Drop(p, p.kept.size());
      it = peers_.erase(it);
      continue;
    }
    if (now >= p.due_ns) {
      out.emplace_back(it->first, p.kept.back().header.seq);
      p.wait_ns = std::min(p.wait_ns * 2, kLongestWaitNs);
      p.due_ns = now + p.wait_ns;
    }
    ++it;
  }
  return out;
}

std::vector<const SendLedger::Kept*> SendLedger::Frames(int32_t peer) const {
  std::vector<const Kept*> out;
  if (auto it = peers_.find(peer); it != peers_.end())
    for (const Kept& k : it->second.kept) out.push_back(&k);
  return out;
}

int64_t SendLedger::NextDue() const {
  int64_t next = INT64_MAX;
  for (const auto& [peer, p] : peers_) next = std::min(next, p.due_ns);
  return next;
}

std::vector<int32_t> SendLedger::Peers() const {
  std::vector<int32_t> out;
  for (const auto& [peer, p] : peers_) out.push_back(peer);
  return out;
}

size_t SendLedger::frames() const {
  size_t n = 0;
  for (const auto& [peer, p] : peers_) n += p.kept.size();
  return n;
}

void AckLedger::Received(int32_t peer, uint64_t seq, int64_t now, size_t bytes) {
  Pending& p = pending_[peer];
  if (seq <= p.upto) return;
  if (p.upto == p.acked) p.since_ns = now;
  p.upto = seq;
  p.now = p.now || bytes >= kAckAtOnceBytes;
}

std::vector<std::pair<int32_t, uint64_t>> AckLedger::Due(int64_t now, bool all) {
  std::vector<std::pair<int32_t, uint64_t>> out;
  for (auto& [peer, p] : pending_) {
    if (p.upto == p.acked) continue;
    if (all || p.now || p.upto - p.acked >= kAckEvery || now - p.since_ns >= kAckDelayNs) {
      out.emplace_back(peer, p.upto);
      p.acked = p.upto;
      p.now = false;
    }
  }
  return out;
}

int64_t AckLedger::NextDue() const {
  int64_t next = INT64_MAX;
  for (const auto& [peer, p] : pending_)
    if (p.upto != p.acked) next = std::min(next, p.since_ns + kAckDelayNs);
  return next;
}

}  // namespace mpvm
