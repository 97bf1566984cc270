// prun — launch N instances of a PVM program, MPI style.
//
//   prun -n 32 ./app args...
//
// Uses the running virtual machine, or starts an embedded one (in a private
// runtime directory) and halts it at the end. Output is tagged per task; the
// exit status is non-zero if any task failed, and says which. Ctrl-C or
// SIGTERM stops every task and the embedded VM.
#include <fmt/format.h>
#include <signal.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <set>
#include <string>
#include <vector>

#include "mpvm/daemon_starter.h"
#include "mpvm/paths.h"
#include "mpvm/task_runtime.h"

namespace {

volatile sig_atomic_t g_signal = 0;
void OnSignal(int sig) { g_signal = sig; }

struct Stream {
  std::string partial;
};

using nlohmann::json;

// The daemons' events of a run (spawn, end, migration, resume, forwarding)
// as a Chrome / Perfetto trace: one process per host, one thread per task;
// a task's time on each host is a slice, each migration a slice on the
// source host (the blackout) with all its numbers, and an arrow to where the
// task resumed.
json ChromeTrace(const std::vector<json>& events) {
  int64_t t0 = INT64_MAX;
  auto ts_of = [](const json& e) -> int64_t {
    if (e.contains("ts")) return e["ts"].get<int64_t>();
    if (e.contains("freeze_ns")) return e["freeze_ns"].get<int64_t>();
    return 0;
  };
  for (const auto& e : events)
    if (int64_t t = ts_of(e); t > 0)
      t0 = std::min(t0, e.contains("request_ns") ? std::min(t, e["request_ns"].get<int64_t>()) : t);
  int64_t t_end = 0;
  for (const auto& e : events) t_end = std::max(t_end, ts_of(e));
  auto us = [&](int64_t ns) { return static_cast<double>(ns - t0) / 1000.0; };
  std::map<std::string, int> host_pid;
  auto pid_of = [&](const std::string& host) {
    auto [it, fresh] = host_pid.emplace(host, static_cast<int>(host_pid.size()) + 1);
    return it->second;
  };
  std::map<std::string, std::string> a_out;
  std::map<std::string, std::vector<const json*>> by_task;
  std::map<std::string, const json*> forwarding;  // by move id
  std::map<std::string, int64_t> resumed_at;      // by move id
  for (const auto& e : events) {
    const std::string ev = e.value("ev", "");
    if (ev == "forwarding") {
      forwarding[e.value("id", "")] = &e;
      continue;
    }
    if (ev == "resumed") resumed_at[e.value("id", "")] = e["ts"].get<int64_t>();
    if (ev == "start") a_out[e.value("tid", "")] = e.value("a_out", "");
    by_task[e.value("tid", "")].push_back(&e);
  }
  json out = json::array();
  int flow = 0;
  for (auto& [tid, evs] : by_task) {
    std::stable_sort(evs.begin(), evs.end(),
                     [&](const json* a, const json* b) { return ts_of(*a) < ts_of(*b); });
    const int thread = static_cast<int>(std::strtol(tid.c_str() + 1, nullptr, 16));
    std::string name = tid;
    if (auto it = a_out.find(tid); it != a_out.end() && !it->second.empty())
      name += " " + it->second.substr(it->second.rfind('/') + 1);
    std::string host;
    int64_t since = 0;
    // A complete event ("X") on host h's track of this task.
    auto complete = [&](const std::string& title, const char* cat, const std::string& h,
                        int64_t from, int64_t to, json args) {
      out.push_back({{"name", title},
                     {"cat", cat},
                     {"ph", "X"},
                     {"pid", pid_of(h)},
                     {"tid", thread},
                     {"ts", us(from)},
                     {"dur", us(to) - us(from)},
                     {"args", std::move(args)}});
    };
    auto slice = [&](const std::string& h, int64_t from, int64_t to) {
      if (!h.empty() && to >= from) complete(name, "task", h, from, to, {{"host", h}});
    };
    std::set<std::string> named;
    auto name_thread = [&](const std::string& h) {
      if (!named.insert(h).second) return;
      out.push_back({{"name", "thread_name"},
                     {"ph", "M"},
                     {"pid", pid_of(h)},
                     {"tid", thread},
                     {"args", {{"name", name}}}});
    };
    for (const json* e : evs) {
      const std::string ev = e->value("ev", "");
      if (ev == "start") {
        host = e->value("host", "");
        since = ts_of(*e);
        name_thread(host);
      } else if (ev == "migration") {
        const std::string from = e->value("from", ""), to = e->value("to", "");
        const int64_t freeze = (*e)["freeze_ns"].get<int64_t>();
        const int64_t restored = (*e)["restored_ns"].get<int64_t>();
        const std::string id = e->value("id", "");
        slice(from.empty() ? host : from, since, freeze);
        json args = *e;
        args.erase("ev");
        if (auto fw = forwarding.find(id); fw != forwarding.end()) {
          args["forwarded_later"] = fw->second->value("forwarded", 0);  // after the commit
        }
        if (resumed_at.contains(id)) args["resume_ns"] = resumed_at[id];
        name_thread(from);
        name_thread(to);
        complete("migrate to " + to, "migration", from, freeze, restored, std::move(args));
        // The copy runs from the commit on (it re-enrols with its new daemon
        // at its next PVM call: resume_ns).
        const int64_t resume = e->value("commit_ns", restored);
        out.push_back({{"name", "migration"},
                       {"cat", "migration"},
                       {"ph", "s"},
                       {"id", ++flow},
                       {"pid", pid_of(from)},
                       {"tid", thread},
                       {"ts", us(freeze)}});
        out.push_back({{"name", "migration"},
                       {"cat", "migration"},
                       {"ph", "f"},
                       {"bp", "e"},
                       {"id", flow},
                       {"pid", pid_of(to)},
                       {"tid", thread},
                       {"ts", us(resume)}});
        host = to;
        since = resume;
      } else if (ev == "end") {
        slice(e->value("host", host), since, ts_of(*e));
        host.clear();
      }
    }
    slice(host, since, t_end);  // still running when the run ended
  }
  for (const auto& [h, pid] : host_pid)
    out.push_back({{"name", "process_name"}, {"ph", "M"}, {"pid", pid}, {"args", {{"name", h}}}});
  return json{{"traceEvents", out}, {"displayTimeUnit", "ms"}};
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"prun: run N instances of a PVM program on the mpvm virtual machine"};
  int ntask = 1;
  std::string tag_mode = "tid";
  std::string where;
  bool verbose = false;
  std::vector<std::string> command;
  app.add_option("-n,--np", ntask, "number of instances")->check(CLI::Range(1, 4096));
  app.add_option("--tag-output", tag_mode, "prefix of output lines: tid, rank or none")
      ->check(CLI::IsMember({"tid", "rank", "none"}))
      ->capture_default_str();
  app.add_flag("--verbose", verbose, "say what prun does (VM start, spawn, exits)");
  app.add_option("--host", where, "run on this host only (PvmTaskHost)");
  std::string trace_file;
  app.add_option("--trace", trace_file,
                 "write the run's events (tasks per host, migrations) to FILE as a "
                 "Chrome/Perfetto trace (open it in ui.perfetto.dev or chrome://tracing)");
  app.add_option("command", command, "program and its arguments")->required();
  app.prefix_command();  // everything after the program belongs to it
  CLI11_PARSE(app, argc, argv);
  for (const auto& extra : app.remaining()) command.push_back(extra);

