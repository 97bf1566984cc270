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
// Parses the text of a key file; `origin` names it in errors.
mpvm::expected<VmKey, std::string> ParseVmKey(const std::string& text, const std::string& origin);
// `--key -`: the key arrives on standard input (how `mpvm add` hands it to a
// daemon it starts over ssh, without writing it to the remote disk).
mpvm::expected<VmKey, std::string> ReadVmKeyFromStdin();
// The key file's text.
std::string VmKeyText(const VmKey& k);

}  // namespace mpvm
