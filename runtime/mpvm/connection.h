// connection.h — a non-blocking stream socket that carries mpvm frames.
//
// Used on the caller's thread only (tasks never run threads of ours). Writes
// go straight to the socket when it has room; what does not fit is queued and
// sent by Flush(), which the owner calls when poll() reports POLLOUT.
#pragma once

#include <deque>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "mpvm/frame.h"
#include "mpvm/task_link.h"

namespace mpvm {

class Connection {
 public:
  explicit Connection(int fd, uint32_t max_frame = kDefaultMaxFrame);
  ~Connection();
  Connection(const Connection&) = delete;
  Connection& operator=(const Connection&) = delete;

  int fd() const { return fd_; }
  bool open() const { return fd_ >= 0; }
  void Close();

  // Sends one frame (header + aux + body). Returns false if the peer is gone.
  bool Send(const FrameHeader& h, std::span<const uint8_t> aux, std::span<const uint8_t> body);
  bool Send(const FrameHeader& h, std::span<const uint8_t> body) { return Send(h, {}, body); }
  // Writes queued bytes. Returns false if the peer is gone.
  bool Flush();
  bool wants_write() const { return !out_.empty(); }
  size_t queued_bytes() const { return queued_; }

  enum class ReadResult { kOk, kClosed, kError };
  // Reads what the socket has (until EAGAIN, at most `budget` bytes).
  ReadResult ReadAvailable(size_t budget = 4 << 20);
  // The last ReadAvailable read all the socket had (it did not stop at its
  // budget).
  bool drained() const { return drained_; }
  FrameReader& reader() { return reader_; }
  const FrameReader& reader() const { return reader_; }

  // Migration. Forget the socket without closing it (in a restored process
  // the number may belong to something else now).
  void Abandon();
  // Calls f(span) for each run of queued, unwritten bytes, in order. Allocates
  // nothing: a migrating task hands them over from a signal handler.
  template <typename F>
  void ForEachUnsent(F&& f) const {
    size_t skip = out_offset_;
    for (const auto& chunk : out_) {
      f(std::span<const uint8_t>(chunk.data() + skip, chunk.size() - skip));
      skip = 0;
    }
  }
  size_t UnsentSize() const {
    size_t n = 0;
    ForEachUnsent([&](std::span<const uint8_t> s) { n += s.size(); });
    return n;
  }
  // Queues bytes that are already framed (sent as they are).
  bool SendRaw(std::span<const uint8_t> bytes) { return bytes.empty() || SendBytes(bytes); }
  // Takes the queued, unwritten bytes away (they are not sent here).
  std::vector<uint8_t> TakeUnsent();
  // Stop using the link for new frames but write what is queued, then close
  // (a peer that moved: its old link is read by its old daemon to the end).
  void CloseWhenFlushed() { close_when_flushed_ = true; }
  bool close_when_flushed() const { return close_when_flushed_; }

  // From now on every frame is sealed on the way out and opened on the way
  // in (an encrypted task link). A record that fails to open is a kError.
  void EnableCipher(std::unique_ptr<LinkCipher> c) { cipher_ = std::move(c); }
  bool encrypted() const { return cipher_ != nullptr; }
  const LinkCipher* cipher() const { return cipher_.get(); }
  // Sealed bytes read but not yet a whole record (an encrypted link).
  std::span<const uint8_t> SealedPending() const { return sealed_in_; }
  // Sealed bytes another process read from this link before us: ahead of
  // what we read.
  void FeedSealed(std::span<const uint8_t> b) {
    sealed_in_.insert(sealed_in_.begin(), b.begin(), b.end());
  }
  // The task at the other end, when the link authenticated it (else 0).
  int32_t peer_tid = 0;
  // Data frames the task sent on it since it last looked for what the link
  // brings: when that look finds kMoved, these are its stale sends (the
  // update may have been waiting since just after the look before).
  uint32_t sends_unlooked = 0;

 private:
  bool SendBytes(std::span<const uint8_t> bytes);
  std::unique_ptr<LinkCipher> cipher_;
  std::vector<uint8_t> sealed_in_;  // encrypted bytes not yet a whole record
  std::vector<uint8_t> scratch_;
  int fd_;
  FrameReader reader_;
  uint32_t reader_max_;
  std::deque<std::vector<uint8_t>> out_;
  size_t out_offset_ = 0;  // bytes of out_.front() already written
  size_t queued_ = 0;
  bool close_when_flushed_ = false;
  bool drained_ = false;
};

// Connects to a Unix stream socket; returns a non-blocking fd or -errno.
int ConnectUnix(const std::string& path);
// Creates a listening Unix socket (removing a stale file first); -errno on failure.
int ListenUnix(const std::string& path, int backlog = 4096);
void SetNonBlocking(int fd);
void SetCloexec(int fd);

}  // namespace mpvm
