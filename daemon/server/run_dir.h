// run_dir.h — the daemon's runtime directory (MPVM_RUNDIR): created and
// locked at start (one daemon per directory), what a daemon that died left
// in it removed, and at the end everything of this daemon's removed with it.
#pragma once

#include <string>

namespace mpvm {

class RunDirLock {
 public:
  // `keep_key`: the VM key file was given (--key): it is not this VM's to remove.
  RunDirLock(std::string path, bool keep_key) : path_(std::move(path)), keep_key_(keep_key) {}
  RunDirLock(const RunDirLock&) = delete;
  RunDirLock& operator=(const RunDirLock&) = delete;

  // Creates and locks it; false, with why, if another daemon holds it.
  bool Take(std::string* error);
  // Removes this daemon's files and, when nothing else is left, the directory.
  void Release();

 private:
  // Sockets, address and key a daemon that did not stop cleanly left.
  void RemoveLeftovers();

  std::string path_;
  bool keep_key_;
  int lock_fd_ = -1;
};

}  // namespace mpvm
