// connections.h — the daemon's connections to tasks and tools on this host
// (its Unix socket's), and the task links it forwards for tasks that moved.
#pragma once

#include <zmq.h>

#include <map>
#include <memory>
#include <span>
#include <vector>

#include "core/outbox.h"
#include "mpvm/connection.h"
#include "mpvm/frame.h"

namespace mpvm {

class Connections {
 public:
  // Takes `fd` (non-blocking); returns the connection's id.
  ConnId Add(int fd);
  Connection* Find(ConnId c);
  void Send(ConnId c, const FrameHeader& h, std::span<const uint8_t> aux,
            std::span<const uint8_t> body);
  void Close(ConnId c);
  // One poll item per connection, its id beside it in `ids`.
  void AppendPollItems(std::vector<zmq_pollitem_t>& items, std::vector<ConnId>& ids) const;
  void EraseClosed();
  // At the end: final replies (halt acknowledgements) delivered, then closed.
  void FlushAndCloseAll();

 private:
  std::map<ConnId, std::unique_ptr<Connection>> conns_;
  ConnId next_ = 1;
};

}  // namespace mpvm
