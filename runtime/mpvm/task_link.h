// task_link.h — direct task-to-task links across hosts, over TCP.
//
// Tasks carry no ZeroMQ, so these links authenticate themselves: when a task
// connects to a task on another host, both prove they hold the VM's link key
// (derived from the VM key, given to each task by its daemon at enrolment)
// with a challenge-response, using libsodium:
//
//   connector -> acceptor  Hello    "MPVMLNK1" flags src dst nonce_c      (52 bytes)
//   acceptor  -> connector Reply    nonce_a  HMAC(k, "A" Hello nonce_a)   (64 bytes)
//   connector -> acceptor  Confirm  HMAC(k, "C" Hello nonce_a)            (32 bytes)
//
// HMAC is HMAC-SHA-512-256 (crypto_auth). Fresh nonces on both sides make a
// recorded exchange useless to replay; the acceptor then accepts frames only
// from the tid it authenticated. With the encrypt flag, every frame is sealed
// with ChaCha20-Poly1305 (IETF) under per-direction keys derived from the link
// key and both nonces, with a counter nonce, so a frame cannot be read,
// altered, dropped or replayed unnoticed.
#pragma once

#include <poll.h>

#include <array>
#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <vector>

namespace mpvm {

using LinkKey = std::array<uint8_t, 32>;

// The link key of a VM: a keyed hash of the VM's secret key.
LinkKey DeriveLinkKey(std::string_view vm_secret);

inline constexpr size_t kHelloSize = 52, kReplySize = 64, kConfirmSize = 32;
inline constexpr uint32_t kLinkEncrypt = 1;

// Seals and opens the frames of one encrypted link. A record on the wire is
// a 4-byte little-endian length followed by the ciphertext and its tag.
// Everything a link's cipher is: handed to the daemon when its task moves
// (the daemon then reads and writes the link in the task's place).
struct LinkCipherState {
  std::array<uint8_t, 32> send_key, recv_key;
  uint64_t send_n, recv_n;  // records sealed and opened so far (the nonces)
};

class LinkCipher {
 public:
  LinkCipher(const std::array<uint8_t, 32>& send_key, const std::array<uint8_t, 32>& recv_key);
  explicit LinkCipher(const LinkCipherState& s)
      : send_key_(s.send_key), recv_key_(s.recv_key), send_n_(s.send_n), recv_n_(s.recv_n) {}
  // Allocates nothing (a moving task calls it from its signal handler).
  LinkCipherState State() const { return {send_key_, recv_key_, send_n_, recv_n_}; }
  void Seal(std::span<const uint8_t> plain, std::vector<uint8_t>& record_out);
  // Opens the ciphertext of one record (without its length). False if it was
  // altered, replayed or out of order.
  bool Open(std::span<const uint8_t> cipher, std::vector<uint8_t>& plain_out);
  static constexpr size_t kOverhead = 4 + 16;

 private:
  std::array<uint8_t, 32> send_key_, recv_key_;
  uint64_t send_n_ = 0, recv_n_ = 0;
};

struct LinkResult {
  bool ok = false;
  std::string error;                   // why not
  std::unique_ptr<LinkCipher> cipher;  // when encrypted
};

// One side of a link being set up, driven by the task's poll loop without
// blocking: a task never waits on a peer that may be waiting on it.
class LinkHandshake {
 public:
  enum class State { kPending, kDone, kFailed };
  virtual ~LinkHandshake() = default;
  // Reads and writes what the socket allows; call when poll says fd() is
  // ready for events() (or has an error).
  virtual State Step() = 0;
  virtual short events() const = 0;
  virtual bool outgoing() const = 0;
  int fd() const { return fd_; }
  int32_t peer() const { return peer_; }
  const std::string& error() const { return error_; }
  std::unique_ptr<LinkCipher> TakeCipher() { return std::move(cipher_); }
  int64_t deadline_ns = 0;

 protected:
  LinkHandshake(int fd, const LinkKey& key, int32_t peer);
  State Fail(std::string why);
  // Reads into in_ until it holds `want` bytes; false while the socket has
  // no more (kPending) or on failure (error() set).
  bool ReadUpTo(size_t want, State& st);
  int fd_;
  LinkKey key_;
  int32_t peer_;
  std::vector<uint8_t> in_;
  std::string error_;
  std::unique_ptr<LinkCipher> cipher_;
};

// The acceptor's side.
class AcceptHandshake final : public LinkHandshake {
 public:
  AcceptHandshake(int fd, const LinkKey& key, int32_t me, bool require_encrypt);
  State Step() override;
  short events() const override { return POLLIN; }
  bool outgoing() const override { return false; }

 private:
  int32_t me_;
  bool require_encrypt_;
  std::array<uint8_t, kHelloSize> hello_{};
  std::array<uint8_t, 32> nonce_a_{};
  bool replied_ = false;
};

// The connector's side, on a socket whose non-blocking connect is under way
// (StartConnectTcp) or done.
class ConnectingHandshake final : public LinkHandshake {
 public:
  ConnectingHandshake(int fd, const LinkKey& key, int32_t src, int32_t dst, bool encrypt);
  State Step() override;
  short events() const override { return said_hello_ ? POLLIN : POLLOUT; }
  bool outgoing() const override { return true; }

 private:
  std::array<uint8_t, kHelloSize> hello_{};
  bool encrypt_;
  bool said_hello_ = false;
};

// The connector's side run to completion (bounded by `timeout_ms`).
LinkResult ConnectHandshake(int fd, const LinkKey& key, int32_t src, int32_t dst, bool encrypt,
                            int timeout_ms);

// TCP helpers: a listener on every interface (port chosen by the kernel), a
// connect started without waiting, and one bounded by `timeout_ms`. Each
// returns an fd or -errno.
int ListenTcpAny(uint16_t* port);
int StartConnectTcp(const std::string& ip, uint16_t port);
int ConnectTcp(const std::string& ip, uint16_t port, int timeout_ms);

}  // namespace mpvm
