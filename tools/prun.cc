// prun — launch N instances of a PVM program, MPI style.
//
//   prun -n 32 ./app args...
//
// Uses the running virtual machine, or starts an embedded one (in a private
// runtime directory) and halts it at the end; `--hostfile FILE` starts a
// private one of those hosts for the job. Tasks get prun's environment, their
// stdout goes to prun's stdout and their stderr to prun's stderr (untagged
// unless --tag-output says otherwise). The exit status is non-zero if any
// task failed, and says which. Ctrl-C or SIGTERM stops every task and the
// embedded VM.
#include <fmt/format.h>
#include <signal.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <map>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "emulated_speed.h"
#include "mpvm/control.h"
#include "mpvm/daemon_starter.h"
#include "mpvm/paths.h"
#include "mpvm/task_runtime.h"
#include "prun_args.h"
#include "prun_trace.h"
#include "stdin_pump.h"

extern char** environ;

namespace {

using mpvm::prun::PrunOptions;
using nlohmann::json;

volatile sig_atomic_t g_signal = 0;
void OnSignal(int sig) { g_signal = sig; }

// Blocks SIGINT/SIGTERM/SIGHUP except while waiting, so none is lost between
// checks; returns the mask to wait with.
sigset_t CatchStopSignals() {
  sigset_t block, wait_mask;
  sigemptyset(&block);
  for (int s : {SIGINT, SIGTERM, SIGHUP}) sigaddset(&block, s);
  sigprocmask(SIG_BLOCK, &block, &wait_mask);
  struct sigaction sa {};
  sa.sa_handler = OnSignal;
  for (int s : {SIGINT, SIGTERM, SIGHUP}) {
    sigdelset(&wait_mask, s);
    sigaction(s, &sa, nullptr);
  }
  signal(SIGPIPE, SIG_IGN);
  return wait_mask;
}

// The virtual machine the job runs on: the running one, or an embedded one
// started (and halted) by prun.
struct Vm {
  std::string rundir;
  pid_t embedded_pid = 0;
};

// --hosts as a PVM host file of emulated hosts (local=1, enforced sp=).
// The first is the embedded daemon's own host (enforced by --emulate-speed).
// Returns the file's path, or "".
std::string WriteHostList(const std::vector<mpvm::prun::EmulatedHost>& hosts, bool real_cpu) {
  char path[] = "/tmp/prun-hosts.XXXXXX";
  const int fd = mkstemp(path);
  if (fd < 0) return "";
  std::string text = "# prun --hosts\n";
  int total = 0;
  for (const auto& h : hosts) {
    text += fmt::format("{}{} sp={}\n", h.name, &h == &hosts[0] ? "" : " local=1", h.speed);
    total += h.speed;
  }
  const bool ok = write(fd, text.data(), text.size()) == static_cast<ssize_t>(text.size());
  close(fd);
  std::string warning;
  if (real_cpu &&
      !mpvm::balancer::EmulatedSpeedsFit(
          total, static_cast<int>(std::max(1L, sysconf(_SC_NPROCESSORS_ONLN))), &warning))
    std::fprintf(stderr, "prun: warning: %s\n", warning.c_str());
  return ok ? std::string(path) : "";
}

// --balance on a VM prun did not start: switches its balancer (for every
// job on it, as `mpvm balance` does) and says so.
bool SwitchBalancer(mpvm::TaskRuntime& rt, bool on) {
  mpvm::ctl::Envelope req = mpvm::NewEnvelope();
  req.mutable_balance()->set_set(on ? mpvm::ctl::BalanceRequest::ON
                                    : mpvm::ctl::BalanceRequest::OFF);
  auto rep = rt.ToolRequest(std::move(req));
  if (!rep || !rep->has_status()) {
    std::fprintf(stderr, "prun: --balance: the daemon did not answer\n");
    return false;
  }
  std::fprintf(stderr, "prun: %s (for the whole virtual machine)\n",
               rep->status().detail().c_str());
  return true;
}

std::optional<Vm> FindOrStartVm(const PrunOptions& o) {
  Vm vm{mpvm::RunDir()};
  if (o.hostfile.empty() && o.hosts.empty() && mpvm::DaemonRunning(vm.rundir)) {
    setenv("MPVM_RUNDIR", vm.rundir.c_str(), 1);
    return vm;
  }
  vm.rundir = fmt::format("{}.p{}", vm.rundir, getpid());
  setenv("MPVM_RUNDIR", vm.rundir.c_str(), 1);
  std::vector<std::string> args;
  const bool real_cpu = o.cpu == "real";
  const std::string list = o.hosts.empty() ? "" : WriteHostList(o.hosts, real_cpu);
  if (!o.hosts.empty() && list.empty()) {
    std::fprintf(stderr, "prun: cannot write the host list to /tmp: %s\n", std::strerror(errno));
    return std::nullopt;
  }
  if (!o.hostfile.empty()) args = {"--hostfile", o.hostfile};
  if (!list.empty())
    args = {"--hostfile", list, "--hostname", o.hosts[0].name,
            real_cpu ? "--emulate-speed" : "--virtual-work"};
  if (!o.balance.empty()) args.insert(args.end(), {"--balance", o.balance});
  auto pid = mpvm::StartDaemon(vm.rundir, args, /*embedded=*/true);
  if (!list.empty()) unlink(list.c_str());
  if (!pid) {
    std::fprintf(stderr, "prun: cannot start an embedded virtual machine%s\n",
                 o.hostfile.empty() ? (list.empty() ? "" : " of emulated hosts")
                                    : (" with the hosts of " + o.hostfile).c_str());
    return std::nullopt;
  }
  vm.embedded_pid = *pid;
  if (o.verbose) std::fprintf(stderr, "prun: started an embedded VM in %s\n", vm.rundir.c_str());
  return vm;
}

// -x VAR (the caller's value) or -x VAR=VALUE, as NAME=value pairs.
std::optional<std::vector<std::string>> Exports(const PrunOptions& o) {
  std::vector<std::string> out;
  for (const auto& x : o.exports) {
    if (x.find('=') != std::string::npos) {
      out.push_back(x);
    } else if (const char* v = std::getenv(x.c_str()); v != nullptr) {
      out.push_back(x + "=" + v);
    } else {
      std::fprintf(stderr, "prun: -x %s: %s is not set here (give -x %s=VALUE)\n", x.c_str(),
                   x.c_str(), x.c_str());
      return std::nullopt;
    }
  }
  return out;
}

// What rank 0 reads as its stdin: prun's own (a file or a pipe), a pipe
// that prun fills from its terminal (stdin_pump.h), or "" (/dev/null, as
// the other ranks) when prun's stdin is closed or /dev/null itself.
std::string Rank0Stdin(mpvm::prun::StdinPump& pump) {
  struct stat in, null;
  if (fstat(0, &in) != 0) return "";
  if (S_ISCHR(in.st_mode) && stat("/dev/null", &null) == 0 && in.st_rdev == null.st_rdev) return "";
  if (!isatty(0)) return fmt::format("/proc/{}/fd/0", getpid());
  std::string why;
  std::string path = pump.Start(&why);
  if (path.empty()) std::fprintf(stderr, "prun: %s; rank 0 reads nothing\n", why.c_str());
  return path;
}

mpvm::SpawnRequestOptions SpawnOptions(const PrunOptions& o, const mpvm::TaskRuntime& rt,
                                       std::vector<std::string> exports,
                                       mpvm::prun::StdinPump& pump) {
  mpvm::SpawnRequestOptions s;
  s.file = o.command[0];
  s.args.assign(o.command.begin() + 1, o.command.end());
  s.ntask = o.ntask;
  s.report_exit = true;
  s.rank_env = true;
  s.orphan = true;
  s.stderr_apart = true;
  s.end_with_spawner = true;  // a prun killed outright leaves no task of its job
  s.env = std::move(exports);
  for (char** e = environ; *e != nullptr; ++e) s.local_env.emplace_back(*e);
  if (o.stdin_mode == "rank0") s.rank0_stdin = Rank0Stdin(pump);
  if (!o.trace_file.empty() || o.progress) s.event_sink = rt.tid().raw();
  if (!o.where.empty()) {
    s.flags = 1;  // PvmTaskHost
    s.where = o.where;
  }
  return s;
}

// The tasks of the job, by tid, with their ranks.
struct Job {
  std::map<int, int> rank_of;
  int started = 0;
  int ended = 0;
  int exit_code = 0;
};

// What to do about a program prun could not find: a bare name is looked up
// (PATH, ~/pvm3/bin/ARCH); a path is taken as given, from prun's directory.
void NoFileHint(const std::string& file) {
  if (file.find('/') == std::string::npos) {
    std::fprintf(stderr, "prun: give a path (./%s) or put it on PATH or in ~/pvm3/bin/%s\n",
                 file.c_str(), mpvm::kArch);
    return;
  }
  std::string where = file;
  char cwd[4096];
  if (file[0] != '/' && getcwd(cwd, sizeof cwd) != nullptr) where = std::string(cwd) + "/" + file;
  std::fprintf(stderr, "prun: %s is not an executable file\n", where.c_str());
}

Job Start(mpvm::TaskRuntime& rt, const mpvm::SpawnRequestOptions& s, bool verbose) {
  Job job;
  auto tids = rt.Spawn(s);
  if (!tids) {
    std::fprintf(stderr, "prun: spawn failed: %s\n",
                 std::string(mpvm::PvmErrorText(mpvm::ToPvmCode(tids.error()))).c_str());
    job.exit_code = 1;
    return job;
  }
  bool hinted = false;
  for (size_t i = 0; i < tids->size(); ++i) {
    const int t = (*tids)[i];
    if (t > 0) {
      job.rank_of[t] = static_cast<int>(i);
      ++job.started;
      continue;
    }
    std::fprintf(stderr, "prun: could not start %s (rank %zu): %s\n", s.file.c_str(), i,
                 std::string(mpvm::PvmErrorText(t)).c_str());
    if (t == -7 /* PvmNoFile */ && !std::exchange(hinted, true)) NoFileHint(s.file);
    job.exit_code = 1;
  }
  if (verbose) std::fprintf(stderr, "prun: started %d task(s)\n", job.started);
  return job;
}

// Collected output: records of (tid, count, bytes) on kOutputTag (stdout;
// count -1 opens a task's output, 0 ends it) and kStderrTag (stderr), written
// line by line to prun's stdout and stderr with the chosen prefix.
class OutputPump {
 public:
  OutputPump(const std::string& tag_mode, const std::map<int, int>& rank_of)
      : tag_mode_(tag_mode), rank_of_(rank_of) {}

