#include "server/peer_links.h"

#include <fmt/format.h>

#include <cstring>
#include <ctime>

namespace mpvm {
namespace {

constexpr uint32_t kMaxPeerFrame = kDefaultMaxFrame;  // every message pvm_send can send
// Messages taken per wake-up, so the loop (and its heartbeats) keeps turning
// during long bursts; zmq_poll reports the rest at once.
constexpr int kBatch = 1000;

std::string Recv(void* sock, bool* more) {
  zmq_msg_t m;
  zmq_msg_init(&m);
  if (zmq_msg_recv(&m, sock, ZMQ_DONTWAIT) < 0) {
    zmq_msg_close(&m);
    *more = false;
    return {};
  }
  std::string out(static_cast<const char*>(zmq_msg_data(&m)), zmq_msg_size(&m));
  *more = zmq_msg_more(&m) != 0;
  zmq_msg_close(&m);
  return out;
}

// Daemon links have no high-water mark (see NoHighWaterMark), so a send only
// fails if the peer is unknown or gone. Returns false then.
bool SendPart(void* sock, const std::string& s, bool more) {
  return zmq_send(sock, s.data(), s.size(), (more ? ZMQ_SNDMORE : 0) | ZMQ_DONTWAIT) >= 0;
}

// ZeroMQ drops or refuses messages past 1000 queued by default; a daemon
// must instead hold what its peers cannot take yet (nothing is ever lost
// between daemons), so its links queue without limit.
void NoHighWaterMark(void* sock) {
  int zero = 0;
  zmq_setsockopt(sock, ZMQ_SNDHWM, &zero, sizeof zero);
  zmq_setsockopt(sock, ZMQ_RCVHWM, &zero, sizeof zero);
}

}  // namespace

PeerLinks::PeerLinks(FrameHandler on_frame, LogFn log, GoneFn on_gone)
    : on_frame_(std::move(on_frame)), log_(std::move(log)), on_gone_(std::move(on_gone)) {}

PeerLinks::~PeerLinks() {
  for (void* s : {router_, dealer_, zap_, monitor_, dealer_monitor_})
    if (s != nullptr) {
      // The master's last words (HostLeave) get half a second to go out.
      int linger = s == router_ ? 500 : 0;
      zmq_setsockopt(s, ZMQ_LINGER, &linger, sizeof linger);
      zmq_close(s);
    }
  if (ctx_ != nullptr) zmq_ctx_term(ctx_);
}

mpvm::expected<std::string, std::string> PeerLinks::Listen(const std::string& addr,
                                                           const VmKey& key) {
  if (router_ != nullptr) return Bind(addr);  // one more address
  ctx_ = zmq_ctx_new();
  uint8_t pub[32];
  if (zmq_z85_decode(pub, key.public_z85.c_str()) == nullptr)
    return mpvm::unexpected(std::string("the VM key is damaged"));
  vm_public_.assign(reinterpret_cast<const char*>(pub), 32);
  // The ZAP handler must exist before any connection is authenticated.
  zap_ = zmq_socket(ctx_, ZMQ_REP);
  if (zmq_bind(zap_, "inproc://zeromq.zap.01") != 0)
    return mpvm::unexpected(fmt::format("ZAP handler: {}", zmq_strerror(zmq_errno())));
  router_ = zmq_socket(ctx_, ZMQ_ROUTER);
  NoHighWaterMark(router_);
  int one = 1;
  zmq_setsockopt(router_, ZMQ_CURVE_SERVER, &one, sizeof one);
  zmq_setsockopt(router_, ZMQ_CURVE_SECRETKEY, key.secret_z85.c_str(), 40);
  zmq_setsockopt(router_, ZMQ_ZAP_DOMAIN, "mpvm", 4);
  zmq_setsockopt(router_, ZMQ_ROUTER_MANDATORY, &one, sizeof one);
  zmq_socket_monitor(router_, "inproc://mpvm.monitor",
                     ZMQ_EVENT_HANDSHAKE_FAILED_PROTOCOL | ZMQ_EVENT_HANDSHAKE_FAILED_AUTH |
                         ZMQ_EVENT_HANDSHAKE_FAILED_NO_DETAIL);
  monitor_ = zmq_socket(ctx_, ZMQ_PAIR);
  zmq_connect(monitor_, "inproc://mpvm.monitor");
  return Bind(addr);
}

mpvm::expected<std::string, std::string> PeerLinks::Bind(const std::string& addr) {
  const std::string ep = "tcp://" + addr;
  if (zmq_bind(router_, ep.c_str()) != 0)
    return mpvm::unexpected(
        fmt::format("cannot listen on {}: {}", addr, zmq_strerror(zmq_errno())));
  char last[256];
  size_t len = sizeof last;
  zmq_getsockopt(router_, ZMQ_LAST_ENDPOINT, last, &len);
  std::string bound = last;
  if (bound.rfind("tcp://", 0) == 0) bound = bound.substr(6);
  return bound;
}

mpvm::expected<void, std::string> PeerLinks::Connect(const std::string& addr, const VmKey& key) {
  ctx_ = zmq_ctx_new();
  dealer_ = zmq_socket(ctx_, ZMQ_DEALER);
  NoHighWaterMark(dealer_);
  zmq_setsockopt(dealer_, ZMQ_CURVE_SERVERKEY, key.public_z85.c_str(), 40);
  zmq_setsockopt(dealer_, ZMQ_CURVE_PUBLICKEY, key.public_z85.c_str(), 40);
  zmq_setsockopt(dealer_, ZMQ_CURVE_SECRETKEY, key.secret_z85.c_str(), 40);
  int zero = 0;
  zmq_setsockopt(dealer_, ZMQ_LINGER, &zero, sizeof zero);
  // The link closing means the master is gone: known at once, not after a
  // whole dead-after interval of silence.
  zmq_socket_monitor(dealer_, "inproc://mpvm.dealer.monitor", ZMQ_EVENT_DISCONNECTED);
  dealer_monitor_ = zmq_socket(ctx_, ZMQ_PAIR);
  zmq_connect(dealer_monitor_, "inproc://mpvm.dealer.monitor");
  const std::string ep = "tcp://" + addr;
  if (zmq_connect(dealer_, ep.c_str()) != 0)
    return mpvm::unexpected(
        fmt::format("cannot connect to {}: {}", addr, zmq_strerror(zmq_errno())));
  return {};
}

void PeerLinks::ReadDealerMonitor() {
  for (;;) {
    bool more;
    std::string ev = Recv(dealer_monitor_, &more);
    if (ev.size() < 6) return;
    if (more) Recv(dealer_monitor_, &more);  // the endpoint
    if (on_gone_) on_gone_(kMasterPeer);
  }
}

void PeerLinks::AppendPollItems(std::vector<zmq_pollitem_t>& items) const {
  for (void* s : {router_, dealer_, zap_, monitor_, dealer_monitor_})
    if (s != nullptr) items.push_back({s, 0, ZMQ_POLLIN, 0});
}

void PeerLinks::HandleReady() {
  // Non-blocking reads of everything pending; cheap when nothing is.
  if (zap_ != nullptr) ServeZap();
  if (monitor_ != nullptr) ReadMonitor();
  if (router_ != nullptr) ReadRouter();
  if (dealer_ != nullptr) ReadDealer();
  if (dealer_monitor_ != nullptr) ReadDealerMonitor();
}

void PeerLinks::ServeZap() {
  for (;;) {
    std::vector<std::string> parts;
    bool more = true;
    while (more) {
      std::string p = Recv(zap_, &more);
      if (!more && p.empty() && parts.empty()) return;  // nothing pending
      parts.push_back(std::move(p));
    }
    if (parts.size() < 6) return;
    const std::string& request_id = parts[1];
    const std::string& address = parts[3];
    const std::string& mechanism = parts[5];
    const bool ok = mechanism == "CURVE" && parts.size() >= 7 && parts[6] == vm_public_;
    if (!ok)
      log_(
          fmt::format("refused a daemon connecting from {}: it does not hold this virtual "
                      "machine's key",
                      address));
    SendPart(zap_, "1.0", true);
    SendPart(zap_, request_id, true);
    SendPart(zap_, ok ? "200" : "400", true);
    SendPart(zap_, ok ? "OK" : "not a member of this virtual machine", true);
    SendPart(zap_, ok ? "vm" : "", true);
    SendPart(zap_, "", false);
  }
}

void PeerLinks::ReadMonitor() {
  for (;;) {
    bool more;
    std::string ev = Recv(monitor_, &more);
    if (ev.size() < 6) return;
    std::string addr = more ? Recv(monitor_, &more) : "";
    // A refused client retries every ~100 ms: say so once, then count.
    timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    const int64_t now = int64_t{ts.tv_sec} * 1000000000 + ts.tv_nsec;
    ++refusals_since_log_;
    if (last_refusal_log_ns_ < 0 || now - last_refusal_log_ns_ > 10'000'000'000) {
      log_(
          fmt::format("refused {} connection(s) on {}: the security handshake failed (the peer "
                      "does not hold this virtual machine's key)",
                      refusals_since_log_, addr.empty() ? "the daemon port" : addr));
      last_refusal_log_ns_ = now;
      refusals_since_log_ = 0;
    }
  }
}

bool PeerLinks::Deliver(PeerId p, const void* data, size_t size) {
  if (size < kFrameHeaderSize) {
    log_(fmt::format("peer link {}: short frame ({} bytes); dropped", p, size));
    return false;
  }
  auto h = DecodeFrameHeader(std::span<const uint8_t, kFrameHeaderSize>(
                                 static_cast<const uint8_t*>(data), kFrameHeaderSize),
                             kMaxPeerFrame);
  if (!h || h->length != size - kFrameHeaderSize) {
    log_(fmt::format("peer link {}: {}; dropped", p,
                     h ? "frame length does not match the message" : FrameErrorText(h.error())));
    return false;
  }
  Frame f;
  f.header = *h;
  const auto* b = static_cast<const uint8_t*>(data) + kFrameHeaderSize;
  f.payload.assign(b, b + h->length);
  on_frame_(p, std::move(f));
  return true;
}

void PeerLinks::ReadRouter() {
  for (int batch = 0; batch < kBatch; ++batch) {
    bool more;
    std::string id = Recv(router_, &more);
    if (id.empty()) return;
    if (!more) continue;
    std::string body = Recv(router_, &more);
    while (more) Recv(router_, &more);  // no third part in our protocol
    auto it = peer_of_.find(id);
    PeerId p;
    if (it == peer_of_.end()) {
      p = next_peer_++;
      peer_of_[id] = p;
      routing_of_[p] = id;
    } else {
      p = it->second;
    }
    Deliver(p, body.data(), body.size());
  }
}

void PeerLinks::ReadDealer() {
  for (int batch = 0; batch < kBatch; ++batch) {
    bool more;
    std::string body = Recv(dealer_, &more);
    if (body.empty()) return;
    Deliver(kMasterPeer, body.data(), body.size());
  }
}

void PeerLinks::Send(PeerId p, const FrameHeader& h, std::span<const uint8_t> body) {
  FrameHeader hh = h;
  hh.length = static_cast<uint32_t>(body.size());
  // body is the whole payload: aux bytes (h.aux_length of them) and the rest
  auto head = EncodeFrameHeader(hh);
  std::string msg(reinterpret_cast<const char*>(head.data()), head.size());
  msg.append(reinterpret_cast<const char*>(body.data()), body.size());
  if (dealer_ != nullptr && p == kMasterPeer) {
    if (!SendPart(dealer_, msg, false))
      log_(fmt::format("cannot send to the master: {}", zmq_strerror(zmq_errno())));
    return;
  }
  auto it = routing_of_.find(p);
  if (router_ == nullptr || it == routing_of_.end()) return;
  // A peer whose link is gone (EHOSTUNREACH: its daemon ended, as all do
  // when a VM halts) is not worth a warning: heartbeats tell a dead host.
  if ((!SendPart(router_, it->second, true) || !SendPart(router_, msg, false)) &&
      zmq_errno() != EHOSTUNREACH)
    log_(fmt::format("cannot send to peer link {}: {}", p, zmq_strerror(zmq_errno())));
}

void PeerLinks::Drop(PeerId p) {
  auto it = routing_of_.find(p);
  if (it == routing_of_.end()) return;
  peer_of_.erase(it->second);
  routing_of_.erase(it);
}

}  // namespace mpvm
