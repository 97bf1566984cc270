#include "core/vm_services.h"

namespace mpvm {

bool VmServices::Handle(ConnId c, Tid who, const ctl::Envelope& env) {
  const uint64_t rid = env.rid();
  switch (env.body_case()) {
    case ctl::Envelope::kMboxPut:
      cx_.mailbox.Put(c, rid, who, env.mbox_put());
      break;
    case ctl::Envelope::kMboxGet:
      cx_.mailbox.Get(c, rid, who, env.mbox_get());
      break;
    case ctl::Envelope::kMboxDel:
      cx_.mailbox.Del(c, rid, who, env.mbox_del());
      break;
    case ctl::Envelope::kMboxInfo:
      cx_.mailbox.Info(c, rid, env.mbox_info());
      break;
    case ctl::Envelope::kGroup:
      cx_.groups.Handle(c, rid, who, env.group());
      cx_.DrainReplies(cx_.groups.Replies());
      return true;
    case ctl::Envelope::kNotify:
      DoNotify(c, who, env);
      return true;
    case ctl::Envelope::kNewContext:
      cx_.ReplyStatus(c, rid, (cx_.host_tid().raw() | next_ctx_++) & 0x7fffffff);
      return true;
    default:
      return false;
  }
  cx_.DrainReplies(cx_.mailbox.Replies());
  return true;
}

void VmServices::DoNotify(ConnId c, Tid who, const ctl::Envelope& env) {
  const auto& n = env.notify();
  if (n.what() == kNotifyHostAdd) {
    cx_.notify.WatchHostAdds(who, n.tag(), n.ctx(), n.count(), n.cancel());
  } else {
    for (int target : n.tids()) {
      if (n.cancel()) {  // delivers the message now, as if the event had happened
        cx_.notify.Cancel(who, n.what(), target, n.tag());
      } else {
        cx_.AddNotify(NotifyReg{who, n.what(), n.tag(), n.ctx(), target, 1});
      }
    }
  }
  cx_.DrainNotices();
  cx_.ReplyStatus(c, env.rid(), 0);
}

}  // namespace mpvm