  void Drain(mpvm::TaskRuntime& rt) {
    while (auto m = rt.TakeMessage(-1, mpvm::kOutputTag, mpvm::kSystemCtx)) Take(*m, stdout);
    while (auto m = rt.TakeMessage(-1, mpvm::kStderrTag, mpvm::kSystemCtx)) Take(*m, stderr);
    std::fflush(stdout);
    std::fflush(stderr);
  }
  bool open() const { return !open_.empty(); }
  void Lost(int tid) { open_.erase(tid); }  // no more output will come from it

 private:
  void Take(mpvm::Message& m, FILE* to) {
    int head[2];
    if (!m.Unpack(mpvm::DataType::kInt, head, 2, 1)) return;
    const int tid = head[0], count = head[1];
    if (count == -1) {
      open_.insert(tid);
    } else if (count == 0) {
      for (FILE* f : {stdout, stderr}) {
        auto it = partial_.find({tid, f});
        if (it == partial_.end()) continue;
        if (!it->second.empty()) Emit(tid, it->second, f);
        partial_.erase(it);
      }
      open_.erase(tid);
    } else {
      std::string data(static_cast<size_t>(count), '\0');
      if (!m.Unpack(mpvm::DataType::kByte, data.data(), count, 1)) return;
      std::string& s = partial_[{tid, to}];
      s += data;
      size_t nl;
      while ((nl = s.find('\n')) != std::string::npos) {
        Emit(tid, std::string_view(s).substr(0, nl), to);
        s.erase(0, nl + 1);
      }
    }
  }
  void Emit(int tid, std::string_view line, FILE* to) {
    std::string out = Prefix(tid);
    out.append(line);
    out.push_back('\n');
    std::fwrite(out.data(), 1, out.size(), to);
  }
  std::string Prefix(int tid) const {
    if (tag_mode_ == "none") return "";
    auto it = rank_of_.find(tid);
    if (tag_mode_ == "rank" && it != rank_of_.end()) return fmt::format("[{}] ", it->second);
    return fmt::format("[{}] ", mpvm::Tid(tid).str());
  }

