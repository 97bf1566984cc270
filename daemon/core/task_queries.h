// task_queries.h — questions about tasks that other hosts answer: pvm_tasks
// across the VM (the master asks every host concerned and answers once all
// have, or after 2 s without a host that said nothing), and where a task of
// another host accepts direct links (its host answers, with its address).
#pragma once

#include <cstdint>
#include <map>
#include <utility>

#include "control.pb.h"
#include "core/core_context.h"

namespace mpvm {

class TaskQueries {
 public:
  explicit TaskQueries(CoreContext& cx) : cx_(cx) {}

  void DoTasks(ConnId c, const ctl::Envelope& env);
  // Master: a host's share of a query. Member: the master asks for its list.
  void OnTasksReply(ctl::Envelope&& env);
  void OnPeerTasks(const ctl::Envelope& env);
  // Queries whose time is up are answered with what came.
  void CheckTaskQueries();

  // pvm_tasks' cousin: the daemon of the host where a task runs now.
  void DoLocation(ConnId c, const ctl::Envelope& env);
  void DoLocate(ConnId c, const ctl::Envelope& env);
  void OnLocateQuery(const FrameHeader& h, const ctl::Envelope& env);
  void OnLocateReply(Tid from, ctl::Envelope&& env);

 private:
  struct TaskQuery {
    ConnId conn;
    uint64_t rid;
    int outstanding = 0;
    int where = 0;
    ctl::TasksReply reply;
    int64_t deadline_ns = 0;
  };
  void FinishTaskQuery(uint64_t id);

  CoreContext& cx_;
  std::map<uint64_t, TaskQuery> task_queries_;
  uint64_t next_task_query_ = 1;
  std::map<uint64_t, std::pair<ConnId, uint64_t>> locates_;  // query -> asking task
  uint64_t next_query_ = 1;
};

}  // namespace mpvm
