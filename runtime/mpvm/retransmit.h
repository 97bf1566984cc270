// retransmit.h — no message lost between living tasks, whatever dies in
// between (a migration's source daemon, a relay): the sender keeps each data
// frame it sent to a task until that task, wherever it runs now, has
// acknowledged it, and sends the frames again when the receiver says some
// are missing. The receiver acknowledges cumulatively, in batches, and drops
// the duplicates a resend may bring by their sequence numbers.
//
// All of it travels in kAck frames (no payload), told apart by their tag:
//   plain   receiver -> sender: every frame of yours up to `seq` is here
//   resend  receiver -> sender: the same, and send what follows again (it
//           was restored elsewhere, or a probe showed frames missing)
//   probe   sender -> receiver: I have sent you up to `seq`; what have you?
//           (after a link broke, or when no acknowledgement came in time;
//           sent the way the data went, so it arrives after it unless the
//           data was lost)
//   gone    daemon -> sender: the receiver (src) does not exist; keep nothing
//
// Both ledgers are bookkeeping only: TaskRuntime sends, receives and passes
// the time in.
//
// Example (sender):
//   sent.Keep(header, aux, body, now);                      // at pvm_send
//   sent.Acked(peer, upto, now);                            // an ack came
//   for (auto [peer, seq] : sent.ProbesDue(now)) ...        // ask them
//   for (const auto* f : sent.Frames(peer)) ...             // "resend" came
#pragma once

#include <cstdint>
#include <deque>
#include <map>
#include <span>
#include <unordered_map>
#include <utility>
#include <vector>

#include "mpvm/frame.h"

namespace mpvm {

inline constexpr int32_t kAckTagPlain = 0, kAckTagResend = 1, kAckTagGone = 2, kAckTagProbe = 3;
// A receiver acknowledges at least every this many frames from one sender.
inline constexpr uint64_t kAckBatch = 16;

class SendLedger {
 public:
  // The first wait for an acknowledgement before a probe, and the longest
  // after backing off.
  static constexpr int64_t kFirstWaitNs = 1'000'000'000;
  static constexpr int64_t kLongestWaitNs = 8'000'000'000;
  // A receiver that acknowledges nothing for this long is unreachable: the
  // frames kept for it are given up.
  static constexpr int64_t kGiveUpNs = 300'000'000'000;

  struct Kept {
    FrameHeader header;            // aux_length and length set
    std::vector<uint8_t> payload;  // aux bytes then body
  };

  // A data frame sent to header.dst with header.seq: kept until acknowledged.
  void Keep(const FrameHeader& h, std::span<const uint8_t> aux, std::span<const uint8_t> body,
            int64_t now);
  // `peer` has every frame up to `seq`: those are dropped.
  void Acked(int32_t peer, uint64_t seq, int64_t now);
  // `peer` is gone: nothing is kept for it any more.
  void Forget(int32_t peer);
  // Ask `peer` at once (the way to it broke).
  void ProbeNow(int32_t peer, int64_t now);
  // Peers to ask now, with the last seq kept for each; their next wait backs
  // off. Peers silent past kGiveUpNs are given up here.
  std::vector<std::pair<int32_t, uint64_t>> ProbesDue(int64_t now);
  // The frames kept for `peer`, oldest first (to send again).
  std::vector<const Kept*> Frames(int32_t peer) const;
  // When ProbesDue next has something (INT64_MAX: nothing kept).
  int64_t NextDue() const;
  std::vector<int32_t> Peers() const;
  size_t frames() const;
  size_t bytes() const { return bytes_; }
  // Frames given up on (their receiver was unreachable), for diagnostics.
  uint64_t abandoned() const { return abandoned_; }

 private:
  struct Peer {
    std::deque<Kept> kept;
    int64_t due_ns = 0;
    int64_t wait_ns = kFirstWaitNs;
    int64_t last_progress_ns = 0;
  };
  void Drop(Peer& p, size_t n);
  // Buffers of acknowledged frames, reused: a fresh buffer costs a page
  // fault per 4 KiB written, which at 1 MiB is most of a round trip.
  std::vector<uint8_t> TakeBuffer(size_t size);
  void Pool(std::vector<uint8_t>&& buf);
  static constexpr size_t kPoolMinBytes = 16u << 10;
  static constexpr size_t kPoolBuffers = 2 * kAckBatch;
  static constexpr size_t kPoolBytes = 64u << 20;
  std::vector<std::vector<uint8_t>> pool_;
  size_t pool_bytes_ = 0;
  std::unordered_map<int32_t, Peer> peers_;
  size_t bytes_ = 0;
  uint64_t abandoned_ = 0;
};

class AckLedger {
 public:
  // Acknowledge after this many frames from one sender, or this long after
  // the first one not yet acknowledged, whichever comes first.
  static constexpr uint64_t kAckEvery = kAckBatch;
  static constexpr int64_t kAckDelayNs = 20'000'000;

  // Frames from `peer` up to `seq` are all here (in order); `bytes` is the
  // size of the last. A large frame is acknowledged at once: its sender
  // keeps a copy of it until then.
  void Received(int32_t peer, uint64_t seq, int64_t now, size_t bytes = 0);
  static constexpr size_t kAckAtOnceBytes = 64u << 10;
  // Acknowledgements to send now: (peer, seq); `all` takes every pending one.
  std::vector<std::pair<int32_t, uint64_t>> Due(int64_t now, bool all = false);
  // When Due next has something (INT64_MAX: nothing pending).
  int64_t NextDue() const;

 private:
  struct Pending {
    uint64_t upto = 0;   // received in order up to here
    uint64_t acked = 0;  // acknowledged up to here
    int64_t since_ns = 0;
    bool now = false;  // a large frame is among them
  };
  std::map<int32_t, Pending> pending_;
};

}  // namespace mpvm
