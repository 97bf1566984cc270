// groups.h — PVM's dynamic groups (pvm_joingroup, pvm_lvgroup, pvm_gettid,
// pvm_getinst, pvm_gsize, pvm_freezegroup, pvm_barrier and the member list
// libgpvm3's collectives use), held by the master daemon.
//
// A group's members are tids by instance number; a leaver leaves a hole that
// the next joiner fills, as in PVM. A barrier answers every waiter once
// `count` members (or all, for -1) have arrived; a freeze likewise once
// `size` members (or all, for -1) have called it, and only then is the group
// frozen and are joins refused, as in PVM. The server owns its groups and
// waiters; answers go into its outbox (Replies()). No I/O, no clock.
#pragma once

#include <map>
#include <string>
#include <utility>
#include <vector>

#include "mpvm/tid.h"
#include "outbox.h"

namespace mpvm {

class GroupServer {
 public:
  // One request of `who`, answered with a GroupReply (code: an instance, a
  // tid, a size, 0 or a PVM error), except a barrier or freeze not yet
  // complete.
  void Handle(ConnId conn, uint64_t rid, Tid who, const ctl::GroupRequest& g);

  // The connection closed: it no longer waits at any barrier or freeze.
  void DropWaitersOf(ConnId conn);
  // Task `tid` left the VM: it leaves every group.
  void ForgetMember(int tid);

  // The tasks that are members of a group.
  std::vector<int> Members() const;

  ReplyOutbox& Replies() { return out_; }

 private:
  struct Group {
    std::vector<int> members;  // tid by instance; 0 = hole
    int frozen_size = -1;
    std::vector<std::pair<ConnId, uint64_t>> barrier;
    std::vector<std::pair<ConnId, uint64_t>> freezing;  // waiting in pvm_freezegroup
  };
  // Each returns the reply's code.
  int Join(const std::string& name, Tid who);
  int Leave(const std::string& name, Tid who);
  // Answers the caller at once on an error; otherwise waits, and answers
  // every waiter with the size once `size` members have called it.
  void Freeze(ConnId conn, uint64_t rid, Tid who, const ctl::GroupRequest& g);
  int Query(const ctl::GroupRequest& g, ctl::GroupReply* rep) const;
  // Returns false while the barrier waits for more members.
  bool Barrier(ConnId conn, uint64_t rid, Tid who, const ctl::GroupRequest& g, int* code);

  std::map<std::string, Group> groups_;
  ReplyOutbox out_;
};

}  // namespace mpvm
