#include "server/vm_key.h"

#include <fcntl.h>
#include <fmt/format.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zmq.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <iostream>
#include <sstream>

namespace mpvm {

mpvm::expected<VmKey, std::string> LoadVmKey(const std::string& path) {
  struct stat st;
  if (stat(path.c_str(), &st) != 0)
    return mpvm::unexpected(fmt::format("cannot read VM key {}: {}", path, std::strerror(errno)));
  if ((st.st_mode & 077) != 0)
    return mpvm::unexpected(fmt::format(
        "VM key {} can be read by other users; run `chmod 600 {}` (it admits daemons to the VM)",
        path, path));
  std::ifstream in(path);
  std::stringstream text;
  text << in.rdbuf();
  return ParseVmKey(text.str(), path);
}

mpvm::expected<VmKey, std::string> ParseVmKey(const std::string& text, const std::string& origin) {
  std::istringstream in(text);
  VmKey k;
  std::string word;
  while (in >> word) {
    if (word == "public") in >> k.public_z85;
    if (word == "secret") in >> k.secret_z85;
  }
  if (k.public_z85.size() != 40 || k.secret_z85.size() != 40)
    return mpvm::unexpected(
        fmt::format("{} is not an mpvm VM key (expected 'public <40 chars>' and 'secret <40 "
                    "chars>' lines)",
                    origin));
  return k;
}

mpvm::expected<VmKey, std::string> ReadVmKeyFromStdin() {
  // The key is two short lines; stop at the first empty line or end of input
  // so a launcher may keep stdin open.
  std::string text, line;
  while (std::getline(std::cin, line) && !line.empty()) {
    text += line + "\n";
    if (text.size() > 4096) break;
  }
  return ParseVmKey(text, "the key given on standard input");
}

std::string VmKeyText(const VmKey& k) {
  return fmt::format("public {}\nsecret {}\n", k.public_z85, k.secret_z85);
}

mpvm::expected<VmKey, std::string> LoadOrCreateVmKey(const std::string& path) {
  if (access(path.c_str(), F_OK) == 0) return LoadVmKey(path);
  char pub[41], sec[41];
  if (zmq_curve_keypair(pub, sec) != 0)
    return mpvm::unexpected(std::string("this libzmq cannot make CURVE keys (built without it?)"));
  int fd = open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
  if (fd < 0)
    return mpvm::unexpected(fmt::format("cannot create VM key {}: {}", path, std::strerror(errno)));
  std::string text = VmKeyText(VmKey{pub, sec});
  bool ok = write(fd, text.data(), text.size()) == static_cast<ssize_t>(text.size());
  close(fd);
  if (!ok) return mpvm::unexpected(fmt::format("cannot write VM key {}", path));
  return VmKey{pub, sec};
}

}  // namespace mpvm
