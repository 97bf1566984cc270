// stdin_pump.h — prun's terminal, passed on to rank 0. A task runs in a
// session of its own, so it cannot read prun's terminal itself (it would be
// stopped by SIGTTIN, or read another job's input). prun reads the terminal
// and writes what comes into a pipe that rank 0 reads as its stdin, as
// mpirun does: a line typed reaches rank 0, and ^D is its end of file.
#pragma once

#include <string>

namespace mpvm::prun {

class StdinPump {
 public:
  // Starts copying fd 0 into a new pipe, on a thread of prun's (never a
  // task's). Returns the path rank 0 opens ("/proc/PID/fd/N"), or "" with
  // *why set.
  std::string Start(std::string* why);
  // The daemon has opened the pipe: prun lets go of its reading end, so a
  // rank 0 that ends stops the pump (EPIPE), not a full pipe.
  void Opened();

 private:
  int read_fd_ = -1;
};

}  // namespace mpvm::prun
