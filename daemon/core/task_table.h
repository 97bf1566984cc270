// task_table.h — the tasks of this host and the connections of its tasks
// and tools: who is here, in which state, on which connection.
//
// The table owns the records; what a change means for others (notify, the
// registry, the spawner) is for the concern that made it. Reads look like a
// map's (tid to task, connection to its record). No I/O.
#pragma once

#include <cstdint>
#include <deque>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "control.pb.h"
#include "core/env.h"
#include "mpvm/frame.h"
#include "mpvm/tid.h"

namespace mpvm {

enum class TaskState { kSpawned, kEnrolled, kLeft };

struct Task {
  Tid tid;
  int pid = 0;
  int ptid = 0;
  bool spawned = false;  // our child (else started by hand)
  bool is_tool = false;
  TaskState state = TaskState::kSpawned;
  ConnId conn = 0;
  std::string a_out;
  int out_tid = 0, out_code = 0, out_ctx = 0;
  bool stderr_apart = false;  // stderr records go with kStderrTag
  int trace_tid = 0, trace_code = 0;
  int event_sink = 0;       // trace events about it go there (prun --trace)
  uint64_t arrived_by = 0;  // the move that brought it here
  int report_to = 0;
  int ctx = 0;  // context it starts in
  std::vector<Tid> siblings;
  std::deque<Frame> held;          // frames for it before it enrolled
  bool awaiting_siblings = false;  // part of a spawn across hosts not yet complete
  int siblings_from = 0;           // the host that completes that spawn
  ConnId enrol_conn = 0;           // an enrolment waiting for the siblings
  uint64_t enrol_rid = 0;
  int open_streams = 0;  // output pipes still open
  int link_port = 0;     // TCP port of its direct links across hosts (0: none)
  bool exited = false;   // process is gone
  bool working = false;  // inside mpvm_work (virtual-work mode counts it)
  bool worked = false;   // has called mpvm_work (or arrived working)
  int exit_code = 0, term_signal = 0;
  bool exit_notified = false;
  std::string partial_log;
  SpawnSpec spec;  // how it was started (a move restarts it elsewhere)
  // Migration. At the source: a move in progress. At the destination: the
  // restore process before the commit (its output waits for the commit).
  uint64_t move_id = 0;
  bool restoring = false;
  bool committed = false;  // a restoring copy that enrolled: it was committed
  int moves = 0;           // times it has moved so far
  std::string held_output;
  // At the destination: the accept of the offer, sent when the restore
  // process says it is ready (RestoreStart::says_when_ready).
  struct PendingAccept {
    Tid to;  // the source daemon
    uint64_t id = 0;
    int port = 0;
    std::string token;
  };
  std::optional<PendingAccept> pending_accept;
  int from_host = 0;
  int64_t restore_deadline_ns = 0;  // an uncommitted restore is dropped then
  std::string pinned_why;           // why its last move was refused
  WaitArea wait;                    // its library's waits (EnrolRequest.wait_area)
  int64_t spawned_ns = 0;           // monotonic, this host's clock
  int64_t moved_ns = 0;             // when it arrived by its last move (0: never moved)

  // Is it this host's task now? A restore process is not, until the commit.
  bool here() const { return state != TaskState::kLeft && !restoring; }
  // Running and signalable.
  bool alive() const { return !exited && pid > 0; }
};

// The output and trace settings a task starts with, from its spawn request
// or its migration offer (both name them alike).
template <class Request>
void TakeOutputSettings(const Request& r, Task* t) {
  t->out_tid = r.output_tid();
  t->out_code = r.output_code();
  t->out_ctx = r.output_ctx();
  t->stderr_apart = r.stderr_apart();
  t->trace_tid = r.trace_tid();
  t->trace_code = r.trace_code();
  t->event_sink = r.event_sink();
  t->ctx = r.ctx();
}

struct Conn {
  Tid tid;
  bool owner = false;
  bool remote = false;  // master: a task on another host, reached through its daemon
  Tid forward_for;      // a link a task had before it moved: forward what comes
};

class TaskTable {
 public:
  using Map = std::map<Tid, Task>;

  // A free tid of host `host`, or Tid() when all are taken.
  Tid AllocTid(HostIndex host);
  // This host's task `t` (not a restoring copy), or nullptr.
  Task* Here(Tid t);
  const Task* Here(Tid t) const;
  // Pids of spawned tasks still running.
  std::vector<int> Pids() const;
  // Tasks that count towards this host's load (not tools, not gone).
  int Count() const;
  // Appends this host's tasks to `rep` (where: 0, this host's tid, or one
  // task's tid); whether any matched.
  bool List(int where, Tid host_tid, ctl::TasksReply* rep) const;

  Map::iterator begin() { return tasks_.begin(); }
  Map::iterator end() { return tasks_.end(); }
  Map::const_iterator begin() const { return tasks_.begin(); }
  Map::const_iterator end() const { return tasks_.end(); }
  Map::iterator find(Tid t) { return tasks_.find(t); }
  Map::const_iterator find(Tid t) const { return tasks_.find(t); }
  bool contains(Tid t) const { return tasks_.contains(t); }
  Task& operator[](Tid t) { return tasks_[t]; }
  Task& Add(Task task) { return tasks_.insert_or_assign(task.tid, std::move(task)).first->second; }
  Map::iterator erase(Map::iterator it) { return tasks_.erase(it); }
  void erase(Tid t) { tasks_.erase(t); }
  size_t size() const { return tasks_.size(); }

 private:
  Map tasks_;
  int32_t next_local_ = 1;
};

// Connections of tasks and tools on this host, and (on the master) one
// virtual connection per task of another host whose requests it serves.
class ConnTable {
 public:
  using Map = std::map<ConnId, Conn>;

  Conn* Find(ConnId c);
  // The virtual connection of remote task `t`, made on first use.
  ConnId RemoteConn(Tid t);
  // Forgets remote task `t`'s virtual connection; returns it (0: none).
  ConnId DropRemote(int tid);
  std::vector<int> RemoteTasks() const;
  // Links held for tasks that moved away.
  size_t ForwardLinks() const;

  Map::const_iterator begin() const { return conns_.begin(); }
  Map::const_iterator end() const { return conns_.end(); }
  Map::iterator find(ConnId c) { return conns_.find(c); }
  bool contains(ConnId c) const { return conns_.contains(c); }
  Conn& operator[](ConnId c) { return conns_[c]; }
  Map::iterator erase(Map::iterator it) { return conns_.erase(it); }
  void erase(ConnId c) { conns_.erase(c); }

 private:
  Map conns_;
  std::map<int, ConnId> remote_;  // master: remote task -> virtual connection
  ConnId next_remote_ = ConnId{1} << 62;
};

}  // namespace mpvm
