// mpvm — the mpvm console, interactive (`mpvm`) or one command (`mpvm ps -a`).
// It starts the daemon if none runs, as PVM's `pvm` does, and keeps PVM's
// command names.
#include <fmt/format.h>
#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <iostream>
#include <map>
#include <set>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "console_queries.h"
#include "console_session.h"
#include "mpvm/control.h"
#include "mpvm/daemon_starter.h"
#include "mpvm/paths.h"
#include "mpvm/task_runtime.h"

namespace {

const char* kHelp =
    "Commands:\n"
    "  conf                 list the hosts of the virtual machine\n"
    "  ps [-a]              list tasks (-a: all tasks, including tools)\n"
    "  spawn [-N] [-HOST] [-?] [->] PROGRAM [ARGS...]\n"
    "                       start N copies (default 1); -? under $PVM_DEBUGGER;\n"
    "                       with -> wait and show their output\n"
    "  kill TID...          kill tasks (tids as shown by ps, e.g. t40003)\n"
    "  migrate TID HOST     move a running task to another host (it keeps its tid)\n"
    "  add NAME --local [--speed S]\n"
    "                       add an emulated host on this machine; with a speed, its\n"
    "                       tasks together get S/1000 of one CPU here\n"
    "  balance [on|off]     switch the balancer (moves tasks to where they finish\n"
    "                       sooner), or say what it does\n"
    "  top [-n N]           each host's speed and load, and the balancer's latest\n"
    "                       moves, refreshed each second (N times; default: until ^C)\n"
    "  delete NAME...       remove hosts (their tasks end)\n"
    "  mstat HOST...        whether each host is in the virtual machine\n"
    "  pstat TID...         whether each task runs\n"
    "  sig SIGNUM TID...    send a signal to tasks\n"
    "  reset                end every task (not the tools), and the mailbox entries\n"
    "                       whose owners are gone\n"
    "  put NAME FLAGS DATA  add a mailbox entry holding the string DATA\n"
    "  names [PATTERN]      list the mailbox's names and entries\n"
    "  id                   print the console's task id\n"
    "  echo [ARGS...]       print the arguments\n"
    "  alias [NAME COMMAND...]\n"
    "                       list aliases, or define one; unalias NAME... drops them\n"
    "  setenv [NAME [VALUE...]]\n"
    "                       list the environment, show a variable, or set one\n"
    "  export [NAME...]     show PVM_EXPORT (the variables spawned tasks get), or\n"
    "                       add to it; unexport NAME... takes them out\n"
    "  halt                 stop every task and the virtual machine\n"
    "  quit                 leave the console; the virtual machine keeps running\n"
    "  version              print the PVM API version mpvm implements\n"
    "  help                 this text\n";

constexpr std::string_view kCommands[] = {
    "conf", "ps",      "spawn", "kill",    "migrate", "add",     "delete", "halt",   "quit",
    "exit", "version", "help",  "balance", "top",     "mstat",   "pstat",  "sig",    "reset",
    "put",  "names",   "id",    "echo",    "alias",   "unalias", "setenv", "export", "unexport"};

bool KnownCommand(std::string_view cmd) {
  return std::find(std::begin(kCommands), std::end(kCommands), cmd) != std::end(kCommands);
}

using mpvm::console::ParseTid;

std::string ErrText(mpvm::Err e) { return std::string(mpvm::PvmErrorText(mpvm::ToPvmCode(e))); }

class Console {
 public:
  explicit Console(mpvm::TaskRuntime& rt) : rt_(rt) {}

  void Migrate(const std::vector<std::string>& w, int* status) {
    const int t = w.size() == 3 ? ParseTid(w[1]) : 0;
    if (t <= 0) {
      std::fprintf(stderr, "migrate: give a task id and a host name: migrate t40003 node2\n");
      *status = 2;
      return;
    }
    auto r = rt_.Migrate(t, w[2]);
    if (!r) {
      const std::string& why = rt_.last_detail();
      std::fprintf(stderr, "migrate %s %s: %s\n", w[1].c_str(), w[2].c_str(),
                   why.empty() ? ErrText(r.error()).c_str() : why.c_str());
      *status = 1;
      return;
    }
    std::printf("%s\n", rt_.last_detail().c_str());
  }

