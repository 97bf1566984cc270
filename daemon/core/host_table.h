// host_table.h — the hosts of the virtual machine, as this daemon knows
// them: the master's table (it admits members, hears from them and declares
// the silent ones dead), or a member's copy of it (applied from the master's
// broadcasts).
//
// The table owns the host records; what follows from a change (notify
// messages, lost tasks, the load service) is the daemon's to route: each
// change is returned to the caller. Reads look like a map's (index to
// record). No I/O; the time comes with each call.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "control.pb.h"
#include "mpvm/error.h"

namespace mpvm {

using PeerId = uint64_t;

struct HostRec {
  std::string name, arch;
  int speed = 1000;
  int ntasks = 0;
  PeerId peer = 0;  // master: the member's link
  int64_t last_seen_ns = 0;
  std::string addr;  // where its tasks accept direct links ("": the master)
  int cores = 1;     // from hwloc on that host
};

class HostTable {
 public:
  using Map = std::map<int, HostRec>;

  // This host, at start (the master's index 1; a member's once it joined).
  void AddSelf(int index, HostRec rec) { hosts_[index] = std::move(rec); }

  // Master: admits a member that asked to join on link `p`; its index, or
  // why not (a name already taken: PvmDupHost).
  mpvm::expected<int, std::string> Admit(PeerId p, const ctl::JoinRequest& j, int64_t now);
  // Master: the link `p` said something at `now`; the host's index, if any.
  std::optional<int> SawPeer(PeerId p, int64_t now);
  // Master: the members silent for longer than `dead_after`.
  std::vector<int> Silent(int64_t now, int64_t dead_after) const;
  // Every host counts as heard from `now` (this daemon was not running).
  void RestartClocks(int64_t now);
  void SetTaskCount(int index, int ntasks);
  // Removes a host; its record, or nullopt if there was none.
  std::optional<HostRec> Remove(int index);

  // Member: the master's table replaces this one; the indices that came and
  // went (not counting `self`).
  struct Changes {
    std::vector<int> added, gone;
  };
  Changes Apply(const ctl::HostTable& t, int self);
  // The table as sent to members; `self_ntasks` is this host's task count.
  ctl::HostTable ToProto(int self, int self_ntasks, int data_signature) const;

  // Map-like reads.
  Map::const_iterator begin() const { return hosts_.begin(); }
  Map::const_iterator end() const { return hosts_.end(); }
  Map::const_iterator find(int index) const { return hosts_.find(index); }
  Map::const_iterator upper_bound(int index) const { return hosts_.upper_bound(index); }
  const HostRec& at(int index) const { return hosts_.at(index); }
  bool contains(int index) const { return hosts_.contains(index); }
  size_t size() const { return hosts_.size(); }
  std::optional<int> IndexOf(const std::string& name) const;

 private:
  Map hosts_;
  int next_host_ = 2;
};

}  // namespace mpvm
