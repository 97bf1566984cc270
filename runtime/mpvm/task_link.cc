#include "mpvm/task_link.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sodium.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

namespace mpvm {

namespace {

constexpr char kMagic[8] = {'M', 'P', 'V', 'M', 'L', 'N', 'K', '1'};

int64_t Now() {
  timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return int64_t{ts.tv_sec} * 1000000000 + ts.tv_nsec;
}

void Init() {
  static const bool ok = sodium_init() >= 0;
  (void)ok;
}

void Put32(uint8_t* p, uint32_t v) {
  for (int i = 0; i < 4; ++i) p[i] = static_cast<uint8_t>(v >> (8 * i));
}
uint32_t Get32(const uint8_t* p) {
  uint32_t v = 0;
  for (int i = 0; i < 4; ++i) v |= uint32_t{p[i]} << (8 * i);
  return v;
}

// HMAC over `role` || hello || nonce_a.
std::array<uint8_t, 32> Mac(const LinkKey& key, char role, std::span<const uint8_t> hello,
                            std::span<const uint8_t> nonce_a) {
  crypto_auth_hmacsha512256_state st;
  crypto_auth_hmacsha512256_init(&st, key.data(), key.size());
  const uint8_t r = static_cast<uint8_t>(role);
  crypto_auth_hmacsha512256_update(&st, &r, 1);
  crypto_auth_hmacsha512256_update(&st, hello.data(), hello.size());
  crypto_auth_hmacsha512256_update(&st, nonce_a.data(), nonce_a.size());
  std::array<uint8_t, 32> out;
  crypto_auth_hmacsha512256_final(&st, out.data());
  return out;
}

std::array<uint8_t, 32> SessionKey(const LinkKey& key, const char* dir,
                                   std::span<const uint8_t> hello,
                                   std::span<const uint8_t> nonce_a) {
  crypto_generichash_state st;
  crypto_generichash_init(&st, key.data(), key.size(), 32);
  crypto_generichash_update(&st, reinterpret_cast<const uint8_t*>(dir), 3);
  crypto_generichash_update(&st, hello.data(), hello.size());
  crypto_generichash_update(&st, nonce_a.data(), nonce_a.size());
  std::array<uint8_t, 32> out;
  crypto_generichash_final(&st, out.data(), out.size());
  return out;
}

// Waits until `fd` is ready for `ev` (or has an error); false at the deadline.
bool WaitFd(int fd, short ev, int64_t deadline) {
  for (;;) {
    const int64_t left = deadline - Now();
    if (left <= 0) return false;
    pollfd p{fd, ev, 0};
    int n = poll(&p, 1, static_cast<int>(left / 1000000 + 1));
    if (n > 0) return true;
    if (n < 0 && errno != EINTR) return false;
  }
}

}  // namespace

LinkKey DeriveLinkKey(std::string_view vm_secret) {
  Init();
  static constexpr char kContext[] = "mpvm task links v1";
  LinkKey k;
  crypto_generichash(k.data(), k.size(), reinterpret_cast<const uint8_t*>(vm_secret.data()),
                     vm_secret.size(), reinterpret_cast<const uint8_t*>(kContext),
                     sizeof kContext - 1);
  return k;
}

LinkCipher::LinkCipher(const std::array<uint8_t, 32>& send_key,
                       const std::array<uint8_t, 32>& recv_key)
    : send_key_(send_key), recv_key_(recv_key) {}

void LinkCipher::Seal(std::span<const uint8_t> plain, std::vector<uint8_t>& out) {
  uint8_t nonce[crypto_aead_chacha20poly1305_IETF_NPUBBYTES] = {};
  const uint64_t n = send_n_++;
  std::memcpy(nonce, &n, sizeof n);
  const size_t clen = plain.size() + crypto_aead_chacha20poly1305_IETF_ABYTES;
  const size_t at = out.size();
  out.resize(at + 4 + clen);
  Put32(out.data() + at, static_cast<uint32_t>(clen));
  unsigned long long written = 0;
  crypto_aead_chacha20poly1305_ietf_encrypt(out.data() + at + 4, &written, plain.data(),
                                            plain.size(), nullptr, 0, nullptr, nonce,
                                            send_key_.data());
}

bool LinkCipher::Open(std::span<const uint8_t> cipher, std::vector<uint8_t>& plain) {
  if (cipher.size() < crypto_aead_chacha20poly1305_IETF_ABYTES) return false;
  uint8_t nonce[crypto_aead_chacha20poly1305_IETF_NPUBBYTES] = {};
  const uint64_t n = recv_n_;
  std::memcpy(nonce, &n, sizeof n);
  plain.resize(cipher.size() - crypto_aead_chacha20poly1305_IETF_ABYTES);
  unsigned long long got = 0;
  if (crypto_aead_chacha20poly1305_ietf_decrypt(plain.data(), &got, nullptr, cipher.data(),
                                                cipher.size(), nullptr, 0, nonce,
                                                recv_key_.data()) != 0)
    return false;
  ++recv_n_;
  return true;
}

LinkHandshake::LinkHandshake(int fd, const LinkKey& key, int32_t peer)
    : fd_(fd), key_(key), peer_(peer) {
  Init();
}

LinkHandshake::State LinkHandshake::Fail(std::string why) {
  error_ = std::move(why);
  return State::kFailed;
}

bool LinkHandshake::ReadUpTo(size_t want, State& st) {
  while (in_.size() < want) {
    uint8_t buf[64];
    ssize_t n = read(fd_, buf, std::min(sizeof buf, want - in_.size()));
    if (n > 0) {
      in_.insert(in_.end(), buf, buf + n);
      continue;
    }
    st = n < 0 && (errno == EAGAIN || errno == EINTR) ? State::kPending
                                                      : Fail("closed during the handshake");
    return false;
  }
  return true;
}

ConnectingHandshake::ConnectingHandshake(int fd, const LinkKey& key, int32_t src, int32_t dst,
                                         bool encrypt)
    : LinkHandshake(fd, key, dst), encrypt_(encrypt) {
  std::memcpy(hello_.data(), kMagic, 8);
  Put32(hello_.data() + 8, encrypt ? kLinkEncrypt : 0);
  Put32(hello_.data() + 12, static_cast<uint32_t>(src));
  Put32(hello_.data() + 16, static_cast<uint32_t>(dst));
  randombytes_buf(hello_.data() + 20, 32);
}

LinkHandshake::State ConnectingHandshake::Step() {
  if (!said_hello_) {
    int err = 0;
    socklen_t len = sizeof err;
    if (getsockopt(fd_, SOL_SOCKET, SO_ERROR, &err, &len) != 0) err = errno;
    if (err != 0) return Fail(std::string("cannot connect: ") + std::strerror(err));
    // The first bytes on a fresh connection: they fit in its buffer.
    if (send(fd_, hello_.data(), hello_.size(), MSG_NOSIGNAL) !=
        static_cast<ssize_t>(hello_.size()))
      return Fail("the peer closed the link or did not answer");
    said_hello_ = true;
    return State::kPending;
  }
  State st = State::kPending;
  if (!ReadUpTo(kReplySize, st)) {
    if (st == State::kFailed)
      error_ = "the peer refused the link (wrong VM key, or not the task asked for)";
    return st;
  }
  std::span<const uint8_t> nonce_a(in_.data(), 32);
  auto expect = Mac(key_, 'A', hello_, nonce_a);
  if (sodium_memcmp(expect.data(), in_.data() + 32, 32) != 0)
    return Fail("the peer does not hold this VM's key");
  auto confirm = Mac(key_, 'C', hello_, nonce_a);
  if (send(fd_, confirm.data(), confirm.size(), MSG_NOSIGNAL) !=
      static_cast<ssize_t>(confirm.size()))
    return Fail("the peer closed the link during the handshake");
  if (encrypt_)
    cipher_ = std::make_unique<LinkCipher>(SessionKey(key_, "c2a", hello_, nonce_a),
                                           SessionKey(key_, "a2c", hello_, nonce_a));
  return State::kDone;
}

LinkResult ConnectHandshake(int fd, const LinkKey& key, int32_t src, int32_t dst, bool encrypt,
                            int timeout_ms) {
  const int64_t deadline = Now() + int64_t{timeout_ms} * 1000000;
  ConnectingHandshake hs(fd, key, src, dst, encrypt);
  LinkResult res;
  for (;;) {
    if (!WaitFd(fd, hs.events(), deadline)) {
      res.error = "the peer did not answer in time";
      return res;
    }
    const auto st = hs.Step();
    if (st == LinkHandshake::State::kFailed) {
      res.error = hs.error();
      return res;
    }
    if (st == LinkHandshake::State::kDone) {
      res.ok = true;
      res.cipher = hs.TakeCipher();
      return res;
    }
  }
}

AcceptHandshake::AcceptHandshake(int fd, const LinkKey& key, int32_t me, bool require_encrypt)
    : LinkHandshake(fd, key, 0), me_(me), require_encrypt_(require_encrypt) {}

LinkHandshake::State AcceptHandshake::Step() {
  State st = State::kPending;
  if (!ReadUpTo(replied_ ? kConfirmSize : kHelloSize, st)) return st;
  if (!replied_) {
    std::memcpy(hello_.data(), in_.data(), kHelloSize);
    in_.clear();
    if (std::memcmp(hello_.data(), kMagic, 8) != 0) return Fail("not an mpvm task link");
    const uint32_t flags = Get32(hello_.data() + 8);
    if (static_cast<int32_t>(Get32(hello_.data() + 16)) != me_)
      return Fail("a link for another task");
    if (require_encrypt_ && (flags & kLinkEncrypt) == 0)
      return Fail("an unencrypted link, and this task requires encryption");
    peer_ = static_cast<int32_t>(Get32(hello_.data() + 12));
    randombytes_buf(nonce_a_.data(), nonce_a_.size());
    std::array<uint8_t, kReplySize> reply;
    std::memcpy(reply.data(), nonce_a_.data(), 32);
    auto mac = Mac(key_, 'A', hello_, nonce_a_);
    std::memcpy(reply.data() + 32, mac.data(), 32);
    // 64 bytes always fit in a fresh socket's buffer.
    if (send(fd_, reply.data(), reply.size(), MSG_NOSIGNAL) != static_cast<ssize_t>(reply.size()))
      return Fail("cannot answer the handshake");
    replied_ = true;
    return Step();
  }
  auto expect = Mac(key_, 'C', hello_, nonce_a_);
  if (sodium_memcmp(expect.data(), in_.data(), 32) != 0)
    return Fail("the peer does not hold this VM's key");
  if ((Get32(hello_.data() + 8) & kLinkEncrypt) != 0)
    cipher_ = std::make_unique<LinkCipher>(SessionKey(key_, "a2c", hello_, nonce_a_),
                                           SessionKey(key_, "c2a", hello_, nonce_a_));
  return State::kDone;
}

int ListenTcpAny(uint16_t* port) {
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
  if (fd < 0) return -errno;
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_ANY);
  socklen_t len = sizeof a;
  if (bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0 || listen(fd, 1024) != 0 ||
      getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len) != 0) {
    int e = errno;
    close(fd);
    return -e;
  }
  *port = ntohs(a.sin_port);
  return fd;
}

int StartConnectTcp(const std::string& ip, uint16_t port) {
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(port);
  if (inet_pton(AF_INET, ip.c_str(), &a.sin_addr) != 1) return -EINVAL;
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
  if (fd < 0) return -errno;
  int one = 1;
  setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  if (connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0 && errno != EINPROGRESS) {
    int e = errno;
    close(fd);
    return -e;
  }
  return fd;
}

int ConnectTcp(const std::string& ip, uint16_t port, int timeout_ms) {
  int fd = StartConnectTcp(ip, port);
  if (fd < 0) return fd;
  if (!WaitFd(fd, POLLOUT, Now() + int64_t{timeout_ms} * 1000000)) {
    close(fd);
    return -ETIMEDOUT;
  }
  int err = 0;
  socklen_t len = sizeof err;
  getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len);
  if (err != 0) {
    close(fd);
    return -err;
  }
  return fd;
}

}  // namespace mpvm
