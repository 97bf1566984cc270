// vm_links.h — this daemon's links to the other daemons of a multi-host VM:
// a master listens (on one more address for each network its hosts join
// from) with the VM key it loads or creates; a member joins its master with
// the key it was given. Task links across hosts get their key from here.
#pragma once

#include <map>
#include <memory>
#include <string>

#include "daemon_core.h"
#include "server/options.h"
#include "server/peer_links.h"
#include "server/vm_key.h"

namespace mpvm {

class VmLinks {
 public:
  VmLinks(const ServerOptions& opts, DaemonCore& core) : opts_(opts), core_(core) {}

  // At start: listen (--listen) or join (--join); nothing for a one-host VM.
  bool Link(std::string* error);
  // Master: listens on `addr` ("IP:PORT", port 0: any) unless already
  // listening there; returns the bound address.
  mpvm::expected<std::string, std::string> EnsureListening(const std::string& addr);

  PeerLinks* links() { return links_.get(); }
  const std::string& key_path() const { return key_path_; }
  const VmKey& vm_key() const { return vm_key_; }
  void Close() { links_.reset(); }

 private:
  void MakeLinks();

  const ServerOptions& opts_;
  DaemonCore& core_;
  std::unique_ptr<PeerLinks> links_;
  std::string master_addr_;                       // the first address listened on (master.addr)
  std::map<std::string, std::string> endpoints_;  // asked -> bound
  std::string key_path_;
  VmKey vm_key_;
};

}  // namespace mpvm