  // Returns false when the console should end (quit, halt).
  bool Run(const std::vector<std::string>& words, int* status) {
    const std::vector<std::string> w = session_.Expand(words);
    if (w.empty()) return true;
    if (session_.Run(w, rt_.tid(), status) || mpvm::console::RunQuery(w, rt_, status)) return true;
    const std::string& cmd = w[0];
    if (cmd == "help" || cmd == "?") {
      std::fputs(kHelp, stdout);
    } else if (cmd == "version") {
      std::printf("3.4.6 (mpvm 0.1.0)\n");
    } else if (cmd == "conf") {
      Conf(status);
    } else if (cmd == "ps") {
      Ps(w.size() > 1 && w[1] == "-a", status);
    } else if (cmd == "spawn") {
      Spawn(w, status);
    } else if (cmd == "kill") {
      Kill(w, status);
    } else if (cmd == "migrate") {
      Migrate(w, status);
    } else if (cmd == "halt") {
      auto st = rt_.Halt();
      if (!st) {
        std::fprintf(stderr, "halt: %s\n", ErrText(st.error()).c_str());
        *status = 1;
      }
      return false;
    } else if (cmd == "quit" || cmd == "exit") {
      return false;
    } else if (cmd == "add") {
      Add(w, status);
    } else if (cmd == "balance") {
      Balance(w, status);
    } else if (cmd == "top") {
      Top(w, status);
    } else if (cmd == "delete") {
      if (w.size() < 2) {
        std::fprintf(stderr, "delete: give one or more host names (see conf)\n");
        *status = 2;
      }
      for (size_t i = 1; i < w.size(); ++i) {
        auto st = rt_.DelHost(w[i]);
        if (!st) {
          std::fprintf(
              stderr, "delete %s: %s\n", w[i].c_str(),
              rt_.last_detail().empty() ? ErrText(st.error()).c_str() : rt_.last_detail().c_str());
          *status = 1;
        }
      }
    } else {
      std::fprintf(stderr, "%s: unknown command; type help\n", cmd.c_str());
      *status = 2;
    }
    return true;
  }

 private:
  // kill TID...
  void Kill(const std::vector<std::string>& w, int* status) {
    if (w.size() < 2) {
      std::fprintf(stderr, "kill: give one or more task ids (see ps)\n");
      *status = 2;
    }
    for (size_t i = 1; i < w.size(); ++i) {
      int t = ParseTid(w[i]);
      auto st =
          t > 0 ? rt_.Kill(mpvm::Tid(t)) : mpvm::Status(mpvm::unexpected(mpvm::Err::kBadParam));
      if (!st) {
        std::fprintf(stderr, "kill %s: %s\n", w[i].c_str(), ErrText(st.error()).c_str());
        *status = 1;
      }
    }
  }

  // top [-n N]: frames of the load view, one a second.
  void Top(const std::vector<std::string>& w, int* status) {
    long frames = -1;
    if (w.size() == 3 && w[1] == "-n") frames = std::strtol(w[2].c_str(), nullptr, 10);
    if (w.size() != 1 && (w.size() != 3 || w[1] != "-n" || frames <= 0)) {
      std::fprintf(stderr, "top: usage: top [-n FRAMES]\n");
      *status = 2;
      return;
    }
    for (long i = 0; frames < 0 || i < frames; ++i) {
      if (i > 0) std::this_thread::sleep_for(std::chrono::seconds(1));
      mpvm::ctl::Envelope req = mpvm::NewEnvelope();
      req.mutable_load_query();
      auto rep = rt_.ToolRequest(std::move(req));
      if (!rep || !rep->has_load_view()) {
        std::fprintf(stderr, "top: %s\n",
                     rep ? "the daemon did not answer" : ErrText(rep.error()).c_str());
        *status = 1;
        return;
      }
      ShowTop(rep->load_view(), isatty(1));
    }
  }

