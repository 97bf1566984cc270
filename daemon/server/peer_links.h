// peer_links.h — the daemon-to-daemon links of a multi-host VM, over ZeroMQ.
//
// The master binds a ROUTER socket (CURVE server); members connect a DEALER
// (CURVE client). Every daemon uses the VM key pair, and the master's ZAP
// handler admits only clients whose public key is the VM's: a peer without
// the key is refused, and the refusal is logged. Each ZeroMQ message is one
// mpvm frame. Used from the daemon's single loop thread; ZeroMQ's own I/O
// threads live in the daemon, never in tasks.
#pragma once

#include <zmq.h>

#include <functional>
#include <map>
#include <string>
#include <vector>

#include "daemon_core.h"
#include "server/vm_key.h"

namespace mpvm {

class PeerLinks {
 public:
  using FrameHandler = std::function<void(PeerId, Frame&&)>;
  using LogFn = std::function<void(const std::string&)>;
  // A member's link to the master closed (the master's process is gone).
  using GoneFn = std::function<void(PeerId)>;

  PeerLinks(FrameHandler on_frame, LogFn log, GoneFn on_gone = {});
  ~PeerLinks();

  // Master: listen on "ADDR:PORT" (port 0: any); returns the bound address.
  // Called again, listens on one more address (each host joins on the one
  // it can reach).
  mpvm::expected<std::string, std::string> Listen(const std::string& addr, const VmKey& key);
  // Member: connect to the master at "ADDR:PORT".
  mpvm::expected<void, std::string> Connect(const std::string& addr, const VmKey& key);
  bool active() const { return router_ != nullptr || dealer_ != nullptr; }

  // Items to add to zmq_poll, and what to do when they are ready.
  void AppendPollItems(std::vector<zmq_pollitem_t>& items) const;
  void HandleReady();

  void Send(PeerId p, const FrameHeader& h, std::span<const uint8_t> body);
  void Drop(PeerId p);

 private:
  mpvm::expected<std::string, std::string> Bind(const std::string& addr);
  void ServeZap();
  void ReadMonitor();
  void ReadRouter();
  void ReadDealer();
  void ReadDealerMonitor();
  bool Deliver(PeerId p, const void* data, size_t size);

  FrameHandler on_frame_;
  LogFn log_;
  GoneFn on_gone_;
  void* dealer_monitor_ = nullptr;  // member: the link to the master closing
  void* ctx_ = nullptr;
  void* router_ = nullptr;
  void* dealer_ = nullptr;
  void* zap_ = nullptr;
  void* monitor_ = nullptr;
  std::string vm_public_;                  // 32 bytes, binary
  std::map<std::string, PeerId> peer_of_;  // routing id -> peer
  std::map<PeerId, std::string> routing_of_;
  PeerId next_peer_ = 100;
  int64_t last_refusal_log_ns_ = -1;  // refusals are logged at most every 10 s
  int refusals_since_log_ = 0;
};

}  // namespace mpvm
