#include "server/host_starter.h"

#include <dirent.h>
#include <fmt/format.h>
#include <spdlog/spdlog.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>

#include "emulated_speed.h"
#include "mpvm/paths.h"
#include "mpvm/settings.h"
#include "server/cpu_limit.h"

namespace mpvm {
namespace {

// How a process ended, from waitpid's status: "exited with status N" or
// "was killed by signal N (Name)".
std::string ExitText(int status) {
  if (WIFSIGNALED(status))
    return fmt::format("was killed by signal {} ({})", WTERMSIG(status),
                       strsignal(WTERMSIG(status)));
  return fmt::format("exited with status {}", WIFEXITED(status) ? WEXITSTATUS(status) : -1);
}

std::string ShellQuote(const std::string& s) {
  std::string q = "'";
  for (char c : s) q += c == '\'' ? std::string("'\\''") : std::string(1, c);
  return q + "'";
}

}  // namespace

mpvm::expected<void, HostStartError> HostStarter::Start(const HostSpec& spec) {
  if (!opts_.join.empty())
    return mpvm::unexpected(HostStartError{Err::kNotImpl, "only the master starts hosts"});
  const std::string daemon = spec.daemon.empty() ? SelfExeDir() + "/mpvmd" : spec.daemon;
  int cpu = -1;
  std::vector<std::string> common = {"--hostname", spec.name};
  // Without an sp=, a host on another machine measures its own speed; one on
  // this machine shares ours.
  if (spec.speed_given || spec.local)
    common.insert(common.end(),
                  {"--speed", std::to_string(spec.speed_given ? spec.speed : own_speed_)});
  if (spec.local && opts_.virtual_work) {
    common.push_back("--virtual-work");
  } else if (spec.local && spec.speed_given) {
    common.push_back("--emulate-speed");
    NoteEmulatedSpeed(spec.speed);
    cpu = PickCpu(spec.speed);
    if (cpu >= 0) common.insert(common.end(), {"--emulate-cpu", std::to_string(cpu)});
  }
  if (!spec.ep.empty()) common.insert(common.end(), {"--ep", spec.ep});
  if (!spec.wd.empty()) common.insert(common.end(), {"--wd", spec.wd});
  // Started hosts keep the master's heartbeat and failure timing.
  common.insert(common.end(), {"--dead-after", std::to_string(opts_.dead_after_s), "--heartbeat",
                               std::to_string(opts_.heartbeat_s), "--ready-fd", "1"});
  started_emulated_ = started_emulated_ || spec.local;
  auto cmd = spec.local ? EmulatedHostCommand(spec, daemon, common)
                        : RemoteHostCommand(spec, daemon, common);
  if (!cmd) return mpvm::unexpected(cmd.error());
  auto launched = LaunchDaemon(cmd->argv, net_.get(), cmd->netns_address, cmd->stdin_text);
  if (!launched && !cmd->netns_address.empty()) {
    spdlog::warn("emulated host {}: {}; falling back to loopback", spec.name, launched.error());
    auto ep = links_.EnsureListening("127.0.0.1:0");
    if (ep) {
      cmd->argv[2] = *ep;
      launched = LaunchDaemon(cmd->argv, nullptr, "", "");
    }
  }
  if (!launched) return mpvm::unexpected(HostStartError{Err::kCantStart, launched.error()});
  host_pids_[launched->pid] =
      LocalHost{spec.name, launched->output_fd, spec.local, cpu, cpu >= 0 ? spec.speed : 0};
  spdlog::info("starting host {} (pid {}{}{})", spec.name, launched->pid,
               spec.local ? ", emulated" : ", over " + cmd->argv[0],
               cmd->netns_address.empty() ? "" : " at " + cmd->netns_address);
  return {};
}

void HostStarter::TakeCpu(int cpu, int speed) {
  if (cpu >= 0 && cpu < static_cast<int>(cpu_speed_.size()) && speed <= 1000)
    cpu_speed_[static_cast<size_t>(cpu)] += speed;
}

int HostStarter::PickCpu(int speed) {
  if (speed > 1000) return -1;
  const auto least = std::min_element(cpu_speed_.begin(), cpu_speed_.end());
  *least += speed;
  return static_cast<int>(least - cpu_speed_.begin());
}

void HostStarter::NoteEmulatedSpeed(int speed) {
  emulated_speed_ += speed;
  std::string warning;
  if (!speed_warned_ && !balancer::EmulatedSpeedsFit(emulated_speed_, MachineCpus(), &warning)) {
    spdlog::warn("{}", warning);
    speed_warned_ = true;
  }
}

mpvm::expected<HostStarter::HostCommand, HostStartError> HostStarter::EmulatedHostCommand(
    const HostSpec& spec, const std::string& daemon, const std::vector<std::string>& common) {
  HostCommand cmd;
  std::string master, why;
  if (EmulatedNet::Available(&why)) {
    if (!net_) net_ = std::make_unique<EmulatedNet>();
    auto gw = net_->Ensure();
    auto ep = gw ? links_.EnsureListening(*gw + ":0") : mpvm::unexpected(gw.error());
    if (ep) {
      master = *ep;
      cmd.netns_address = net_->NextAddress();
    } else {
      why = ep.error();
    }
  }
  if (cmd.netns_address.empty()) {
    if (!loopback_noted_) spdlog::info("emulated hosts run on loopback: {}", why);
    loopback_noted_ = true;
    auto ep = links_.EnsureListening("127.0.0.1:0");
    if (!ep)
      return mpvm::unexpected(
          HostStartError{Err::kCantStart, "cannot accept emulated hosts: " + ep.error()});
    master = *ep;
  }
  cmd.argv = {daemon,
              "--join",
              master,
              "--key",
              links_.key_path(),
              "--rundir",
              opts_.rundir + ".h-" + spec.name,
              "--hash-cache",  // the same files: hashed once for all
              opts_.rundir + "/hash-cache",
              "--emulated"};
  cmd.argv.insert(cmd.argv.end(), common.begin(), common.end());
  return cmd;
}

mpvm::expected<HostStarter::HostCommand, HostStartError> HostStarter::RemoteHostCommand(
    const HostSpec& spec, const std::string& daemon, const std::vector<std::string>& common) {
  // A real host: its daemon is started over the remote shell and reads the
  // VM key from its standard input, so the key never lands on its disk.
  const std::string target = spec.ip.empty() ? spec.name : spec.ip;
  const std::string me = LocalAddressToward(target);
  if (me.empty())
    return mpvm::unexpected(HostStartError{
        Err::kNoHost, fmt::format("cannot resolve {} (give its address with ip=)", target)});
  // A master started with --listen on a specific address is reached there;
  // otherwise it listens on every interface and names the one facing the host.
  auto ep = links_.EnsureListening(opts_.listen.empty() ? "0.0.0.0:0" : opts_.listen);
  if (!ep)
    return mpvm::unexpected(HostStartError{Err::kCantStart, "cannot accept hosts: " + ep.error()});
  std::string master = *ep;
  if (master.rfind("0.0.0.0:", 0) == 0) master = me + master.substr(7);
  std::string remote = ShellQuote(daemon) + " --join " + ShellQuote(master) + " --key -";
  for (const auto& a : common) remote += " " + ShellQuote(a);
  HostCommand cmd;
  cmd.argv = RemoteShell();
  if (!spec.login.empty()) cmd.argv.insert(cmd.argv.end(), {"-l", spec.login});
  cmd.argv.insert(cmd.argv.end(), {target, remote});
  cmd.stdin_text = VmKeyText(links_.vm_key()) + "\n";
  return cmd;
}

std::string HostStarter::LastWords(int fd) {
  std::string said;
  char buf[4096];
  ssize_t n;
  while ((n = read(fd, buf, sizeof buf)) > 0) {
    said.append(buf, static_cast<size_t>(n));
    if (said.size() > 16384) said.erase(0, said.size() - 4096);
  }
  while (!said.empty() && (said.back() == '\n' || said.back() == '\r')) said.pop_back();
  if (auto nl = said.rfind('\n'); nl != std::string::npos) said = said.substr(nl + 1);
  if (said.rfind("error: ", 0) == 0) said = said.substr(7);
  return said == "ok" ? "" : said;
}

void HostStarter::RemoveHostDir(const std::string& name) const {
  const std::string dir = opts_.rundir + ".h-" + name;
  DIR* d = opendir(dir.c_str());
  if (d == nullptr) return;
  while (dirent* e = readdir(d)) {
    std::string file = e->d_name;
    if (file == "mpvmd.log" && CurrentSettings().keep_log)
      rename((dir + "/" + file).c_str(),  // kept beside the master's log
             fmt::format("{}/mpvmd.{}.log", opts_.rundir, name).c_str());
    else if (file.ends_with(".sock") || file == "mpvmd.lock" || file == "mpvmd.log" ||
             file == "hash-cache" || file == "vcpu")
      unlink((dir + "/" + file).c_str());
  }
  closedir(d);
  rmdir(dir.c_str());
}

std::optional<std::pair<std::string, std::string>> HostStarter::Reaped(pid_t pid, int status) {
  auto h = host_pids_.find(pid);
  if (h == host_pids_.end()) return std::nullopt;
  const LocalHost host = h->second;
  host_pids_.erase(h);
  const std::string said = LastWords(host.output_fd);
  close(host.output_fd);
  if (host.local) RemoveHostDir(host.name);
  if (host.cpu >= 0) cpu_speed_[static_cast<size_t>(host.cpu)] -= host.speed;
  return std::pair(host.name,
                   said.empty() ? "its daemon " + ExitText(status) : "its daemon exited: " + said);
}

std::vector<pid_t> HostStarter::Pids() const {
  std::vector<pid_t> out;
  for (const auto& [pid, h] : host_pids_) out.push_back(pid);
  return out;
}

void HostStarter::Close() {
  for (const auto& [pid, h] : host_pids_) close(h.output_fd);
  net_.reset();  // the emulated hosts' bridge
}

}  // namespace mpvm