  static void ShowTop(const mpvm::ctl::LoadView& v, bool clear) {
    if (clear) std::printf("\033[H\033[2J");
    std::printf("mpvm top: %d hosts, balancer %s\n\n", v.hosts_size(),
                v.balancing() ? "on" : "off");
    std::printf("%20s %7s %6s %9s %10s\n", "HOST", "SPEED", "TASKS", "RUNNABLE", "TIME/TASK");
    for (const auto& h : v.hosts()) {
      // A task's expected time per unit of work here, as the balancer sees it.
      const double per =
          std::max(1.0, h.runnable() / std::max(1, h.cores())) * 1000 / std::max(1, h.speed());
      std::printf("%20s %7d %6d %9.1f %9.2fx\n", h.name().c_str(), h.speed(), h.tasks(),
                  h.runnable(), per);
    }
    std::printf("\nlatest moves by the balancer:%s\n", v.moves().empty() ? " none" : "");
    for (const auto& m : v.moves())
      std::printf("%7.1f s ago  t%x %s -> %s  %-9s  %s\n", m.age_ms() / 1000.0, m.tid(),
                  m.from().c_str(), m.to().c_str(), m.state().c_str(), m.reason().c_str());
    std::fflush(stdout);
  }

  // balance [on|off]
  void Balance(const std::vector<std::string>& w, int* status) {
    if (w.size() > 2 || (w.size() == 2 && w[1] != "on" && w[1] != "off")) {
      std::fprintf(stderr, "balance: usage: balance [on|off]\n");
      *status = 2;
      return;
    }
    namespace ctl = mpvm::ctl;
    ctl::Envelope req = mpvm::NewEnvelope();
    req.mutable_balance()->set_set(w.size() == 1  ? ctl::BalanceRequest::ASK
                                   : w[1] == "on" ? ctl::BalanceRequest::ON
                                                  : ctl::BalanceRequest::OFF);
    auto rep = rt_.ToolRequest(std::move(req));
    if (!rep || !rep->has_status()) {
      std::fprintf(stderr, "balance: %s\n",
                   rep ? "the daemon did not answer" : ErrText(rep.error()).c_str());
      *status = 1;
      return;
    }
    std::printf("%s\n", rep->status().detail().c_str());
  }

  // add NAME [--local] [--speed S] [host-file options...]
  void Add(const std::vector<std::string>& w, int* status) {
    if (w.size() < 2) {
      std::fprintf(stderr, "add: usage: add NAME [--local] [--speed S] [sp=N ep=PATH ...]\n");
      *status = 2;
      return;
    }
    // Host file options as they are, and the console's spellings of two.
    std::string line = w[1];
    for (size_t i = 2; i < w.size(); ++i) {
      if (w[i] == "--local")
        line += " local=1";
      else if (w[i] == "--speed" && i + 1 < w.size())
        line += " sp=" + w[++i];
      else if (w[i].rfind("--speed=", 0) == 0)
        line += " sp=" + w[i].substr(8);
      else
        line += " " + w[i];
    }
    auto r = rt_.AddHost(line);
    if (!r) {
      std::fprintf(
          stderr, "add %s: %s\n", w[1].c_str(),
          rt_.last_detail().empty() ? ErrText(r.error()).c_str() : rt_.last_detail().c_str());
      *status = 1;
      return;
    }
    std::printf("1 successful\n%20s %8x\n", w[1].c_str(), *r);
  }