  // Signals are blocked except while waiting, so none is lost between checks.
  sigset_t block, wait_mask;
  sigemptyset(&block);
  sigaddset(&block, SIGINT);
  sigaddset(&block, SIGTERM);
  sigaddset(&block, SIGHUP);
  sigprocmask(SIG_BLOCK, &block, &wait_mask);
  sigdelset(&wait_mask, SIGINT);
  sigdelset(&wait_mask, SIGTERM);
  sigdelset(&wait_mask, SIGHUP);
  struct sigaction sa {};
  sa.sa_handler = OnSignal;
  sigaction(SIGINT, &sa, nullptr);
  sigaction(SIGTERM, &sa, nullptr);
  sigaction(SIGHUP, &sa, nullptr);
  signal(SIGPIPE, SIG_IGN);

  // Find or start the virtual machine.
  std::string rundir = mpvm::RunDir();
  pid_t embedded_pid = 0;
  if (!mpvm::DaemonRunning(rundir)) {
    rundir = fmt::format("{}.p{}", rundir, getpid());
    setenv("MPVM_RUNDIR", rundir.c_str(), 1);
    auto pid = mpvm::StartDaemon(rundir, {}, /*embedded=*/true);
    if (!pid) {
      std::fprintf(stderr, "prun: cannot start an embedded virtual machine\n");
      return 1;
    }
    embedded_pid = *pid;
    if (verbose) std::fprintf(stderr, "prun: started an embedded VM in %s\n", rundir.c_str());
  } else {
    setenv("MPVM_RUNDIR", rundir.c_str(), 1);
  }

