#include "server/cpu_limit.h"

#include <fmt/format.h>
#include <sched.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <set>
#include <sstream>
#include <vector>

namespace mpvm {
namespace {

bool WriteFile(const std::string& path, const std::string& text, std::string* why) {
  std::ofstream f(path);
  f << text;
  f.flush();
  if (f) return true;
  *why = fmt::format("cannot write {}: {}", path, std::strerror(errno));
  return false;
}

std::vector<std::string> Words(const std::string& line, char sep) {
  std::vector<std::string> out;
  std::stringstream s(line);
  for (std::string w; std::getline(s, w, sep);) out.push_back(w);
  return out;
}

// Where a cgroup hierarchy is mounted: v1 with the `cpu` controller, or v2.
std::string MountPoint(bool v2) {
  std::ifstream f("/proc/self/mounts");
  for (std::string line; std::getline(f, line);) {
    auto w = Words(line, ' ');
    if (w.size() < 4) continue;
    if (v2 && w[2] == "cgroup2") return w[1];
    if (!v2 && w[2] == "cgroup") {
      auto opts = Words(w[3], ',');
      if (std::find(opts.begin(), opts.end(), "cpu") != opts.end()) return w[1];
    }
  }
  return "";
}

// This process's group in that hierarchy ("/" or "/a/b").
std::string OwnGroup(bool v2) {
  std::ifstream f("/proc/self/cgroup");
  for (std::string line; std::getline(f, line);) {
    auto first = line.find(':'), second = line.find(':', first + 1);
    if (first == std::string::npos || second == std::string::npos) continue;
    auto controllers = Words(line.substr(first + 1, second - first - 1), ',');
    const bool match =
        v2 ? line.compare(0, first, "0") == 0 && controllers.empty()
           : std::find(controllers.begin(), controllers.end(), "cpu") != controllers.end();
    if (match) return line.substr(second + 1);
  }
  return "";
}

// quota / period (microseconds) giving `speed`/1000 CPUs, with the 10 ms
// period where the quota stays at or above the kernel's 1 ms minimum.
std::pair<int64_t, int64_t> QuotaPeriod(int speed) {
  int64_t period = 10'000;
  while (period < 1'000'000 && int64_t{speed} * period / 1000 < 1000) period *= 10;
  return {std::max<int64_t>(1000, int64_t{speed} * period / 1000), period};
}

class CgroupLimit final : public CpuLimit {
 public:
  CgroupLimit(std::string dir, std::string parent, bool v2, int cpu)
      : dir_(std::move(dir)), parent_(std::move(parent)), v2_(v2), cpu_(cpu) {}
  ~CgroupLimit() override {
    // Whatever is left (a task the daemon could not stop) goes back to the
    // parent group, so the group can go.
    std::ifstream f(dir_ + "/cgroup.procs");
    std::string why;
    for (std::string pid; std::getline(f, pid);)
      WriteFile(parent_ + "/cgroup.procs", pid + "\n", &why);
    rmdir(dir_.c_str());
  }
  void Add(pid_t pid) override {
    if (cpu_ >= 0) PinToCpu(pid, cpu_);
    std::string why;
    WriteFile(dir_ + "/cgroup.procs", fmt::format("{}\n", pid), &why);
  }
  void Remove(pid_t) override {}
  int64_t Tick(int64_t) override { return -1; }
  std::vector<pid_t> Members() const override {
    std::vector<pid_t> out;
    std::ifstream f(dir_ + "/cgroup.procs");
    for (pid_t pid; f >> pid;) out.push_back(pid);
    return out;
  }
  std::string How() const override {
    return fmt::format("cgroup {} {}{}", v2_ ? "v2" : "v1", dir_,
                       cpu_ >= 0 ? fmt::format(" on CPU {}", cpu_) : "");
  }

