// pages.cc — see pages.h. No libc: raw.h has the system calls.
#include "mpvm/ckpt/pages.h"

#include <sys/mman.h>
#include <sys/syscall.h>

#include "mpvm/ckpt/image.h"
#include "mpvm/ckpt/raw.h"
#include "mpvm/ckpt/seal.h"

namespace mpvm::ckpt {
namespace {

constexpr uint64_t kPage = 4096;
constexpr uint64_t kPresent = 1ull << 63, kSwapped = 1ull << 62;

long SendRun(SealOut& out, uint64_t region_start, uint64_t from, uint64_t to, uint64_t* sent) {
  PageRun run{from - region_start, to - from};
  long e = SealPut(out, &run, sizeof run);
  if (e == 0 && run.len > 0) e = SealPut(out, reinterpret_cast<void*>(from), run.len);
  *sent += sizeof run + run.len;
  return e;
}

// The runs of pages with data, from the pagemap: `n` entries at a time.
long SendTouched(SealOut& out, uint64_t start, uint64_t end, int pagemap_fd, uint64_t* buf,
                 size_t n, uint64_t* sent) {
  uint64_t run_from = 0;
  bool in_run = false;
  for (uint64_t at = start; at < end;) {
    const size_t want = static_cast<size_t>((end - at) / kPage) < n ? (end - at) / kPage : n;
    long got = raw::Sys(SYS_pread64, pagemap_fd, reinterpret_cast<long>(buf),
                        static_cast<long>(want * 8), static_cast<long>(at / kPage * 8));
    if (got <= 0 || got % 8 != 0) return got < 0 ? got : -5 /* EIO */;
    for (long i = 0; i < got / 8; ++i, at += kPage) {
      const bool data = (buf[i] & (kPresent | kSwapped)) != 0;
      if (data && !in_run) run_from = at;
      if (!data && in_run) {
        if (long e = SendRun(out, start, run_from, at, sent); e != 0) return e;
      }
      in_run = data;
    }
  }
  return in_run ? SendRun(out, start, run_from, end, sent) : 0;
}

}  // namespace

long SendPageRuns(SealOut& out, uint64_t start, uint64_t end, int pagemap_fd, uint64_t* buf,
                  size_t buf_bytes, uint64_t* sent) {
  long e = pagemap_fd >= 0 ? SendTouched(out, start, end, pagemap_fd, buf, buf_bytes / 8, sent)
                           : SendRun(out, start, start, end, sent);
  return e == 0 ? SendRun(out, start, end, end, sent) : e;
}

const char* ReadPageRuns(SealIn& in, uint64_t start, uint64_t end, RunList* list) {
  uint64_t prev_end = 0;
  for (;;) {
    PageRun run{};
    if (const char* bad = SealGet(in, &run, sizeof run)) return bad;
    if (const char* bad = CheckPageRun(run, prev_end, end - start)) return bad;
    if (run.len == 0) return nullptr;
    const uint64_t at = start + run.offset;
    // Every run is populated in one call before it is read into, not a
    // fault per page as the read fills it (raw.h). Where the kernel lacks
    // the advice, the read faults the pages in as before.
    raw::Sys(SYS_madvise, at, run.len, raw::kMadvPopulateWrite);
    if (const char* bad = SealGet(in, reinterpret_cast<void*>(at), run.len)) return bad;
    prev_end = run.offset + run.len;
    if (list != nullptr && list->n++ < list->cap) list->runs[list->n - 1] = run;
  }
}

namespace {

bool HasData(uint64_t page) {
  const auto* words = reinterpret_cast<const volatile uint64_t*>(page);
  for (size_t i = 0; i < kPage / 8; ++i)
    if (words[i] != 0) return true;
  return false;
}

// Copies one run of pages, populated in one call first: a fault per page
// costs 10-20 us on a virtual machine, the populate under 1 us a page.
void CopyRun(uint64_t to, uint64_t from, uint64_t len) {
  raw::Sys(SYS_madvise, to, len, raw::kMadvPopulateWrite);
  raw::CopyBulk(reinterpret_cast<void*>(to), reinterpret_cast<void*>(from), len);
}

}  // namespace

void CopyPageRuns(uint64_t to, uint64_t from, uint64_t len, const RunList& list) {
  if (list.n > list.cap) return CopyDataPages(to, from, len);
  for (uint32_t i = 0; i < list.n; ++i)
    CopyRun(to + list.runs[i].offset, from + list.runs[i].offset, list.runs[i].len);
}

void CopyDataPages(uint64_t to, uint64_t from, uint64_t len) {
  uint64_t run = 0;
  bool in_run = false;
  for (uint64_t off = 0; off <= len; off += kPage) {
    const bool data = off < len && HasData(from + off);
    if (data && !in_run) run = off;
    if (!data && in_run) CopyRun(to + run, from + run, off - run);
    in_run = data;
  }
}

}  // namespace mpvm::ckpt
