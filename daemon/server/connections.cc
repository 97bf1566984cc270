#include "server/connections.h"

#include <poll.h>

namespace mpvm {

ConnId Connections::Add(int fd) {
  const ConnId id = next_++;
  conns_[id] = std::make_unique<Connection>(fd);  // messages up to 2 GiB - 1 are relayed
  return id;
}

Connection* Connections::Find(ConnId c) {
  auto it = conns_.find(c);
  return it == conns_.end() ? nullptr : it->second.get();
}

void Connections::Send(ConnId c, const FrameHeader& h, std::span<const uint8_t> aux,
                       std::span<const uint8_t> body) {
  Connection* conn = Find(c);
  if (conn != nullptr && conn->open()) conn->Send(h, aux, body);
}

void Connections::Close(ConnId c) {
  if (Connection* conn = Find(c)) conn->Close();
}

void Connections::AppendPollItems(std::vector<zmq_pollitem_t>& items,
                                  std::vector<ConnId>& ids) const {
  for (const auto& [id, c] : conns_) {
    items.push_back({nullptr, c->fd(),
                     static_cast<short>(ZMQ_POLLIN | (c->wants_write() ? ZMQ_POLLOUT : 0)), 0});
    ids.push_back(id);
  }
}

void Connections::EraseClosed() {
  std::erase_if(conns_, [](const auto& kv) { return !kv.second->open(); });
}

void Connections::FlushAndCloseAll() {
  for (auto& [id, c] : conns_) {
    for (int i = 0; i < 100 && c->open() && c->wants_write(); ++i) {
      pollfd p{c->fd(), POLLOUT, 0};
      poll(&p, 1, 10);
      c->Flush();
    }
    c->Close();
  }
  conns_.clear();
}

}  // namespace mpvm
