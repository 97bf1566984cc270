// groups.cc — PVM dynamic groups. Membership and barriers are served by the
// daemon; bcast, reduce, gather and scatter are built here from messages.
#include <string.h>

#include <algorithm>
#include <complex>
#include <map>
#include <string>
#include <vector>

#include "mpvm/task_runtime.h"
#include "pvm3.h"
#include "rt_call.h"

using mpvm::Err;
using Op = mpvm::ctl::GroupRequest;

namespace mpvm_groups {
int Report(const char* fn, Err e, bool quiet = false);
}  // namespace mpvm_groups

namespace {

using mpvm_groups::Report;
using Runtime = mpvm_compat::RtCall;

int Call(const char* fn, Op::Op op, char* group, int arg, bool quiet, mpvm::ctl::GroupReply* out) {
  if (group == nullptr || *group == '\0') return Report(fn, Err::kNullGroup, quiet);
  auto r = Runtime()->Group(op, group, arg);
  if (!r) return Report(fn, r.error(), quiet);
  if (out) *out = *r;
  return r->code();
}

// Frozen groups' tables, kept by this task as PVM's members keep them: once
// a group is frozen its table no longer changes for its members, and a
// member that leaves keeps its instance in the others' tables. In the
// task's own memory, so a move carries it along.
std::map<std::string, std::vector<int>>& Frozen() {
  static std::map<std::string, std::vector<int>> tables;
  return tables;
}

const std::vector<int>* FrozenTable(const char* group) {
  if (group == nullptr) return nullptr;
  auto it = Frozen().find(group);
  return it == Frozen().end() ? nullptr : &it->second;
}

// The group's tids by instance (0 for holes): the kept table of a frozen
// group, else the daemon's (kept if the group is frozen now). 0 or a PVM
// error code.
int Members(const char* fn, char* group, std::vector<int>* tids) {
  if (const auto* kept = FrozenTable(group)) {
    *tids = *kept;
    return 0;
  }
  mpvm::ctl::GroupReply rep;
  int rc = Call(fn, Op::MEMBERS, group, 0, false, &rep);
  if (rc < 0) return rc;
  tids->assign(rep.tids().begin(), rep.tids().end());
  if (rep.frozen()) Frozen()[group] = *tids;
  return 0;
}

size_t ItemSize(int datatype) {
  static const size_t kSize[] = {0, 1, 2, 4, 4, 8, 8, 16, 8, 2, 4, 8};
  return datatype >= 1 && datatype <= 11 ? kSize[datatype] : 0;
}

// Sends `count` items raw to `tid` without disturbing the caller's send buffer.
int SendRaw(int tid, int tag, const void* data, int count, int datatype) {
  return pvm_psend(tid, tag, const_cast<void*>(data), count, datatype);
}

int RecvRaw(int tid, int tag, void* data, int count, int datatype) {
  int atid, atag, alen;
  return pvm_precv(tid, tag, data, count, datatype, &atid, &atag, &alen);
}

template <typename T>
void Combine(int op, T* x, const T* y, int n) {
  for (int i = 0; i < n; ++i) {
    switch (op) {
      case 0:
        if (y[i] > x[i]) x[i] = y[i];
        break;
      case 1:
        if (y[i] < x[i]) x[i] = y[i];
        break;
      case 2:
        x[i] += y[i];
        break;
      case 3:
        x[i] *= y[i];
        break;
    }
  }
}

template <typename T>
void CombineComplex(int op, T* x, const T* y, int n, int* info) {
  if (op < 2) {
    *info = PvmBadParam;  // complex numbers have no order
    return;
  }
  auto* a = reinterpret_cast<std::complex<T>*>(x);
  auto* b = reinterpret_cast<const std::complex<T>*>(y);
  for (int i = 0; i < n; ++i) a[i] = op == 2 ? a[i] + b[i] : a[i] * b[i];
}

void Reduce(int op, int* datatype, void* x, void* y, int* num, int* info) {
  *info = PvmOk;
  const int n = *num;
  switch (*datatype) {
    case PVM_BYTE:
      Combine(op, static_cast<char*>(x), static_cast<char*>(y), n);
      break;
    case PVM_SHORT:
      Combine(op, static_cast<short*>(x), static_cast<short*>(y), n);
      break;
    case PVM_USHORT:
      Combine(op, static_cast<unsigned short*>(x), static_cast<unsigned short*>(y), n);
      break;
    case PVM_INT:
      Combine(op, static_cast<int*>(x), static_cast<int*>(y), n);
      break;
    case PVM_UINT:
      Combine(op, static_cast<unsigned*>(x), static_cast<unsigned*>(y), n);
      break;
    case PVM_LONG:
      Combine(op, static_cast<long*>(x), static_cast<long*>(y), n);
      break;
    case PVM_ULONG:
      Combine(op, static_cast<unsigned long*>(x), static_cast<unsigned long*>(y), n);
      break;
    case PVM_FLOAT:
      Combine(op, static_cast<float*>(x), static_cast<float*>(y), n);
      break;
    case PVM_DOUBLE:
      Combine(op, static_cast<double*>(x), static_cast<double*>(y), n);
      break;
    case PVM_CPLX:
      CombineComplex(op, static_cast<float*>(x), static_cast<float*>(y), n, info);
      break;
    case PVM_DCPLX:
      CombineComplex(op, static_cast<double*>(x), static_cast<double*>(y), n, info);
      break;
    default:
      *info = PvmBadParam;
  }
}

}  // namespace