  void Conf(int* status) {
    auto c = rt_.Config();
    if (!c) {
      std::fprintf(stderr, "conf: %s\n", ErrText(c.error()).c_str());
      *status = 1;
      return;
    }
    std::set<std::string> archs;
    for (const auto& h : c->hosts()) archs.insert(h.arch());
    std::printf("%d host%s, %zu data format%s\n", c->hosts_size(), c->hosts_size() == 1 ? "" : "s",
                archs.size(), archs.size() == 1 ? "" : "s");
    std::printf("%20s %8s %10s %7s %10s %6s %6s\n", "HOST", "DTID", "ARCH", "SPEED", "DSIG",
                "TASKS", "CORES");
    for (const auto& h : c->hosts())
      std::printf("%20s %8x %10s %7d 0x%08x %6d %6d\n", h.name().c_str(), h.tid(), h.arch().c_str(),
                  h.speed(), h.dsig(), h.ntasks(), std::max(1, h.cores()));
  }

  void Ps(bool all, int* status) {
    auto t = rt_.Tasks(0);
    if (!t) {
      std::fprintf(stderr, "ps: %s\n", ErrText(t.error()).c_str());
      *status = 1;
      return;
    }
    auto conf = rt_.Config();
    std::map<int, std::string> host_names;
    if (conf)
      for (const auto& h : conf->hosts()) host_names[h.tid()] = h.name();
    std::printf("%20s %8s %8s %8s %5s %s\n", "HOST", "TID", "PTID", "PID", "MOVES", "COMMAND");
    std::vector<std::string> notes;
    for (const auto& e : t->tasks()) {
      bool tool = (e.flag() & 0x100) != 0;
      if (tool && !all) continue;
      std::printf("%20s %8x %8x %8d %5d %s\n", host_names[e.host()].c_str(), e.tid(), e.ptid(),
                  e.pid(), e.moves(), tool ? "(tool)" : e.a_out().c_str());
      if (!e.pinned().empty())
        notes.push_back(fmt::format("t{:x} is pinned: {}", e.tid(), e.pinned()));
    }
    for (const auto& n : notes) std::printf("%s\n", n.c_str());
  }

  void Spawn(const std::vector<std::string>& w, int* status) {
    mpvm::SpawnRequestOptions o;
    bool follow = false;
    size_t i = 1;
    for (; i < w.size() && w[i][0] == '-'; ++i) {
      std::string opt = w[i].substr(1);
      if (opt == ">") {
        follow = true;
      } else if (opt == "?") {
        o.flags |= 4;  // PvmTaskDebug: under $PVM_DEBUGGER
      } else if (!opt.empty() && std::isdigit(static_cast<unsigned char>(opt[0]))) {
        o.ntask = std::atoi(opt.c_str());
      } else if (!opt.empty()) {
        o.flags |= 1;  // PvmTaskHost
        o.where = opt;
      }
    }
    if (i >= w.size() || o.ntask < 1) {
      std::fprintf(stderr, "spawn: usage: spawn [-N] [-HOST] [->] PROGRAM [ARGS...]\n");
      *status = 2;
      return;
    }
    o.file = w[i];
    o.args.assign(w.begin() + static_cast<ptrdiff_t>(i) + 1, w.end());
    o.report_exit = follow;
    if (follow) {
      rt_.SetOutputSink(rt_.tid().raw(), mpvm::kOutputTag, mpvm::kSystemCtx);
    } else {
      rt_.SetOutputSink(0, 0, 0);
    }
    auto r = rt_.Spawn(o);
    if (!r) {
      std::fprintf(stderr, "spawn: %s\n", ErrText(r.error()).c_str());
      *status = 1;
      return;
    }
    int ok = 0;
    for (int t : *r) {
      if (t > 0) {
        ++ok;
      } else {
        std::fprintf(stderr, "spawn: %s: %s\n", o.file.c_str(),
                     std::string(mpvm::PvmErrorText(t)).c_str());
        *status = 1;
      }
    }
    std::printf("%d successful\n", ok);
    for (int t : *r)
      if (t > 0) std::printf("t%x\n", t);
    std::fflush(stdout);
    if (follow) Follow(ok);
  }