  std::string tag_mode_;
  const std::map<int, int>& rank_of_;
  std::set<int> open_;
  std::map<std::pair<int, FILE*>, std::string> partial_;
};

// Notes each ended task: adds its failure, if any, and sets job.exit_code
// from the first one.
void TakeEnded(mpvm::TaskRuntime& rt, Job& job, OutputPump& out, std::vector<std::string>& failures,
               bool verbose) {
  auto& ev = rt.task_ended();
  for (; !ev.empty(); ev.pop_front()) {
    const auto e = ev.front();
    ++job.ended;
    auto r = job.rank_of.find(e.tid.raw());
    std::string who =
        fmt::format("{} (rank {})", e.tid.str(), r != job.rank_of.end() ? r->second : -1);
    int code = 0;
    if (e.host_died) {
      failures.push_back(fmt::format("task {} was lost: its host left the virtual machine", who));
      out.Lost(e.tid.raw());
      code = 1;
    } else if (e.term_signal != 0) {
      failures.push_back(fmt::format("task {} was killed by signal {} ({})", who, e.term_signal,
                                     strsignal(e.term_signal)));
      code = 128 + e.term_signal;
    } else if (e.exit_code != 0) {
      failures.push_back(fmt::format("task {} exited with status {}", who, e.exit_code));
      code = e.exit_code;
    } else if (verbose) {
      std::fprintf(stderr, "prun: task %s exited normally\n", who.c_str());
    }
    if (job.exit_code == 0) job.exit_code = code;
  }
}

void TakeTrace(mpvm::TaskRuntime& rt, std::vector<json>& trace) {
  while (auto m = rt.TakeMessage(-1, mpvm::kTraceTag, mpvm::kSystemCtx)) {
    int len = 0;
    if (!m->Unpack(mpvm::DataType::kInt, &len, 1, 1) || len <= 0) continue;
    std::string text(static_cast<size_t>(len), '\0');
    if (!m->Unpack(mpvm::DataType::kByte, text.data(), len, 1)) continue;
    auto e = json::parse(text, nullptr, /*allow_exceptions=*/false);
    if (!e.is_discarded()) trace.push_back(std::move(e));
  }
}

// --progress: "prun: 6 running, 2 done, 3 moves, 12.4 s", rewritten in place
// on a terminal, a line each time otherwise; `last` ends it.
class Progress {
 public:
  explicit Progress(bool on) : on_(on), tty_(isatty(2)), start_(std::chrono::steady_clock::now()) {}
  void Show(const Job& job, const std::vector<json>& trace, bool last = false) {
    if (!on_) return;
    int moves = 0;
    for (const auto& e : trace) moves += e.value("ev", "") == "migration";
    const double s =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
    std::fprintf(stderr, "%sprun: %d running, %d done, %d move%s, %.1f s%s", tty_ ? "\r" : "",
                 job.started - job.ended, job.ended, moves, moves == 1 ? "" : "s", s,
                 tty_ && !last ? "" : "\n");
  }

