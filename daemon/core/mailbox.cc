#include "mailbox.h"

#include <fnmatch.h>

#include "mpvm/error.h"

namespace mpvm {
namespace {

// pvm3.h's mailbox flags (the daemon does not include the C header).
constexpr int kPersistent = 1, kMultiInstance = 2, kOverWritable = 4, kFirstAvail = 8,
              kReadAndDelete = 16, kWaitForInfo = 32;
// mpvm's library passes a direct index (pvm_putinfo's index) above the flags.
constexpr int kDirectIndexShift = 10;

int Code(Err e) { return ToPvmCode(e); }

}  // namespace

int Mailbox::PlaceFor(const std::map<int, Entry>& cls, Tid who, int flags) const {
  const int direct = flags >> kDirectIndexShift;
  if (direct > 0 || (!(flags & kMultiInstance) && cls.contains(0))) {
    auto old = cls.find(direct);
    if (old == cls.end()) return direct;
    const bool overwritable = old->second.flags & kOverWritable;
    if (!overwritable && old->second.owner != who.raw())
      return direct > 0 ? Code(Err::kDenied) : Code(Err::kExists);
    if (!overwritable && direct == 0) return Code(Err::kExists);
    return direct;
  }
  if (!(flags & kMultiInstance)) return 0;
  int index = 0;
  while (cls.contains(index)) ++index;
  return index;
}

void Mailbox::Put(ConnId conn, uint64_t rid, Tid who, const ctl::MboxPut& p) {
  auto& cls = classes_[p.name()];
  const int index = PlaceFor(cls, who, p.flags());
  if (index < 0) {
    out_.AddStatus(conn, rid, index);
    return;
  }
  cls[index] =
      Entry{who.raw(), p.flags() & ((1 << kDirectIndexShift) - 1), p.encoding(), p.data(), p.aux()};
  out_.AddStatus(conn, rid, index);
  WakeWaiters(p.name());
}

bool Mailbox::GetInto(Tid who, const std::string& name, int index, int flags,
                      ctl::MboxGetReply* out) {
  auto cls = classes_.find(name);
  if (cls == classes_.end()) return false;
  auto it = (flags & kFirstAvail) ? cls->second.lower_bound(index) : cls->second.find(index);
  if (it == cls->second.end()) return false;
  const Entry& e = it->second;
  if ((flags & kReadAndDelete) && !(e.flags & kOverWritable) && e.owner != who.raw() &&
      e.owner != 0) {
    out->set_code(Code(Err::kDenied));
    return true;
  }
  out->set_code(it->first);
  out->set_data(e.data);
  out->set_aux(e.aux);
  out->set_encoding(e.encoding);
  out->set_owner(e.owner);
  if (flags & kReadAndDelete) {
    cls->second.erase(it);
    if (cls->second.empty()) classes_.erase(cls);
  }
  return true;
}

void Mailbox::Get(ConnId conn, uint64_t rid, Tid who, const ctl::MboxGet& g) {
  ctl::Envelope e = NewEnvelope();
  if (GetInto(who, g.name(), g.index(), g.flags(), e.mutable_mbox_get_reply())) {
    out_.Add(conn, rid, std::move(e));
    return;
  }
  if (g.flags() & kWaitForInfo) {
    waiters_.push_back({conn, rid, who, g.name(), g.index(), g.flags()});
    return;
  }
  e.mutable_mbox_get_reply()->set_code(Code(Err::kNotFound));
  out_.Add(conn, rid, std::move(e));
}

void Mailbox::WakeWaiters(const std::string& name) {
  for (size_t i = 0; i < waiters_.size();) {
    const Waiter w = waiters_[i];
    ctl::Envelope e = NewEnvelope();
    if (w.name == name && GetInto(w.tid, w.name, w.index, w.flags, e.mutable_mbox_get_reply())) {
      waiters_.erase(waiters_.begin() + static_cast<ptrdiff_t>(i));
      out_.Add(w.conn, w.rid, std::move(e));
    } else {
      ++i;
    }
  }
}

void Mailbox::Del(ConnId conn, uint64_t rid, Tid who, const ctl::MboxDel& d) {
  auto cls = classes_.find(d.name());
  if (cls == classes_.end() || !cls->second.contains(d.index())) {
    out_.AddStatus(conn, rid, Code(Err::kNotFound));
    return;
  }
  const Entry& e = cls->second[d.index()];
  if (!(e.flags & kOverWritable) && e.owner != who.raw() && e.owner != 0) {
    out_.AddStatus(conn, rid, Code(Err::kDenied));
    return;
  }
  cls->second.erase(d.index());
  if (cls->second.empty()) classes_.erase(cls);
  out_.AddStatus(conn, rid, 0);
}

void Mailbox::Info(ConnId conn, uint64_t rid, const ctl::MboxInfoRequest& info) {
  const std::string pat = info.pattern().empty() ? "*" : info.pattern();
  ctl::Envelope e = NewEnvelope();
  auto* rep = e.mutable_mbox_info_reply();
  for (const auto& [name, entries] : classes_) {
    if (fnmatch(pat.c_str(), name.c_str(), 0) != 0) continue;
    auto* cl = rep->add_classes();
    cl->set_name(name);
    for (const auto& [idx, ent] : entries) {
      cl->add_indices(idx);
      cl->add_owners(ent.owner);
      cl->add_flags(ent.flags);
    }
  }
  out_.Add(conn, rid, std::move(e));
}

std::vector<int> Mailbox::Owners() const {
  std::vector<int> out;
  for (const auto& [name, entries] : classes_)
    for (const auto& [index, e] : entries)
      if (e.owner != 0) out.push_back(e.owner);
  return out;
}

void Mailbox::DropWaitersOf(ConnId conn) {
  std::erase_if(waiters_, [&](const Waiter& w) { return w.conn == conn; });
}

void Mailbox::ForgetOwner(int tid) {
  for (auto cls = classes_.begin(); cls != classes_.end();) {
    for (auto e = cls->second.begin(); e != cls->second.end();) {
      if (e->second.owner != tid) {
        ++e;
      } else if (e->second.flags & kPersistent) {
        e->second.owner = 0;
        ++e;
      } else {
        e = cls->second.erase(e);
      }
    }
    cls = cls->second.empty() ? classes_.erase(cls) : std::next(cls);
  }
}

}  // namespace mpvm
