// membership.h — the hosts of the virtual machine: on the master, starting
// hosts (the host file, pvm_addhosts), admitting them, hearing their
// heartbeats and load reports, declaring the silent ones dead and removing
// hosts; on a member, joining, applying the master's table and watching the
// master. A host that leaves is announced to the other concerns with
// CoreEvents::HostGone.
//
// Example (master):
//   membership.StartHosts(hostfile_hosts);   // each joins, or OnHostStartFailed
//   membership.Beat(now);                    // every tick: heartbeats, the dead
#pragma once

#include <cstdint>
#include <map>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "control.pb.h"
#include "core/core_context.h"
#include "hostfile.h"

namespace mpvm {

class Membership {
 public:
  explicit Membership(CoreContext& cx) : cx_(cx) {}

  // Master: pvm_addhosts and pvm_delhosts (answered when the host joined or failed).
  void DoAddHost(ConnId c, const ctl::Envelope& env);
  void DoDelHost(ConnId c, Tid who, const ctl::Envelope& env);
  // Master: starts the daemons of a host file's hosts. Returns one message
  // per host that could not be started ("host 'x' (line 3): why").
  std::vector<std::string> StartHosts(const std::vector<HostSpec>& hosts);
  void OnHostStartFailed(const std::string& name, const std::string& why);
  // Master: remove a member (pvm_delhosts, mpvm delete). kNoHost if unknown.
  Status DeleteHost(const std::string& name, const std::string& reason);
  bool starting_hosts() const { return !starting_.empty(); }

  // Member: send the join request; what the master says back.
  void StartJoin(int64_t now_ns);
  const std::string& join_error() const { return join_error_; }

  // What a peer daemon says of itself (master: join, heartbeat; member: the
  // master's join reply, table, leave).
  void OnMemberControl(PeerId p, const ctl::Envelope& env);
  void OnMasterControl(const ctl::Envelope& env);
  // A frame came from `p`: it lives.
  void SawPeer(PeerId p);
  void OnPeerGone(PeerId p);
  bool FromMember(PeerId p) const;
  // Master: a frame from a peer that is not a member. A join is admitted;
  // anything else gets, once, a fenced HostLeave (the daemon of a host
  // declared gone kills its tasks and leaves) and is dropped.
  void FromStranger(PeerId p, const Frame& f);
  // Master: a deleted host, until its link closes: what it sends still counts.
  bool Departing(PeerId p) const;

  // Each tick: first (before the time moves on) restart the clocks if this
  // daemon itself did not run for a while; then heartbeats and the dead.
  void ClockCheck(int64_t now_ns);
  void Beat(int64_t now_ns);
  // Master, halting: every member is told to leave.
  void LeaveAll();
  void DropWaitersOf(ConnId c);

 private:
  void AdmitHost(PeerId p, const ctl::JoinRequest& j);
  // `departing`: deleted on purpose (mpvm delete), not failed.
  void RemoveHost(int index, const std::string& reason, bool departing = false);
  void ApplyTable(const ctl::HostTable& t);
  void BroadcastTable(PeerId except = 0);
  void HostsAdded(const std::vector<int>& added);

  CoreContext& cx_;
  std::map<std::string, std::pair<ConnId, uint64_t>> pending_adds_;  // name -> who waits
  std::set<PeerId> told_to_leave_;  // strangers sent a fenced HostLeave
  std::set<PeerId> departing_;      // deleted hosts whose links are still open
  std::set<std::string> starting_;  // host-file hosts not yet joined
  std::string join_error_;
  int64_t last_beat_sent_ns_ = 0;
  int64_t last_master_ns_ = 0;
  bool clock_started_ = false;  // a tick, or StartJoin, has set the time
};

}  // namespace mpvm
