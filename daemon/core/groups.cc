#include "groups.h"

#include <algorithm>
#include <utility>

#include "mpvm/error.h"

namespace mpvm {
namespace {

int Code(Err e) { return ToPvmCode(e); }

int InstanceOf(const std::vector<int>& members, int tid) {
  auto p = std::find(members.begin(), members.end(), tid);
  return p == members.end() ? -1 : static_cast<int>(p - members.begin());
}

int SizeOf(const std::vector<int>& members) {
  return static_cast<int>(
      std::count_if(members.begin(), members.end(), [](int t) { return t != 0; }));
}

// Drops trailing holes; true when no member is left.
bool Trim(std::vector<int>& members) {
  while (!members.empty() && members.back() == 0) members.pop_back();
  return members.empty();
}

}  // namespace

void GroupServer::Handle(ConnId conn, uint64_t rid, Tid who, const ctl::GroupRequest& g) {
  ctl::Envelope e = NewEnvelope();
  auto* rep = e.mutable_group_reply();
  int code = 0;
  switch (g.op()) {
    case ctl::GroupRequest::JOIN:
      code = Join(g.group(), who);
      break;
    case ctl::GroupRequest::LEAVE:
      code = Leave(g.group(), who);
      break;
    case ctl::GroupRequest::FREEZE:
      Freeze(conn, rid, who, g);  // answered when `size` members have called it
      return;
    case ctl::GroupRequest::BARRIER:
      if (!Barrier(conn, rid, who, g, &code)) return;  // answered when all arrive
      if (code == 0) return;                           // answered with the others
      break;
    default:
      code = Query(g, rep);
  }
  rep->set_code(code);
  out_.Add(conn, rid, std::move(e));
}

int GroupServer::Join(const std::string& name, Tid who) {
  Group& grp = groups_[name];
  if (InstanceOf(grp.members, who.raw()) >= 0) return Code(Err::kDupGroup);
  // A frozen group takes no one; PVM 3.4.6's group server answers
  // PvmNotInGroup then (measured), and so does mpvm.
  if (grp.frozen_size >= 0) return Code(Err::kNotInGroup);
  auto hole = std::find(grp.members.begin(), grp.members.end(), 0);
  const int inst = static_cast<int>(hole - grp.members.begin());
  if (hole == grp.members.end()) {
    grp.members.push_back(who.raw());
  } else {
    *hole = who.raw();
  }
  return inst;
}

int GroupServer::Leave(const std::string& name, Tid who) {
  auto it = groups_.find(name);
  if (it == groups_.end()) return Code(Err::kNoGroup);
  const int inst = InstanceOf(it->second.members, who.raw());
  if (inst < 0) return Code(Err::kNotInGroup);
  it->second.members[static_cast<size_t>(inst)] = 0;
  if (Trim(it->second.members)) groups_.erase(it);
  return 0;
}

// As PVM's group server: a synchronizing call that every member makes; all
// return the size once `size` members (-1: the current size) have called it,
// and the group is frozen then, not before (tasks may still join meanwhile).
void GroupServer::Freeze(ConnId conn, uint64_t rid, Tid who, const ctl::GroupRequest& g) {
  auto answer = [this](ConnId c, uint64_t r, int code) {
    ctl::Envelope e = NewEnvelope();
    e.mutable_group_reply()->set_code(code);
    out_.Add(c, r, std::move(e));
  };
  auto it = groups_.find(g.group());
  if (it == groups_.end()) {
    answer(conn, rid, Code(Err::kNoGroup));
    return;
  }
  Group& grp = it->second;
  if (grp.frozen_size >= 0) {
    answer(conn, rid, Code(Err::kDupGroup));
    return;
  }
  if (InstanceOf(grp.members, who.raw()) < 0) {
    answer(conn, rid, Code(Err::kNotInGroup));
    return;
  }
  const int size = g.arg() < 0 ? SizeOf(grp.members) : g.arg();
  grp.freezing.emplace_back(conn, rid);
  if (static_cast<int>(grp.freezing.size()) < size) return;
  grp.frozen_size = size;
  // Each answer carries the table as it is frozen: the members keep it, and
  // one that leaves at once must not be missing from the others' copies.
  for (auto [wc, wrid] : std::exchange(grp.freezing, {})) {
    ctl::Envelope e = NewEnvelope();
    auto* r = e.mutable_group_reply();
    r->set_code(size);
    for (int t : grp.members) r->add_tids(t);
    r->set_frozen(true);
    out_.Add(wc, wrid, std::move(e));
  }
}

int GroupServer::Query(const ctl::GroupRequest& g, ctl::GroupReply* rep) const {
  auto it = groups_.find(g.group());
  if (it == groups_.end()) {
    const bool known_op = g.op() == ctl::GroupRequest::GETTID ||
                          g.op() == ctl::GroupRequest::GETINST ||
                          g.op() == ctl::GroupRequest::SIZE || g.op() == ctl::GroupRequest::MEMBERS;
    return known_op ? Code(Err::kNoGroup) : Code(Err::kBadParam);
  }
  const auto& m = it->second.members;
  switch (g.op()) {
    case ctl::GroupRequest::GETTID:
      if (g.arg() < 0 || g.arg() >= static_cast<int>(m.size()) ||
          m[static_cast<size_t>(g.arg())] == 0)
        return Code(Err::kNoInst);
      return m[static_cast<size_t>(g.arg())];
    case ctl::GroupRequest::GETINST: {
      const int inst = InstanceOf(m, g.arg());
      return inst < 0 ? Code(Err::kNotInGroup) : inst;
    }
    case ctl::GroupRequest::SIZE:
      return SizeOf(m);
    case ctl::GroupRequest::MEMBERS:
      for (int t : m) rep->add_tids(t);
      rep->set_frozen(it->second.frozen_size >= 0);
      return 0;
    default:
      return Code(Err::kBadParam);
  }
}

bool GroupServer::Barrier(ConnId conn, uint64_t rid, Tid who, const ctl::GroupRequest& g,
                          int* code) {
  auto it = groups_.find(g.group());
  if (it == groups_.end()) {
    *code = Code(Err::kNoGroup);
    return true;
  }
  Group& grp = it->second;
  if (InstanceOf(grp.members, who.raw()) < 0) {
    *code = Code(Err::kNotInGroup);
    return true;
  }
  const int count = g.arg() < 0 ? SizeOf(grp.members) : g.arg();
  grp.barrier.emplace_back(conn, rid);
  if (static_cast<int>(grp.barrier.size()) < count) return false;
  for (auto [wc, wrid] : std::exchange(grp.barrier, {})) {
    ctl::Envelope ok = NewEnvelope();
    ok.mutable_group_reply()->set_code(0);
    out_.Add(wc, wrid, std::move(ok));
  }
  *code = 0;
  return true;
}

std::vector<int> GroupServer::Members() const {
  std::vector<int> out;
  for (const auto& [name, g] : groups_)
    for (int t : g.members)
      if (t != 0) out.push_back(t);
  return out;
}

void GroupServer::DropWaitersOf(ConnId conn) {
  for (auto& [name, g] : groups_) {
    std::erase_if(g.barrier, [&](const auto& p) { return p.first == conn; });
    std::erase_if(g.freezing, [&](const auto& p) { return p.first == conn; });
  }
}

void GroupServer::ForgetMember(int tid) {
  for (auto g = groups_.begin(); g != groups_.end();) {
    std::replace(g->second.members.begin(), g->second.members.end(), tid, 0);
    g = Trim(g->second.members) ? groups_.erase(g) : std::next(g);
  }
}

}  // namespace mpvm