 private:
  std::string dir_, parent_;
  bool v2_;
  int cpu_;
};

std::unique_ptr<CpuLimit> MakeCgroup(bool v2, const std::string& name, int speed, int cpu,
                                     std::string* why) {
  const std::string mount = MountPoint(v2);
  if (mount.empty()) {
    *why = v2 ? "no cgroup v2 mount" : "no cgroup v1 mount with the cpu controller";
    return nullptr;
  }
  std::string parent = mount + OwnGroup(v2);
  while (parent.size() > 1 && parent.back() == '/') parent.pop_back();
  if (v2) WriteFile(parent + "/cgroup.subtree_control", "+cpu\n", why);  // may be on already
  const std::string dir = fmt::format("{}/mpvm.{}.{}", parent, name, getpid());
  if (mkdir(dir.c_str(), 0755) != 0 && errno != EEXIST) {
    *why = fmt::format("cannot make {}: {}", dir, std::strerror(errno));
    return nullptr;
  }
  auto limit = std::make_unique<CgroupLimit>(dir, parent, v2, cpu);
  const auto [quota, period] = QuotaPeriod(speed);
  const bool ok = v2 ? WriteFile(dir + "/cpu.max", fmt::format("{} {}\n", quota, period), why)
                     : WriteFile(dir + "/cpu.cfs_period_us", fmt::format("{}\n", period), why) &&
                           WriteFile(dir + "/cpu.cfs_quota_us", fmt::format("{}\n", quota), why);
  return ok ? std::move(limit) : nullptr;
}

// SIGSTOP/SIGCONT in fixed periods: the tasks run for the first part of
// each, long enough that together they get the host's share.
class DutyCycle final : public CpuLimit {
 public:
  // On one CPU (`cpu` >= 0), its tasks share that CPU whatever the machine has.
  DutyCycle(double share, int cores, int cpu)
      : share_(share), cores_(cpu >= 0 ? 1 : std::max(1, cores)), cpu_(cpu) {}
  ~DutyCycle() override { Signal(SIGCONT); }
  void Add(pid_t pid) override {
    if (cpu_ >= 0) PinToCpu(pid, cpu_);
    pids_.insert(pid);
  }
  void Remove(pid_t pid) override { pids_.erase(pid); }
  int64_t Tick(int64_t now) override;
  std::string How() const override { return "SIGSTOP/SIGCONT duty cycle"; }

 private:
  static constexpr int64_t kPeriodNs = 50'000'000;
  void Signal(int sig) {
    for (pid_t p : pids_) kill(p, sig);
    stopped_ = sig == SIGSTOP;
  }
  double share_;  // CPUs
  int cores_;
  int cpu_;
  std::set<pid_t> pids_;
  bool stopped_ = false;
  int64_t period_start_ = 0;
};

int64_t DutyCycle::Tick(int64_t now) {
  const double n = static_cast<double>(std::min<size_t>(pids_.size(), size_t(cores_)));
  const double run = n > 0 ? share_ / n : 1;  // of each period
  if (run >= 1) {
    if (stopped_) Signal(SIGCONT);
    return pids_.empty() ? -1 : kPeriodNs;
  }
  if (now >= period_start_ + kPeriodNs) {
    period_start_ = now;
    Signal(SIGCONT);
  }
  const int64_t run_end = period_start_ + static_cast<int64_t>(run * kPeriodNs);
  if (!stopped_ && now >= run_end) Signal(SIGSTOP);
  return (stopped_ ? period_start_ + kPeriodNs : run_end) - now;
}

}  // namespace

std::unique_ptr<CpuLimit> MakeCpuLimit(const std::string& name, int speed, int cores,
                                       const std::string& mode, int cpu, std::string* why) {
  if (speed >= 1000 * std::max(1, cores)) return nullptr;
  if (speed > 1000 || cpu >= cores) cpu = -1;  // more than one CPU, or no such CPU
  if (mode == "duty") {
    *why = "MPVM_CPU_LIMIT=duty";
    return std::make_unique<DutyCycle>(speed / 1000.0, cores, cpu);
  }
  std::string v1_why, v2_why;
  if (auto l = MakeCgroup(false, name, speed, cpu, &v1_why)) return l;
  if (auto l = MakeCgroup(true, name, speed, cpu, &v2_why)) return l;
  *why = v1_why + "; " + v2_why;
  return std::make_unique<DutyCycle>(speed / 1000.0, cores, cpu);
}

bool PinToCpu(pid_t pid, int cpu) {
  cpu_set_t set;
  CPU_ZERO(&set);
  CPU_SET(cpu, &set);
  return sched_setaffinity(pid, sizeof set, &set) == 0;
}

int MachineCpus() { return std::max(1L, sysconf(_SC_NPROCESSORS_ONLN)); }

}  // namespace mpvm
