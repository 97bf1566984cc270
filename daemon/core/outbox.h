// outbox.h — what a concern of the daemon's core wants sent: replies to
// requests, written into an outbox that the composition root (DaemonCore)
// drains after each event. A concern never sends anything itself.
//
// Example:
//   mailbox.Get(conn, rid, who, request);
//   for (auto& r : mailbox.TakeReplies()) Reply(r.conn, r.rid, std::move(r.env));
#pragma once

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "control.pb.h"
#include "mpvm/control.h"

namespace mpvm {

using ConnId = uint64_t;

// An answer to the request `rid` that came on connection `conn`.
struct ReplyOut {
  ConnId conn = 0;
  uint64_t rid = 0;
  ctl::Envelope env;
};

class ReplyOutbox {
 public:
  void Add(ConnId conn, uint64_t rid, ctl::Envelope env) {
    replies_.push_back({conn, rid, std::move(env)});
  }
  // A Status reply: a PVM code (or a value, such as an index) and a detail.
  void AddStatus(ConnId conn, uint64_t rid, int code, std::string detail = "") {
    ctl::Envelope e = NewEnvelope();
    e.mutable_status()->set_code(code);
    e.mutable_status()->set_detail(std::move(detail));
    Add(conn, rid, std::move(e));
  }
  // The replies written since the last call, oldest first.
  std::vector<ReplyOut> Take() { return std::exchange(replies_, {}); }

 private:
  std::vector<ReplyOut> replies_;
};

}  // namespace mpvm
