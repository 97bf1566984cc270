// pages.h — a kData region's contents on the image stream, as page runs
// (image.h). Built like capture.cc: no libc, callable from a signal handler and
// from the restore code.
#pragma once

#include <stddef.h>
#include <stdint.h>

namespace mpvm::ckpt {

struct SealIn;
struct SealOut;
struct PageRun;

// Sends [start, end) of this process as page runs and the closing empty run.
// With `pagemap_fd` (/proc/self/pagemap) >= 0, the pages that are neither
// present nor swapped out are left out; else every page goes. `buf` (of
// `buf_bytes`, at least 8) holds pagemap entries while it works. Adds the
// bytes it sent to *sent. Returns 0 or -errno.
long SendPageRuns(SealOut& out, uint64_t start, uint64_t end, int pagemap_fd, uint64_t* buf,
                  size_t buf_bytes, uint64_t* sent);

// The runs a region's stream held (offsets in the region), as ReadPageRuns
// read them: room for `cap`; n > cap when there were more.
struct RunList {
  PageRun* runs = nullptr;
  uint32_t cap = 0;
  uint32_t n = 0;
};

// Reads a region's page runs from `in` into [start, end) (the region's
// place in the restore's staging area), whose pages not sent must already
// read as zeros, noting them in `list` if given. Returns nullptr, or what
// was wrong with the stream.
const char* ReadPageRuns(SealIn& in, uint64_t start, uint64_t end, RunList* list = nullptr);

// Copies the runs of `list` from [from, from + len) to [to, to + len),
// whose pages read as zeros already, each run populated in one call first;
// CopyDataPages if the list overflowed.
void CopyPageRuns(uint64_t to, uint64_t from, uint64_t len, const RunList& list);

// Copies the pages of [from, from + len) that hold anything but zeros to
// [to, to + len), whose pages read as zeros already: the pages the image
// left out stay untouched (and unallocated) at both ends.
void CopyDataPages(uint64_t to, uint64_t from, uint64_t len);

}  // namespace mpvm::ckpt