 private:
  bool on_, tty_;
  std::chrono::steady_clock::time_point start_;
};

// Runs until every task has ended and its output is in, or a stop signal
// came (returned), or the daemon was lost.
int Supervise(mpvm::TaskRuntime& rt, Job& job, const PrunOptions& o, const sigset_t& wait_mask,
              std::vector<json>& trace, std::vector<std::string>& failures) {
  OutputPump out(o.tag_mode, job.rank_of);
  Progress progress(o.progress);
  auto next = std::chrono::steady_clock::now();
  for (;;) {
    out.Drain(rt);
    TakeTrace(rt, trace);
    TakeEnded(rt, job, out, failures, o.verbose);
    if (job.ended >= job.started && !out.open()) {
      progress.Show(job, trace, /*last=*/true);
      return 0;
    }
    if (g_signal != 0) return g_signal;
    if (o.progress && std::chrono::steady_clock::now() >= next) {
      progress.Show(job, trace);
      next += std::chrono::seconds(1);
    }
    if (!rt.WaitActivity(o.progress ? 200 : -1, &wait_mask)) {
      if (g_signal != 0) return g_signal;
      if (rt.daemon_lost()) {
        std::fprintf(stderr, "prun: lost contact with the mpvm daemon\n");
        if (job.exit_code == 0) job.exit_code = 1;
        return 0;
      }
    }
  }
}

// Each move's source host sends a last "forwarding" event when the links it
// held for the task close (as the run's tasks end): waits up to 3 s for those
// still on their way, then writes the trace.
void WriteTrace(mpvm::TaskRuntime& rt, const PrunOptions& o, const sigset_t& wait_mask,
                std::vector<json>& trace) {
  auto missing = [&] {
    std::set<std::string> moves;
    for (const auto& e : trace)
      if (e.value("ev", "") == "migration") moves.insert(e.value("id", ""));
    for (const auto& e : trace)
      if (e.value("ev", "") == "forwarding") moves.erase(e.value("id", ""));
    return moves.size();
  };
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(3);
  while (g_signal == 0 && !rt.daemon_lost() && missing() > 0) {
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
        deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0) {
      std::fprintf(stderr,
                   "prun: the trace lacks the forwarding counts of %zu moves (their source "
                   "hosts did not report within 3 s)\n",
                   missing());
      break;
    }
    rt.WaitActivity(static_cast<int>(left.count()), &wait_mask);
    TakeTrace(rt, trace);
  }
  std::ofstream f(o.trace_file);
  f << mpvm::prun::ChromeTrace(trace).dump(1) << "\n";
  if (!f) {
    std::fprintf(stderr, "prun: cannot write the trace to %s\n", o.trace_file.c_str());
  } else if (o.verbose) {
    std::fprintf(stderr, "prun: wrote %zu events to %s\n", trace.size(), o.trace_file.c_str());
  }
}

