// Fuzzes the check a daemon makes on a moving task's handover (migrate.sock):
// any head, link descriptions and descriptor count. Whatever it accepts must
// be safe to act on: the counts agree, the daemon's link comes first, and
// no pending length exceeds the limit the daemon allocates for.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <vector>

#include "mpvm/migrate_wire.h"

using mpvm::migrate::HandoverHead;
using mpvm::migrate::LinkDesc;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < sizeof(HandoverHead) + 1) return 0;
  HandoverHead h;
  std::memcpy(&h, data, sizeof h);
  const size_t nfds = data[sizeof h];
  data += sizeof h + 1;
  size -= sizeof h + 1;
  std::vector<LinkDesc> d(size / sizeof(LinkDesc));
  if (!d.empty()) std::memcpy(d.data(), data, d.size() * sizeof(LinkDesc));
  if (mpvm::migrate::CheckHandoverHead(h) == nullptr && h.nlinks != mpvm::migrate::kRefusal &&
      h.nlinks > mpvm::migrate::kMaxLinks)
    std::abort();
  if (mpvm::migrate::CheckHandover(h, d.data(), d.size(), nfds) != nullptr) return 0;
  if (h.nlinks == mpvm::migrate::kRefusal) return 0;
  if (d.size() != h.nlinks || nfds != h.nlinks) std::abort();
  for (size_t i = 0; i < d.size(); ++i) {
    if ((i == 0) != (d[i].kind == 0)) std::abort();
    if (d[i].in_len > mpvm::migrate::kMaxPendingBytes ||
        d[i].out_len > mpvm::migrate::kMaxPendingBytes)
      std::abort();
  }
  return 0;
}
