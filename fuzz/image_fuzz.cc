// Fuzzes the check a restore process makes on an image's header and region
// table before it maps anything. Whatever it accepts must be safe to map:
// ordered, page-aligned regions in user space, clear of the restore area,
// with terminated paths and a data size that matches the table. It also
// fuzzes the check on each page run of a region's contents.
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <vector>

#include "mpvm/ckpt/image.h"

using mpvm::ckpt::Header;
using mpvm::ckpt::Region;

// The page runs of the first region, read from the input as a restore
// reads them: whatever is accepted must lie inside the region, in order.
static void CheckRuns(const uint8_t* data, size_t size, const Region& region) {
  const uint64_t len = region.end > region.start ? region.end - region.start : 0;
  uint64_t prev_end = 0;
  for (size_t at = 0; at + sizeof(mpvm::ckpt::PageRun) <= size; at += sizeof(mpvm::ckpt::PageRun)) {
    mpvm::ckpt::PageRun run;
    std::memcpy(&run, data + at, sizeof run);
    if (mpvm::ckpt::CheckPageRun(run, prev_end, len) != nullptr) return;
    if (run.len == 0) return;
    if (run.offset < prev_end || run.offset + run.len > len || run.offset % 4096 || run.len % 4096)
      std::abort();
    prev_end = run.offset + run.len;
  }
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  constexpr uint64_t kScratch = 0x100000000000ull, kScratchEnd = kScratch + (8u << 20);
  auto h = std::make_unique<Header>();
  // The header is large: the input fills its start (counts, sizes) and the
  // rest is kept valid-looking, so the region table gets exercised too.
  std::memset(h.get(), 0, sizeof(Header));
  h->magic = mpvm::ckpt::kMagic;
  h->version = mpvm::ckpt::kVersion;
  h->header_size = sizeof(Header);
  if (size < 16) return 0;
  std::memcpy(&h->nregions, data, 4);
  std::memcpy(&h->nfiles, data + 4, 4);
  std::memcpy(&h->data_bytes, data + 8, 8);
  if (size > 16 && (data[16] & 1))
    std::memcpy(h.get(), data + 16, std::min(size - 16, sizeof(Header)));
  data += 16;
  size -= 16;
  std::vector<Region> r(std::max<size_t>(1, size / 48));
  for (size_t i = 0; i < r.size() && (i + 1) * 48 <= size; ++i) {
    std::memcpy(&r[i], data + i * 48, 48);  // start, end, offset, hash, prot, kind, bits, pad
  }
  const size_t n = r.size();
  if (h->nregions > n) h->nregions = static_cast<uint32_t>(n);  // what was read
  CheckRuns(data, size, r[0]);
  if (mpvm::ckpt::CheckImageLayout(*h, r.data(), kScratch, kScratchEnd) != nullptr) return 0;
  uint64_t sum = 0;
  for (uint32_t i = 0; i < h->nregions; ++i) {
    if (r[i].start >= r[i].end || r[i].start % 4096 || r[i].end % 4096) std::abort();
    if (i > 0 && r[i].start < r[i - 1].end) std::abort();
    if (r[i].start < kScratchEnd && r[i].end > kScratch) std::abort();
    if (std::memchr(r[i].path, 0, sizeof r[i].path) == nullptr) std::abort();
    if (r[i].kind == mpvm::ckpt::RegionKind::kData) sum += r[i].end - r[i].start;
  }
  if (sum != h->data_bytes) std::abort();
  return 0;
}