// Leaves the VM: halts an embedded one, or just leaves a shared one.
int Finish(mpvm::TaskRuntime& rt, const Vm& vm, int code) {
  if (vm.embedded_pid > 0) {
    (void)rt.Halt();
    int st;
    while (waitpid(vm.embedded_pid, &st, 0) < 0 && errno == EINTR) {
    }
  } else {
    (void)rt.Exit();
  }
  return code;
}

int RunJob(mpvm::TaskRuntime& rt, const PrunOptions& o, const Vm& vm, const sigset_t& wait_mask,
           std::vector<std::string> exports) {
  rt.SetOutputSink(rt.tid().raw(), mpvm::kOutputTag, mpvm::kSystemCtx);
  if (!o.trace_file.empty() && !std::ofstream(o.trace_file)) {  // say so now, not after the run
    std::fprintf(stderr, "prun: cannot write the trace to %s: %s\n", o.trace_file.c_str(),
                 std::strerror(errno));
    return Finish(rt, vm, 2);
  }
  mpvm::prun::StdinPump pump;
  Job job = Start(rt, SpawnOptions(o, rt, std::move(exports), pump), o.verbose);
  pump.Opened();
  std::vector<json> trace;
  std::vector<std::string> failures;
  const int interrupted = job.started > 0 ? Supervise(rt, job, o, wait_mask, trace, failures) : 0;
  std::fflush(stdout);
  if (!o.trace_file.empty() && interrupted == 0) WriteTrace(rt, o, wait_mask, trace);
  for (const auto& f : failures) std::fprintf(stderr, "prun: %s\n", f.c_str());
  if (interrupted != 0) {
    std::fprintf(stderr, "prun: %s received; stopping %zu task(s)\n", strsignal(interrupted),
                 job.rank_of.size() - static_cast<size_t>(job.ended));
    for (auto [tid, rank] : job.rank_of) (void)rt.Kill(mpvm::Tid(tid));
    job.exit_code = 128 + interrupted;
  }
  return Finish(rt, vm, job.exit_code);
}

}  // namespace

int main(int argc, char** argv) {
  auto parsed = mpvm::prun::ParsePrunArgs(argc, argv);
  if (const int* code = std::get_if<int>(&parsed)) return *code;
  const PrunOptions& o = std::get<PrunOptions>(parsed);
  auto exports = Exports(o);
  if (!exports) return 2;
  const sigset_t wait_mask = CatchStopSignals();
  auto vm = FindOrStartVm(o);
  if (!vm) return 1;
  mpvm::TaskRuntime rt;
  rt.SetInterruptMask(&wait_mask);
  if (auto st = rt.Enrol(/*claim_owner=*/vm->embedded_pid > 0, /*is_tool=*/true); !st) {
    std::fprintf(stderr, "prun: cannot contact the mpvm daemon in %s\n", vm->rundir.c_str());
    if (vm->embedded_pid > 0) {
      kill(vm->embedded_pid, SIGTERM);
      waitpid(vm->embedded_pid, nullptr, 0);
    }
    return 1;
  }
  if (vm->embedded_pid == 0 && !o.balance.empty() && !SwitchBalancer(rt, o.balance == "on"))
    return 1;
  return RunJob(rt, o, *vm, wait_mask, std::move(*exports));
}