  mpvm::TaskRuntime rt;
  rt.SetInterruptMask(&wait_mask);
  auto finish = [&](int code) {
    if (embedded_pid > 0) {
      (void)rt.Halt();
      int st;
      while (waitpid(embedded_pid, &st, 0) < 0 && errno == EINTR) {
      }
    } else {
      (void)rt.Exit();
    }
    return code;
  };
  if (auto st = rt.Enrol(/*claim_owner=*/embedded_pid > 0, /*is_tool=*/true); !st) {
    std::fprintf(stderr, "prun: cannot contact the mpvm daemon in %s\n", rundir.c_str());
    if (embedded_pid > 0) {
      kill(embedded_pid, SIGTERM);
      waitpid(embedded_pid, nullptr, 0);
    }
    return 1;
  }
  rt.SetOutputSink(rt.tid().raw(), mpvm::kOutputTag, mpvm::kSystemCtx);

  mpvm::SpawnRequestOptions o;
  o.file = command[0];
  o.args.assign(command.begin() + 1, command.end());
  o.ntask = ntask;
  o.report_exit = true;
  o.rank_env = true;
  o.orphan = true;
  std::vector<json> trace;
  if (!trace_file.empty()) {
    std::ofstream probe(trace_file);  // say so now, not after the run
    if (!probe) {
      std::fprintf(stderr, "prun: cannot write the trace to %s: %s\n", trace_file.c_str(),
                   std::strerror(errno));
      return finish(2);
    }
    o.event_sink = rt.tid().raw();
  }
  if (!where.empty()) {
    o.flags = 1;  // PvmTaskHost
    o.where = where;
  }
  auto tids = rt.Spawn(o);
  if (!tids) {
    std::fprintf(stderr, "prun: spawn failed: %s\n",
                 std::string(mpvm::PvmErrorText(mpvm::ToPvmCode(tids.error()))).c_str());
    return finish(1);
  }
  std::map<int, int> rank_of;
  int started = 0;
  int first_error = 0;
  for (size_t i = 0; i < tids->size(); ++i) {
    int t = (*tids)[i];
    if (t > 0) {
      rank_of[t] = static_cast<int>(i);
      ++started;
    } else {
      std::fprintf(stderr, "prun: could not start %s (rank %zu): %s\n", o.file.c_str(), i,
                   std::string(mpvm::PvmErrorText(t)).c_str());
      if (t == -7)
        std::fprintf(stderr, "prun: give a path (./%s) or put it on PATH or in ~/pvm3/bin/%s\n",
                     o.file.c_str(), mpvm::kArch);
      first_error = first_error == 0 ? 1 : first_error;
    }
  }
  if (verbose) std::fprintf(stderr, "prun: started %d task(s)\n", started);

  std::map<int, Stream> streams;
  std::set<int> open_outputs;
  int ended = 0;
  int exit_code = first_error;
  std::vector<std::string> failures;
  auto prefix = [&](int tid) -> std::string {
    if (tag_mode == "none") return "";
    if (tag_mode == "rank") {
      auto it = rank_of.find(tid);
      return it != rank_of.end() ? fmt::format("[{}] ", it->second)
                                 : fmt::format("[{}] ", mpvm::Tid(tid).str());
    }
    return fmt::format("[{}] ", mpvm::Tid(tid).str());
  };
  auto emit = [&](int tid, std::string_view line) {
    std::string out = prefix(tid);
    out.append(line);
    out.push_back('\n');
    std::fwrite(out.data(), 1, out.size(), stdout);
  };

