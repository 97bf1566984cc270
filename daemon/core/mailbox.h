// mailbox.h — the VM's message mailbox (pvm_putinfo, pvm_recvinfo,
// pvm_delinfo, pvm_getmboxinfo), held by the master daemon.
//
// Entries are messages stored by class name and index, each with an owner
// (the task that put it; 0 once a persistent entry's owner has left) and
// PVM's flags. A pvm_recvinfo with PvmMboxWaitForInfo waits until a matching
// entry is put. The mailbox owns its entries and waiters; answers go into
// its outbox (Replies()) for the daemon to send. No I/O, no clock.
//
// Example:
//   Mailbox box;
//   box.Put(conn, rid, Tid(0x40001), put_request);  // Status: the index
//   box.Get(conn, rid2, Tid(0x40002), get_request); // MboxGetReply
//   for (auto& r : box.Replies().Take()) ...
#pragma once

#include <map>
#include <string>
#include <vector>

#include "mpvm/tid.h"
#include "outbox.h"

namespace mpvm {

class Mailbox {
 public:
  // pvm_putinfo: answers a Status with the entry's index, or PvmExists /
  // PvmDenied when the place is taken and may not be overwritten.
  void Put(ConnId conn, uint64_t rid, Tid who, const ctl::MboxPut& put);
  // pvm_recvinfo: answers an MboxGetReply (code: the index, PvmNotFound or
  // PvmDenied), or waits for a matching Put when asked to.
  void Get(ConnId conn, uint64_t rid, Tid who, const ctl::MboxGet& get);
  // pvm_delinfo: answers a Status (0, PvmNotFound or PvmDenied).
  void Del(ConnId conn, uint64_t rid, Tid who, const ctl::MboxDel& del);
  // pvm_getmboxinfo: the classes whose names match the glob pattern.
  void Info(ConnId conn, uint64_t rid, const ctl::MboxInfoRequest& info);

  // The connection closed: its waiting requests are dropped unanswered.
  void DropWaitersOf(ConnId conn);
  // Task `tid` left the VM: its entries go, persistent ones stay unowned.
  void ForgetOwner(int tid);

  // The tasks that own entries.
  std::vector<int> Owners() const;

  ReplyOutbox& Replies() { return out_; }

 private:
  struct Entry {
    int owner;
    int flags;
    int encoding;
    std::string data, aux;
  };
  struct Waiter {
    ConnId conn;
    uint64_t rid;
    Tid tid;
    std::string name;
    int index, flags;
  };
  // Fills `out` from the entry `name`/`index` (PvmMboxFirstAvail: the first
  // at or after it); false if there is none.
  bool GetInto(Tid who, const std::string& name, int index, int flags, ctl::MboxGetReply* out);
  void WakeWaiters(const std::string& name);
  // The index a Put of `flags` for `who` goes to, or a PVM error code.
  int PlaceFor(const std::map<int, Entry>& cls, Tid who, int flags) const;

  std::map<std::string, std::map<int, Entry>> classes_;
  std::vector<Waiter> waiters_;
  ReplyOutbox out_;
};

}  // namespace mpvm
