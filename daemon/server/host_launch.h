// host_launch.h — starting the daemons of other hosts: emulated hosts on this
// machine (each in its own network namespace when it can have one, else on
// loopback) and real hosts over ssh (or any command set in MPVM_RSH).
//
// Used by the master's Server only; everything here forks or runs commands.
#pragma once

#include <sys/types.h>

#include <string>
#include <vector>

#include "mpvm/error.h"

namespace mpvm {

// Runs argv (searched in PATH) to completion. On failure returns what it
// printed on stderr (or why it could not run).
mpvm::expected<void, std::string> RunCommand(const std::vector<std::string>& argv);

// The private network of this master's emulated hosts: a bridge named
// mpvmb<pid> with a free 10.213.N.0/24 subnet, the master at .1 and each
// emulated host at its own address, in its own network namespace, joined to
// the bridge by a veth pair. A namespace (and its veth) vanishes with the
// daemon in it; the bridge is removed by the destructor, and a bridge left
// by a master that was killed is removed by the next one that starts.
class EmulatedNet {
 public:
  EmulatedNet() = default;
  ~EmulatedNet();
  EmulatedNet(const EmulatedNet&) = delete;
  EmulatedNet& operator=(const EmulatedNet&) = delete;

  // Whether namespaces can be used at all (root, `ip` present, and not
  // switched off by MPVM_EMULATE=loopback). `why` says why not.
  static bool Available(std::string* why);
  // Creates the bridge on first use; returns the master's address on it.
  mpvm::expected<std::string, std::string> Ensure();
  // The next free host address on the bridge.
  std::string NextAddress();
  // Moves one end of a new veth pair into the network namespace of `pid`
  // (named eth0 there) and attaches the other end to the bridge.
  // With MPVM_EMULATE_LINK=RATE (tc's units: 100mbit, 1gbit), what reaches
  // the host passes at that rate.
  mpvm::expected<void, std::string> Attach(pid_t pid);
  // MPVM_EMULATE_LINK's rate, empty if unset; an error if it is no rate.
  static mpvm::expected<std::string, std::string> LinkRate();

 private:
  std::string bridge_;
  std::string prefix_;  // "10.213.N."
  int next_host_ = 2;
  int next_veth_ = 0;
};

// A daemon being started for another host.
struct Launch {
  pid_t pid = -1;
  int output_fd = -1;  // the child's stdout and stderr (non-blocking): "ok" when it has joined
};

// Forks and execs argv with stdout and stderr on a pipe. With `netns_address`
// (e.g. "10.213.4.2"), the child gets a network namespace of its own on `net`
// with that address before the exec. `stdin_text` is written to the child's
// stdin, which is then closed (how a key reaches a daemon started over ssh).
mpvm::expected<Launch, std::string> LaunchDaemon(const std::vector<std::string>& argv,
                                                 EmulatedNet* net, const std::string& netns_address,
                                                 const std::string& stdin_text);

// The remote shell command: $MPVM_RSH (or PVM's $PVM_RSH) split on spaces, or
// "ssh -o BatchMode=yes" (never prompts, since nobody can answer).
std::vector<std::string> RemoteShell();

// The address of this machine that packets to `host` leave from (what a
// daemon there should connect back to). Empty if `host` cannot be resolved.
std::string LocalAddressToward(const std::string& host);
// The IPv4 address of `host` (a name or an address); empty if unknown.
std::string ResolveIPv4(const std::string& host);

}  // namespace mpvm