  auto take_trace = [&] {
    while (auto m = rt.TakeMessage(-1, mpvm::kTraceTag, mpvm::kSystemCtx)) {
      int len = 0;
      if (!m->Unpack(mpvm::DataType::kInt, &len, 1, 1) || len <= 0) continue;
      std::string text(static_cast<size_t>(len), '\0');
      if (!m->Unpack(mpvm::DataType::kByte, text.data(), len, 1)) continue;
      auto e = json::parse(text, nullptr, /*allow_exceptions=*/false);
      if (!e.is_discarded()) trace.push_back(std::move(e));
    }
  };
  int interrupted = 0;
  while (ended < started || !open_outputs.empty()) {
    while (auto m = rt.TakeMessage(-1, mpvm::kOutputTag, mpvm::kSystemCtx)) {
      int head[2];
      if (!m->Unpack(mpvm::DataType::kInt, head, 2, 1)) continue;
      const int tid = head[0], count = head[1];
      if (count == -1) {
        open_outputs.insert(tid);
      } else if (count == 0) {
        auto& s = streams[tid];
        if (!s.partial.empty()) emit(tid, s.partial);
        streams.erase(tid);
        open_outputs.erase(tid);
      } else if (count > 0) {
        std::string data(static_cast<size_t>(count), '\0');
        if (!m->Unpack(mpvm::DataType::kByte, data.data(), count, 1)) continue;
        auto& s = streams[tid];
        s.partial += data;
        size_t nl;
        while ((nl = s.partial.find('\n')) != std::string::npos) {
          emit(tid, std::string_view(s.partial).substr(0, nl));
          s.partial.erase(0, nl + 1);
        }
      }
    }
    std::fflush(stdout);
    take_trace();
    auto& ev = rt.task_ended();
    while (!ev.empty()) {
      auto e = ev.front();
      ev.pop_front();
      ++ended;
      auto r = rank_of.find(e.tid.raw());
      std::string who =
          fmt::format("{} (rank {})", e.tid.str(), r != rank_of.end() ? r->second : -1);
      if (e.host_died) {
        failures.push_back(fmt::format("task {} was lost: its host left the virtual machine", who));
        open_outputs.erase(e.tid.raw());  // no more output will come from it
        if (exit_code == 0) exit_code = 1;
      } else if (e.term_signal != 0) {
        failures.push_back(fmt::format("task {} was killed by signal {} ({})", who, e.term_signal,
                                       strsignal(e.term_signal)));
        if (exit_code == 0) exit_code = 128 + e.term_signal;
      } else if (e.exit_code != 0) {
        failures.push_back(fmt::format("task {} exited with status {}", who, e.exit_code));
        if (exit_code == 0) exit_code = e.exit_code;
      } else if (verbose) {
        std::fprintf(stderr, "prun: task %s exited normally\n", who.c_str());
      }
    }
    if (ended >= started && open_outputs.empty()) break;
    if (g_signal != 0) {
      interrupted = g_signal;
      break;
    }
    if (!rt.WaitActivity(-1, &wait_mask)) {
      if (g_signal != 0) {
        interrupted = g_signal;
        break;
      }
      if (rt.daemon_lost()) {
        std::fprintf(stderr, "prun: lost contact with the mpvm daemon\n");
        exit_code = exit_code == 0 ? 1 : exit_code;
        break;
      }
    }
  }
  std::fflush(stdout);
  if (!trace_file.empty()) {
    // Each move's source host sends a last "forwarding" event when the links
    // it held for the task close (they do as the run's tasks end): wait a
    // little for those still on their way.
    auto missing = [&] {
      std::set<std::string> moves;
      for (const auto& e : trace)
        if (e.value("ev", "") == "migration") moves.insert(e.value("id", ""));
      for (const auto& e : trace)
        if (e.value("ev", "") == "forwarding") moves.erase(e.value("id", ""));
      return moves.size();
    };
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(3);
    while (interrupted == 0 && g_signal == 0 && !rt.daemon_lost() && missing() > 0) {
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
      take_trace();
    }
    std::ofstream f(trace_file);
    f << ChromeTrace(trace).dump(1) << "\n";
    if (!f) {
      std::fprintf(stderr, "prun: cannot write the trace to %s\n", trace_file.c_str());
    } else if (verbose) {
      std::fprintf(stderr, "prun: wrote %zu events to %s\n", trace.size(), trace_file.c_str());
    }
  }
  for (const auto& f : failures) std::fprintf(stderr, "prun: %s\n", f.c_str());
  if (interrupted != 0) {
    std::fprintf(stderr, "prun: %s received; stopping %zu task(s)\n", strsignal(interrupted),
                 rank_of.size() - static_cast<size_t>(ended));
    for (auto [tid, rank] : rank_of) (void)rt.Kill(mpvm::Tid(tid));
    exit_code = 128 + interrupted;
  }
  return finish(exit_code);
}
