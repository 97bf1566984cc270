// vm_key.h — the virtual machine's key: a CURVE key pair every daemon of the
// VM holds. Links between daemons are encrypted with it, and a daemon that
// cannot prove it holds the secret half is refused. Stored in a file of mode
// 0600: "public <z85>\nsecret <z85>\n".
#pragma once

#include <string>

#include "mpvm/error.h"

namespace mpvm {

struct VmKey {
  std::string public_z85;  // 40 characters
  std::string secret_z85;
};

// Reads `path`, or creates it with a new key pair if it does not exist.
mpvm::expected<VmKey, std::string> LoadOrCreateVmKey(const std::string& path);
// Reads an existing key file; refuses one that others can read.
mpvm::expected<VmKey, std::string> LoadVmKey(const std::string& path);

}  // namespace mpvm
