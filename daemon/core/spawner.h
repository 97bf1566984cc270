// spawner.h — pvm_spawn: where a spawn's tasks go (through the balancer's
// PlacementPolicy), starting this host's share, asking other hosts for
// theirs, telling every child its siblings once all are known, and the
// jobs that end with their spawner (prun).
//
// Example:
//   Spawner spawner(cx);
//   spawner.DoSpawn(conn, who, envelope);  // the reply goes out once all hosts answered
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "control.pb.h"
#include "core/core_context.h"
#include "placement_policy.h"

namespace mpvm {

class Spawner {
 public:
  explicit Spawner(CoreContext& cx);

  void DoSpawn(ConnId c, Tid who, const ctl::Envelope& env);
  // Another host asks this one to start ranks of its spawn.
  void OnRemoteSpawn(Tid from, const ctl::RemoteSpawn& rs);
  void OnRemoteSpawnReply(int from, const ctl::RemoteSpawnReply& rr);
  // The siblings of a spawn, now known: their enrolments are answered.
  void ApplySiblings(const std::vector<int>& tids);
  // The hosts a spawn may use, in PVM's order (this one first), or why none.
  mpvm::expected<std::vector<int>, std::string> SpawnCandidates(const ctl::SpawnRequest& s) const;
  // The environment of a child: the daemon's, the spawner's (when it is on
  // this host), the request's, then mpvm's own variables.
  std::vector<std::string> ChildEnv(const ctl::SpawnRequest& s, Tid tid, int rank,
                                    bool spawner_here) const;

  // The spawner's connection closed: its job's tasks are ended, wherever
  // they run.
  void EndJob(Tid spawner);
  void ForgetJobTask(int tid);  // it ended: no job needs ending it
  // A child spawned elsewhere for a spawner here: it ended (ChildGone), or
  // was lost with its host (ChildLost: its spawner is told).
  void ChildGone(int tid) { remote_children_.erase(tid); }
  void ChildLost(int tid);
  std::vector<int> RemoteChildren() const;
  // Host `index` left: spawns waiting on it fail there.
  void HostGone(int index);

 private:
  struct PendingSpawn {
    ConnId conn;
    uint64_t rid;
    std::vector<int> tids;                  // by rank
    std::map<int, std::vector<int>> ranks;  // host index -> ranks sent there
    int outstanding = 0;
    Tid job_of;  // the spawner, when the children end with it (else 0)
  };
  std::vector<int> SpawnHere(const ctl::SpawnRequest& s, Tid spawner, const std::vector<int>& ranks,
                             bool await_siblings);
  // Asks the other hosts in `ranks_by_host` to start their ranks.
  void SpawnElsewhere(PendingSpawn ps, const ctl::SpawnRequest& s, Tid who,
                      const std::map<int, std::vector<int>>& ranks_by_host);
  void FinishSpawn(uint64_t id);
  // The task record of a child this host started as process `pid`.
  Task SpawnedTask(const ctl::SpawnRequest& s, Tid who, const SpawnSpec& spec, int pid,
                   bool await_siblings) const;
  void NoteJob(Tid spawner, const std::vector<int>& tids);

  CoreContext& cx_;
  std::unique_ptr<balancer::PlacementPolicy> placement_;
  std::map<uint64_t, PendingSpawn> spawns_;
  uint64_t next_spawn_id_ = 1;
  // Tasks that end when their spawner (here) disconnects: spawner -> tids.
  std::map<Tid, std::vector<int>> jobs_;
  // Tasks spawned on other hosts for spawners here: tid -> report_to.
  std::map<int, int> remote_children_;
};

}  // namespace mpvm