  // Shows the output of tasks spawned with -> until they have all ended.
  void Follow(int count) {
    std::set<int> open;
    std::map<int, std::string> partial;
    int ended = 0;
    while (ended < count || !open.empty()) {
      while (auto m = rt_.TakeMessage(-1, mpvm::kOutputTag, mpvm::kSystemCtx)) {
        int head[2];
        if (!m->Unpack(mpvm::DataType::kInt, head, 2, 1)) continue;
        if (head[1] == -1) {
          open.insert(head[0]);
        } else if (head[1] == 0) {
          if (!partial[head[0]].empty())
            std::printf("[t%x] %s\n", head[0], partial[head[0]].c_str());
          partial.erase(head[0]);
          open.erase(head[0]);
        } else {
          std::string data(static_cast<size_t>(head[1]), '\0');
          if (!m->Unpack(mpvm::DataType::kByte, data.data(), head[1], 1)) continue;
          std::string& p = partial[head[0]];
          p += data;
          size_t nl;
          while ((nl = p.find('\n')) != std::string::npos) {
            std::printf("[t%x] %s\n", head[0], p.substr(0, nl).c_str());
            p.erase(0, nl + 1);
          }
        }
      }
      std::fflush(stdout);
      ended += static_cast<int>(rt_.task_ended().size());
      rt_.task_ended().clear();
      if (ended >= count && open.empty()) break;
      if (!rt_.WaitActivity(-1)) break;
    }
  }

  mpvm::TaskRuntime& rt_;
  mpvm::console::Session session_;  // aliases: for this console's run
};

}  // namespace

int main(int argc, char** argv) {
  signal(SIGPIPE, SIG_IGN);
  std::vector<std::string> args(argv + 1, argv + argc);
  if (!args.empty() && (args[0] == "--help" || args[0] == "-h")) {
    std::printf("usage: mpvm [COMMAND [ARGS...]]\n\n%s", kHelp);
    return 0;
  }
  if (!args.empty() && args[0] == "--version") {
    std::printf("mpvm 0.1.0 (PVM 3.4.6 API)\n");
    return 0;
  }
  // An unknown command is a usage error, and starts no virtual machine.
  if (!args.empty() && !KnownCommand(args[0])) {
    std::fprintf(stderr, "mpvm: unknown command '%s' (mpvm --help lists the commands)\n",
                 args[0].c_str());
    return 2;
  }
  const std::string rundir = mpvm::RunDir();
  const bool one_shot = !args.empty();
  // `halt` and `quit` must not start a VM just to stop it.
  if (one_shot && (args[0] == "halt" || args[0] == "quit") && !mpvm::DaemonRunning(rundir)) {
    if (args[0] == "halt") std::fprintf(stderr, "mpvm: no virtual machine is running\n");
    return args[0] == "halt" ? 1 : 0;
  }
  if (!mpvm::DaemonRunning(rundir)) {
    auto r = mpvm::StartDaemon(rundir, {}, /*embedded=*/false);
    if (!r && r.error() != mpvm::Err::kDupHost) return 1;
  }
  mpvm::TaskRuntime rt;
  if (auto st = rt.Enrol(false, /*is_tool=*/true); !st) {
    std::fprintf(stderr, "mpvm: cannot contact the daemon in %s\n", rundir.c_str());
    return 1;
  }
  Console console(rt);
  int status = 0;
  if (one_shot) {
    bool keep = console.Run(args, &status);
    if (keep || args[0] == "quit") (void)rt.Exit();
    return status;
  }
  const bool tty = isatty(0);
  std::string line;
  for (;;) {
    if (tty) {
      std::printf("pvm> ");
      std::fflush(stdout);
    }
    if (!std::getline(std::cin, line)) break;
    int st = 0;
    auto words = mpvm::console::Words(line);
    if (!words) {
      std::fprintf(stderr, "%s: the line was not run\n", words.error().c_str());
      continue;
    }
    if (!console.Run(*words, &st)) return 0;
    std::fflush(stdout);  // a script driving the console reads each answer as it comes
  }
  (void)rt.Exit();
  return 0;
}