extern "C" {

int pvm_joingroup(char* group) { return Call("pvm_joingroup", Op::JOIN, group, 0, false, nullptr); }
int pvm_lvgroup(char* group) {
  int rc = Call("pvm_lvgroup", Op::LEAVE, group, 0, false, nullptr);
  if (rc >= 0) Frozen().erase(group);
  return rc;
}
int pvm_gettid(char* group, int inum) {
  if (const auto* kept = FrozenTable(group)) {
    if (inum >= 0 && inum < static_cast<int>(kept->size()) &&
        (*kept)[static_cast<size_t>(inum)] > 0)
      return (*kept)[static_cast<size_t>(inum)];
    return Report("pvm_gettid", Err::kNoInst, true);
  }
  return Call("pvm_gettid", Op::GETTID, group, inum, true, nullptr);
}
int pvm_getinst(char* group, int tid) {
  if (const auto* kept = FrozenTable(group)) {
    for (size_t i = 0; i < kept->size(); ++i)
      if ((*kept)[i] == tid && tid > 0) return static_cast<int>(i);
    return Report("pvm_getinst", Err::kNotInGroup, true);
  }
  return Call("pvm_getinst", Op::GETINST, group, tid, true, nullptr);
}
int pvm_gsize(char* group) {
  if (const auto* kept = FrozenTable(group))
    return static_cast<int>(std::count_if(kept->begin(), kept->end(), [](int t) { return t > 0; }));
  return Call("pvm_gsize", Op::SIZE, group, 0, false, nullptr);
}
int pvm_barrier(char* group, int count) {
  int rc = Call("pvm_barrier", Op::BARRIER, group, count, false, nullptr);
  return rc < 0 ? rc : 0;
}
// Blocks until `size` members (-1: all) have called it; returns the size.
int pvm_freezegroup(char* group, int size) {
  mpvm::ctl::GroupReply rep;
  const int rc = Call("pvm_freezegroup", Op::FREEZE, group, size, false, &rep);
  if (rc >= 0 && rep.frozen())  // the table as it was frozen: this member keeps it
    Frozen()[group].assign(rep.tids().begin(), rep.tids().end());
  return rc;
}

int pvm_bcast(char* group, int msgtag) {
  std::vector<int> members, tids;
  int rc = Members("pvm_bcast", group, &members);
  if (rc < 0) return rc;
  for (int t : members)
    if (t > 0 && t != pvm_mytid()) tids.push_back(t);
  if (tids.empty()) return 0;
  return pvm_mcast(tids.data(), static_cast<int>(tids.size()), msgtag);
}

void PvmMax(int* datatype, void* x, void* y, int* num, int* info) {
  Reduce(0, datatype, x, y, num, info);
}
void PvmMin(int* datatype, void* x, void* y, int* num, int* info) {
  Reduce(1, datatype, x, y, num, info);
}
void PvmSum(int* datatype, void* x, void* y, int* num, int* info) {
  Reduce(2, datatype, x, y, num, info);
}
void PvmProduct(int* datatype, void* x, void* y, int* num, int* info) {
  Reduce(3, datatype, x, y, num, info);
}

int pvm_reduce(void (*func)(int*, void*, void*, int*, int*), void* data, int count, int datatype,
               int msgtag, char* group, int root) {
  if (func == nullptr || data == nullptr || count < 0 || ItemSize(datatype) == 0 || msgtag < 0)
    return Report("pvm_reduce", Err::kBadParam);
  std::vector<int> tids;
  int rc = Members("pvm_reduce", group, &tids);
  if (rc < 0) return rc;
  if (root < 0 || root >= static_cast<int>(tids.size()) || tids[static_cast<size_t>(root)] <= 0)
    return Report("pvm_reduce", Err::kNoInst);
  const int me = pvm_mytid();
  const int root_tid = tids[static_cast<size_t>(root)];
  if (me != root_tid) return SendRaw(root_tid, msgtag, data, count, datatype) < 0 ? pvm_errno : 0;
  std::vector<char> tmp(ItemSize(datatype) * static_cast<size_t>(count));
  for (int t : tids) {
    if (t <= 0 || t == me) continue;
    if (RecvRaw(t, msgtag, tmp.data(), count, datatype) < 0) return pvm_errno;
    int info = 0, n = count, dt = datatype;
    func(&dt, data, tmp.data(), &n, &info);
    if (info < 0) return Report("pvm_reduce", mpvm::FromPvmCode(info));
  }
  return 0;
}

int pvm_gather(void* result, void* data, int count, int datatype, int msgtag, char* group,
               int root) {
  if (data == nullptr || count < 0 || ItemSize(datatype) == 0 || msgtag < 0)
    return Report("pvm_gather", Err::kBadParam);
  std::vector<int> tids;
  int rc = Members("pvm_gather", group, &tids);
  if (rc < 0) return rc;
  if (root < 0 || root >= static_cast<int>(tids.size()) || tids[static_cast<size_t>(root)] <= 0)
    return Report("pvm_gather", Err::kNoInst);
  const int me = pvm_mytid();
  const int root_tid = tids[static_cast<size_t>(root)];
  if (me != root_tid) return SendRaw(root_tid, msgtag, data, count, datatype) < 0 ? pvm_errno : 0;
  if (result == nullptr) return Report("pvm_gather", Err::kBadParam);
  const size_t chunk = ItemSize(datatype) * static_cast<size_t>(count);
  for (size_t i = 0; i < tids.size(); ++i) {
    char* slot = static_cast<char*>(result) + chunk * i;
    int t = tids[i];
    if (t <= 0) continue;
    if (t == me) {
      memcpy(slot, data, chunk);
    } else if (RecvRaw(t, msgtag, slot, count, datatype) < 0) {
      return pvm_errno;
    }
  }
  return 0;
}

int pvm_scatter(void* result, void* data, int count, int datatype, int msgtag, char* group,
                int root) {
  if (result == nullptr || count < 0 || ItemSize(datatype) == 0 || msgtag < 0)
    return Report("pvm_scatter", Err::kBadParam);
  std::vector<int> tids;
  int rc = Members("pvm_scatter", group, &tids);
  if (rc < 0) return rc;
  if (root < 0 || root >= static_cast<int>(tids.size()) || tids[static_cast<size_t>(root)] <= 0)
    return Report("pvm_scatter", Err::kNoInst);
  const int me = pvm_mytid();
  const int root_tid = tids[static_cast<size_t>(root)];
  if (me != root_tid) return RecvRaw(root_tid, msgtag, result, count, datatype) < 0 ? pvm_errno : 0;
  if (data == nullptr) return Report("pvm_scatter", Err::kBadParam);
  const size_t chunk = ItemSize(datatype) * static_cast<size_t>(count);
  for (size_t i = 0; i < tids.size(); ++i) {
    const char* slot = static_cast<const char*>(data) + chunk * i;
    int t = tids[i];
    if (t <= 0) continue;
    if (t == me) {
      memcpy(result, slot, chunk);
    } else if (SendRaw(t, msgtag, slot, count, datatype) < 0) {
      return pvm_errno;
    }
  }
  return 0;
}

}  // extern "C"

// Group-server internals Debian's libgpvm3 also exports; not part of the API.
extern "C" {
int pvm_grphostinfo(char*, int, int*, int**) { return PvmNotImpl; }
int pvm_grpvhostinfo(char*, int, int*, int**) { return PvmNotImpl; }
int pvm_gsdump(void) { return PvmNotImpl; }
}
