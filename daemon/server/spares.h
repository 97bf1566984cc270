// spares.h — processes whose tasks moved away, kept to restore arrivals.
//
// After a commit the source's process has nothing left to do; started
// afresh for the next task of the same program that arrives here, a
// restore process costs an exec, the dynamic linking of libpvm3 and its
// libraries and their page faults: most of the CPU a small task's move
// takes. So the daemon keeps a few of these processes (ckpt.h,
// ServeAsSpare), each waiting on its connection to migrate.sock, and a
// restore here takes one of the same executable if it has one.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <optional>
#include <vector>

namespace mpvm {

class SparePool {
 public:
  struct Spare {
    pid_t pid = 0;
    int fd = -1;                // its connection to migrate.sock: the order goes there
    uint64_t dev = 0, ino = 0;  // its executable
    int64_t since_ns = 0;
  };
  // Keeps at most `per_program` spares of each executable, each for at most
  // `keep_ns`.
  SparePool(int per_program, int64_t keep_ns) : per_program_(per_program), keep_ns_(keep_ns) {}
  ~SparePool() { Clear(); }
  SparePool(const SparePool&) = delete;
  SparePool& operator=(const SparePool&) = delete;

  // Would it keep process `pid` (by its executable)? Then Keep it.
  bool Wants(pid_t pid) const;
  void Keep(pid_t pid, int fd, int64_t now_ns);
  // A spare of the executable at `path`, taken out of the pool.
  std::optional<Spare> Take(const char* path);
  // Ends the spares kept longer than keep_ns; the ns until the next is due
  // (-1: none).
  int64_t Expire(int64_t now_ns);
  // Process `pid` ended: true if it was a spare.
  bool Reaped(pid_t pid);
  // Ends every spare.
  void Clear();
  size_t size() const { return spares_.size(); }

 private:
  static void End(const Spare& s);
  size_t CountOf(uint64_t dev, uint64_t ino) const;

  int per_program_;
  int64_t keep_ns_;
  std::vector<Spare> spares_;  // oldest first
};

}  // namespace mpvm
