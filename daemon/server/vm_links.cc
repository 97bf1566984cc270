#include "server/vm_links.h"

#include <spdlog/spdlog.h>

#include <cstdlib>
#include <fstream>

#include "mpvm/clock.h"
#include "mpvm/settings.h"
#include "mpvm/task_link.h"
#include "server/host_launch.h"

namespace mpvm {
namespace {

std::string LinkKeyBytes(const VmKey& k) {
  const LinkKey lk = DeriveLinkKey(k.secret_z85);
  return std::string(reinterpret_cast<const char*>(lk.data()), lk.size());
}

bool LinkEncryptWanted() { return CurrentSettings().link_encrypt; }

}  // namespace

void VmLinks::MakeLinks() {
  links_ = std::make_unique<PeerLinks>(
      [this](PeerId p, Frame&& f) { core_.OnPeerFrame(p, std::move(f)); },
      [](const std::string& line) { spdlog::warn("{}", line); },
      [this](PeerId p) { core_.OnPeerGone(p); });
}

bool VmLinks::Link(std::string* error) {
  if (opts_.join.empty() && opts_.listen.empty()) return true;
  MakeLinks();
  if (opts_.join.empty()) {
    auto r = EnsureListening(opts_.listen);
    if (!r) *error = r.error();
    return r.has_value();
  }
  if (opts_.key.empty()) {
    *error = "--join needs --key FILE: the VM key of the master (its runtime directory's vm.key)";
    return false;
  }
  auto key = opts_.key == "-" ? ReadVmKeyFromStdin() : LoadVmKey(opts_.key);
  if (!key) {
    *error = key.error();
    return false;
  }
  // Direct task links: this host's address as the master sees it, and
  // the master's (members reach the master's tasks there).
  const std::string master_host = opts_.join.substr(0, opts_.join.rfind(':'));
  core_.SetLinkKey(LinkKeyBytes(*key), LinkEncryptWanted());
  core_.SetLinkAddresses(LocalAddressToward(master_host), ResolveIPv4(master_host));
  if (auto r = links_->Connect(opts_.join, *key); !r) {
    *error = r.error();
    return false;
  }
  core_.StartJoin(MonotonicNs());
  return true;
}

mpvm::expected<std::string, std::string> VmLinks::EnsureListening(const std::string& addr) {
  if (auto it = endpoints_.find(addr); it != endpoints_.end()) return it->second;
  if (!links_) MakeLinks();
  if (key_path_.empty()) {
    key_path_ = opts_.key.empty() ? opts_.rundir + "/vm.key" : opts_.key;
    auto key = LoadOrCreateVmKey(key_path_);
    if (!key) {
      key_path_.clear();
      return mpvm::unexpected(key.error());
    }
    vm_key_ = *key;
    core_.SetLinkKey(LinkKeyBytes(vm_key_), LinkEncryptWanted());
  }
  auto bound = links_->Listen(addr, vm_key_);
  if (!bound) return mpvm::unexpected(bound.error());
  endpoints_[addr] = *bound;
  if (master_addr_.empty()) {
    master_addr_ = *bound;
    std::ofstream(opts_.rundir + "/master.addr") << master_addr_ << "\n";
  }
  spdlog::info("master of a multi-host VM: daemons join at {} with key {}", *bound, key_path_);
  return *bound;
}

}  // namespace mpvm
