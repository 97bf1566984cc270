// pages.h — a kData region's contents on the image stream, as page runs
// (image.h). Built like ckpt.cc: no libc, callable from a signal handler and
// from the restore code.
#pragma once

#include <stddef.h>
#include <stdint.h>

namespace mpvm::ckpt {

// Sends [start, end) of this process as page runs and the closing empty run.
// With `pagemap_fd` (/proc/self/pagemap) >= 0, the pages that are neither
// present nor swapped out are left out; else every page goes. `buf` (of
// `buf_bytes`, at least 8) holds pagemap entries while it works. Adds the
// bytes it sent to *sent. Returns 0 or -errno.
long SendPageRuns(int out_fd, uint64_t start, uint64_t end, int pagemap_fd, uint64_t* buf,
                  size_t buf_bytes, uint64_t* sent);

// Reads a region's page runs from `fd` into [start, end), whose pages not
// sent must already read as zeros. Returns nullptr, or what was wrong with
// the stream.
const char* ReadPageRuns(int fd, uint64_t start, uint64_t end);

}  // namespace mpvm::ckpt
