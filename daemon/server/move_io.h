// move_io.h — mpvmd's I/O for task migration. At the source: the stream to
// the destination's restore process, the task's handover on migrate.sock
// (its links, then 'G'), the image's end, the commit ('C' to the restore
// process), and the task's links taken over and forwarded. At the
// destination: the restore process and the port it waits on. Each step is
// reported to the core (OnMoveFrozen, MayCommit, OnMoveCommitted, ...).
#pragma once

#include <zmq.h>

#include <map>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "daemon_core.h"
#include "mpvm/migrate_wire.h"
#include "mpvm/task_link.h"
#include "server/connections.h"
#include "server/processes.h"
#include "server/spares.h"

namespace mpvm {

class MoveIo {
 public:
  // `fault`: MPVM_FAULT, a step where this daemon or the moving task ends.
  // `spares`: processes of tasks that moved away kept per program (spares.h).
  MoveIo(std::string fault, int spares, DaemonCore& core, Connections& conns, TaskProcesses& procs)
      : fault_(std::move(fault)),
        core_(core),
        conns_(conns),
        procs_(procs),
        spares_(spares, kSpareKeepNs) {}
  ~MoveIo();
  MoveIo(const MoveIo&) = delete;
  MoveIo& operator=(const MoveIo&) = delete;

  // Listens on migrate.sock in `rundir` (without it, tasks here cannot move).
  void Listen(const std::string& rundir);
  // DaemonEnv's migration operations.
  Result<RestoreStart> SpawnRestore(const SpawnSpec& spec, const std::string& key,
                                    const std::string& listen_addr);
  mpvm::expected<void, std::string> BeginMove(const MoveAsk& ask);
  void CancelMove(Tid t);
  void FaultPoint(std::string_view step, int task_pid);

  // Poll items: migrate.sock (Tid() in `index`), each handed-over move's
  // socket (its task), and each restore process's ready pipe (its task,
  // `ready_pipe`). OnReady: one of them is readable.
  struct PollId {
    Tid tid;
    bool ready_pipe = false;
  };
  void AppendPollItems(std::vector<zmq_pollitem_t>& items, std::vector<PollId>& index) const;
  void OnReady(PollId id);
  // Asks the tasks whose moves have begun to stop for them, when that
  // interrupts nothing (see Ask). Returns the ns until it must run again,
  // or -1.
  int64_t Tick(int64_t now_ns);
  // Process `pid` ended and was no task's.
  void OnReaped(pid_t pid) { spares_.Reaped(pid); }
  void Close();

 private:
  static constexpr int64_t kSpareKeepNs = 30'000'000'000;
  // A task whose image was larger is not kept as a spare: a spare holds
  // its old task's memory until it is used.
  static constexpr uint64_t kSpareMaxImage = 32u << 20;

  struct Moving {
    Tid tid;
    int pid = 0;
    int rfd = -1;      // our copy of the stream to the restore process, once asked
    std::string addr;  // where the restore process listens
    int port = 0;
    std::string token;
    int ms = -1;  // the task's connection to migrate.sock, once it has handed over
    std::vector<int> fds;
    std::vector<migrate::LinkDesc> descs;
    std::vector<std::vector<uint8_t>> in, out;
    std::vector<std::optional<LinkCipherState>> cipher;  // per link: encrypted ones
    std::vector<std::vector<uint8_t>> sealed;
    bool by_signal = false;  // it was computing: its handler captured it
    // Asking it (Ask): not yet, stopped to look at it, or asked.
    enum class Asking { kDue, kStopping, kAsked };
    Asking asking = Asking::kDue;
    WaitArea wait;
    int64_t ask_at_ns = 0;    // kDue: when to look again
    int64_t backoff_ns = 0;   // kDue: the wait before that look (10 to 100 ms)
    int64_t stopped_ns = 0;   // kStopping: when SIGSTOP went
    bool waits_said = false;  // the log said once that it waits for a call to return
    bool pins_seen = false;   // what it holds was looked at while it waited
  };
  // Why a move ended before the task was asked; `pinned`: for good (it
  // holds what a move would lose).
  struct AskFailure {
    std::string why;
    bool pinned = false;
  };
  // Asks m's task to stop for the move. A task blocked in a call of its own
  // (read from /proc without stopping it) is left alone and looked at again
  // later. Else it is stopped (SIGSTOP), looked at again, and sent SIGMIGRATE
  // only if it computes or waits in the library; the stream to the restore
  // process is connected before the stop. Returns why the move cannot go
  // on, if so.
  std::optional<AskFailure> Ask(Moving& m, int64_t now_ns);
  std::optional<AskFailure> Look(Moving& m, bool we_stopped, int64_t now_ns);
  // m.rfd, the stream to the restore process, connected if it is not yet.
  std::optional<AskFailure> ConnectStream(Moving& m);
  void AskLater(Moving& m, long nr, int64_t now_ns);
  void AcceptMigrate();
  // One task's handover on migrate.sock (`ms`): its links, then 'G' and the
  // stream to the restore process; or a refusal.
  void TakeHandover(int ms);
  // The handover's link records into `m`; the reason if they are not whole.
  const char* ReceiveLinks(int ms, const migrate::HandoverHead& head, size_t nfds, Moving& m);
  void OnMoveReadable(Tid t);
  void CommitMove(Moving& m, const MoveTimes& times);
  // At a commit: its task links handed to this daemon, which forwards what comes.
  void ForwardLinks(Moving& m);
  void AddForwardLink(int fd, Tid t, std::span<const uint8_t> unsent,
                      std::span<const uint8_t> unread, int32_t peer,
                      const std::optional<LinkCipherState>& cipher = std::nullopt,
                      std::span<const uint8_t> sealed = {});
  void DropMove(Tid t);
  // A restore process for `spec` (a spare, else a fresh one), handed the
  // image listener and the ready and key pipes.
  Result<int> StartRestore(const SpawnSpec& spec, int lfd, int ready, int key_fd);
  // A restore process wrote to its ready pipe, or ended: the core hears it.
  void OnRestoreReady(Tid t);

  std::string fault_;
  std::map<Tid, int> ready_pipes_;  // restore processes not ready yet: our end of their pipe
  DaemonCore& core_;
  Connections& conns_;
  TaskProcesses& procs_;
  SparePool spares_;
  int listen_fd_ = -1;
  std::map<Tid, Moving> moving_;
};

}  // namespace mpvm
