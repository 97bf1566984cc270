#include "mpvm/task_runtime.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <cstring>

#include "mpvm/clock.h"
#include "mpvm/control.h"
#include "mpvm/paths.h"
#include "mpvm/settings.h"

namespace mpvm {
namespace {

// PVM option numbers (pvm3.h); the runtime does not include the C header.
enum Opt {
  kOptRoute = 1,
  kOptDebugMask = 2,
  kOptAutoErr = 3,
  kOptOutputTid = 4,
  kOptOutputCode = 5,
  kOptTraceTid = 6,
  kOptTraceCode = 7,
  kOptTraceBuffer = 8,
  kOptTraceOptions = 9,
  kOptFragSize = 10,
  kOptResvTids = 11,
  kOptSelfOutputTid = 12,
  kOptSelfOutputCode = 13,
  kOptSelfTraceTid = 14,
  kOptSelfTraceCode = 15,
  kOptSelfTraceBuffer = 16,
  kOptSelfTraceOptions = 17,
  kOptShowTids = 18,
  kOptPollType = 19,
  kOptPollTime = 20,
  kOptOutputContext = 21,
  kOptTraceContext = 22,
  kOptSelfOutputContext = 23,
  kOptSelfTraceContext = 24,
  kOptNoReset = 25,
};
constexpr int kRouteDont = 1;
constexpr int kNotifyTaskExit = 1, kNotifyHostDelete = 2, kNotifyHostAdd = 3;
constexpr int kNotifyCancel = 256;

int64_t NowNs() { return MonotonicNs(); }

Status FromCode(int code) {
  if (code < 0) return Fail(FromPvmCode(code));
  return {};
}

}  // namespace

namespace {
Status StatusOf(const Result<ctl::Envelope>& rep) {
  if (!rep) return mpvm::unexpected(rep.error());
  if (!rep->has_status()) return Fail(Err::kDSysErr);
  return FromCode(rep->status().code());
}
}  // namespace

TaskRuntime::TaskRuntime() {
  if (const auto us = CurrentSettings().spin_us) spin_ns_ = int64_t{*us} * 1000;
}

TaskRuntime::~TaskRuntime() {
  if (listen_fd_ >= 0) {
    close(listen_fd_);
    unlink(listen_path_.c_str());
  }
}

// ---------------------------------------------------------------------------
// Enrolment

Status TaskRuntime::Enrol(bool claim_owner, bool is_tool) {
  if (enrolled()) return {};
  if (const auto& settings = ProcessSettings(SettingsFor::kTask); !settings) {  // a bad value
    std::fprintf(stderr, "libpvm: %s\n", settings.error().c_str());
    return Fail(Err::kBadParam);
  }
  rundir_ = RunDir();
  int fd = ConnectUnix(DaemonSocketPath(rundir_));
  if (fd < 0) return Fail(Err::kSysErr);
  daemon_ = std::make_unique<Connection>(fd);
  daemon_lost_ = false;

  int given = 0;
  if (const char* t = std::getenv("MPVM_TID"); t != nullptr) {
    given = static_cast<int>(std::strtol(t, nullptr, 10));
    unsetenv("MPVM_TID");  // a plain child process of ours enrols on its own
  }
  ctl::Envelope req = NewEnvelope();
  auto* e = req.mutable_enrol();
  e->set_tid(given);
  e->set_pid(getpid());
  e->set_name(program_invocation_short_name);
  e->set_claim_owner(claim_owner);
  e->set_is_tool(is_tool);
  // Spawned by a daemon: it may move. The handler goes in before the daemon
  // knows the task, whose move may be asked for the moment it has enrolled
  // (SIGMIGRATE's default action would end the task).
  if (given != 0 && !is_tool) {
    EnableMigration();
    e->set_wait_area(reinterpret_cast<uintptr_t>(&LibraryWaits()));
    e->set_wait_area_size(sizeof(LibraryWaitArea));
  }
  auto rep = Call(std::move(req));
  if (!rep) {
    daemon_.reset();
    return mpvm::unexpected(rep.error());
  }
  if (!rep->has_enrol_reply() || rep->enrol_reply().code() < 0) {
    int code = rep->has_enrol_reply() ? rep->enrol_reply().code() : -14;
    daemon_.reset();
    return Fail(FromPvmCode(code));
  }
  const auto& r = rep->enrol_reply();
  mytid_ = Tid(r.tid());
  ptid_ = r.ptid();
  host_tid_ = Tid(r.host_tid());
  siblings_.clear();
  for (int s : r.siblings()) siblings_.push_back(Tid(s));
  out_tid_ = self_out_tid_ = r.output_tid();
  out_code_ = self_out_code_ = r.output_code();
  out_ctx_ = self_out_ctx_ = r.output_ctx();
  trace_tid_ = r.trace_tid();
  trace_code_ = r.trace_code();
  ctx_ = r.ctx();

  listen_path_ = TaskSocketPath(rundir_, mytid_);
  listen_fd_ = ListenUnix(listen_path_);
  if (listen_fd_ < 0) listen_path_.clear();  // peers will relay through the daemon
  if (r.link_key().size() == std::tuple_size_v<LinkKey> && !is_tool &&
      CurrentSettings().direct_links) {  // MPVM_DIRECT_LINKS=0: always relay across hosts
    LinkKey k;
    std::memcpy(k.data(), r.link_key().data(), k.size());
    link_key_ = k;
    link_encrypt_ = r.link_encrypt() || CurrentSettings().link_encrypt;
    StartLinkListener();
  }
  return {};
}

void TaskRuntime::StartLinkListener() {
  uint16_t port = 0;
  tcp_listen_fd_ = ListenTcpAny(&port);
  if (tcp_listen_fd_ < 0) return;  // peers on other hosts relay through the daemons
  ctl::Envelope note = NewEnvelope();
  note.set_version(kControlVersion);
  note.mutable_link_port()->set_port(port);
  auto bytes = EncodeControl(note);
  daemon_->Send(ControlHeader(mytid_.raw(), host_tid_.raw()), bytes);
}

Result<Tid> TaskRuntime::Parent() {
  if (auto st = EnsureEnrolled(); !st) return mpvm::unexpected(st.error());
  if (ptid_ == 0) return Fail(Err::kNoParent);
  if (ptid_ < 0) return Fail(FromPvmCode(ptid_));
  return Tid(ptid_);
}

Result<std::vector<Tid>> TaskRuntime::Siblings() {
  if (auto st = EnsureEnrolled(); !st) return mpvm::unexpected(st.error());
  if (siblings_.empty()) return std::vector<Tid>{mytid_};
  return siblings_;
}

void TaskRuntime::FlushAll() {
  auto pending = [&] {
    if (daemon_ && daemon_->open() && daemon_->wants_write()) return true;
    for (auto& c : conns_)
      if (c->open() && c->wants_write()) return true;
    return false;
  };
  while (pending()) {
    if (!Progress(1000)) continue;
  }
}

Status TaskRuntime::Exit() {
  if (!enrolled()) return {};
  // Wait for the output of children we collect (pvm_catchout), as PVM does.
  while (catch_file_ != nullptr && !open_outputs_.empty() && enrolled()) Progress(-1);
  if (catch_file_ != nullptr) fflush(catch_file_);
  SendDueAcks(true);  // its senders need keep nothing for it
  SettleBeforeExit();
  FlushAll();
  if (debugmask_ != 0 || CurrentSettings().debug)
    std::fprintf(stderr,
                 "libpvm [%s]: exits with %zu frame(s), %zu bytes unacknowledged (copies "
                 "given to the daemon)\n",
                 mytid_.str().c_str(), sent_.frames(), sent_.bytes());
  ctl::Envelope req = NewEnvelope();
  req.mutable_exit();
  auto rep = Call(std::move(req));
  ResetState();
  return rep ? Status{} : Status{mpvm::unexpected(rep.error())};
}

void TaskRuntime::ResetState() {
  daemon_.reset();
  conns_.clear();
  peers_.clear();
  if (listen_fd_ >= 0) {
    close(listen_fd_);
    unlink(listen_path_.c_str());
    listen_fd_ = -1;
  }
  if (tcp_listen_fd_ >= 0) close(tcp_listen_fd_);
  tcp_listen_fd_ = -1;
  for (auto& hs : handshakes_) close(hs->fd());
  handshakes_.clear();
  link_key_.reset();
  send_seq_.clear();
  recv_state_.clear();
  sent_ = SendLedger();
  traffic_ = TrafficCounter();
  acks_ = AckLedger();
  for (int id : queue_) bufs_.erase(id);
  queue_.clear();
  replies_.clear();
  locating_.clear();
  abandoned_rids_.clear();
  mytid_ = Tid();
  siblings_.clear();
}

void TaskRuntime::LostDaemon() {
  daemon_lost_ = true;
  if (daemon_) daemon_->Close();
}

// ---------------------------------------------------------------------------
// Control calls

Result<ctl::Envelope> TaskRuntime::Call(ctl::Envelope req, int timeout_ms) {
  const int64_t deadline = timeout_ms < 0 ? 0 : NowNs() + int64_t{timeout_ms} * 1000000;
  if (!daemon_ || !daemon_->open()) return Fail(Err::kSysErr);
  const uint64_t rid = next_rid_++;
  ++calls_in_flight_;
  struct Done {
    int& n;
    ~Done() { --n; }
  } done{calls_in_flight_};
  req.set_version(kControlVersion);
  req.set_rid(rid);
  auto bytes = EncodeControl(req);
  if (!daemon_->Send(ControlHeader(mytid_.raw(), host_tid_.raw()), bytes)) {
    LostDaemon();
    return Fail(Err::kSysErr);
  }
  for (;;) {
    if (auto it = replies_.find(rid); it != replies_.end()) {
      ctl::Envelope rep = std::move(it->second);
      replies_.erase(it);
      return rep;
    }
    if (!daemon_ || !daemon_->open()) return Fail(Err::kSysErr);
    int wait = -1;
    if (timeout_ms >= 0) {
      const int64_t left = deadline - NowNs();
      if (left <= 0) {
        abandoned_rids_.insert(rid);
        return Fail(Err::kSysErr);
      }
      wait = static_cast<int>(left / 1000000 + 1);
    }
    if (!Progress(wait) && interrupt_mask_ != nullptr) return Fail(Err::kSysErr);
  }
}

Result<std::vector<int>> TaskRuntime::Spawn(const SpawnRequestOptions& o) {
  if (auto st = EnsureEnrolled(); !st) return mpvm::unexpected(st.error());
  if (o.file.empty() || o.ntask < 1) return Fail(Err::kBadParam);
  ctl::Envelope req = NewEnvelope();
  auto* s = req.mutable_spawn();
  s->set_file(o.file);
  for (const auto& a : o.args) s->add_argv(a);
  s->set_flags(o.flags);
  s->set_where(o.where);
  s->set_ntask(o.ntask);
  // PVM_EXPORT names the variables children inherit.
  if (const char* ex = std::getenv("PVM_EXPORT"); ex != nullptr) {
    s->add_env(std::string("PVM_EXPORT=") + ex);
    std::string names = ex;
    size_t pos = 0;
    while (pos <= names.size()) {
      size_t end = names.find(':', pos);
      if (end == std::string::npos) end = names.size();
      std::string n = names.substr(pos, end - pos);
      if (!n.empty())
        if (const char* v = std::getenv(n.c_str()); v != nullptr) s->add_env(n + "=" + v);
      pos = end + 1;
    }
  }
  for (const auto& kv : o.env) s->add_env(kv);
  for (const auto& kv : o.local_env) s->add_local_env(kv);
  s->set_stderr_apart(o.stderr_apart);
  s->set_rank0_stdin(o.rank0_stdin);
  s->set_end_with_spawner(o.end_with_spawner);
  s->set_output_tid(out_tid_);
  s->set_output_code(out_code_);
  s->set_event_sink(o.event_sink);
  s->set_output_ctx(out_ctx_);
  s->set_trace_tid(trace_tid_);
  s->set_trace_code(trace_code_);
  s->set_report_exit(o.report_exit);
  s->set_rank_env(o.rank_env);
  s->set_orphan(o.orphan);
  s->set_ctx(ctx_);
  if (const char* p = std::getenv("PATH"); p != nullptr) s->set_path(p);
  char cwd[4096];
  if (getcwd(cwd, sizeof cwd) != nullptr) s->set_cwd(cwd);
  auto rep = Call(std::move(req));
  if (!rep) return mpvm::unexpected(rep.error());
  if (rep->has_status()) return Fail(FromPvmCode(rep->status().code()));
  if (!rep->has_spawn_reply()) return Fail(Err::kDSysErr);
  return std::vector<int>(rep->spawn_reply().tids().begin(), rep->spawn_reply().tids().end());
}

Status TaskRuntime::Kill(Tid t) {
  if (auto st = EnsureEnrolled(); !st) return st;
  if (!t.is_task()) return Fail(Err::kBadParam);
  ctl::Envelope req = NewEnvelope();
  req.mutable_kill()->set_tid(t.raw());
  return StatusOf(Call(std::move(req)));
}

Result<int> TaskRuntime::Migrate(int tid, const std::string& host) {
  if (auto st = EnsureEnrolled(); !st) return mpvm::unexpected(st.error());
  if (!Tid(tid).is_task() || host.empty()) return Fail(Err::kBadParam);
  ctl::Envelope req = NewEnvelope();
  req.mutable_migrate()->set_tid(tid);
  req.mutable_migrate()->set_host(host);
  migrate_call_ = true;  // we may be the one moving: the answer follows us
  auto rep = Call(std::move(req));
  migrate_call_ = false;
  if (!rep) return mpvm::unexpected(rep.error());
  if (!rep->has_status()) return Fail(Err::kSysErr);
  last_detail_ = rep->status().detail();
  if (rep->status().code() < 0) return Fail(FromPvmCode(rep->status().code()));
  return rep->status().code();
}

Result<int> TaskRuntime::Location(int tid) {
  if (auto st = EnsureEnrolled(); !st) return mpvm::unexpected(st.error());
  if (!Tid(tid).is_task()) return Fail(Err::kBadParam);
  ctl::Envelope req = NewEnvelope();
  req.mutable_location()->set_tid(tid);
  auto rep = Call(std::move(req));
  if (!rep) return mpvm::unexpected(rep.error());
  if (!rep->has_status()) return Fail(Err::kSysErr);
  if (rep->status().code() < 0) return Fail(FromPvmCode(rep->status().code()));
  return rep->status().code();
}

Status TaskRuntime::SendSig(Tid t, int sig) {
  if (auto st = EnsureEnrolled(); !st) return st;
  if (!t.is_task() || sig < 0 || sig >= NSIG) return Fail(Err::kBadParam);
  ctl::Envelope req = NewEnvelope();
  req.mutable_signal()->set_tid(t.raw());
  req.mutable_signal()->set_signum(sig);
  return StatusOf(Call(std::move(req)));
}

Status TaskRuntime::Pstat(Tid t) {
  if (auto st = EnsureEnrolled(); !st) return st;
  if (!t.is_task()) return Fail(Err::kBadParam);
  ctl::Envelope req = NewEnvelope();
  req.mutable_pstat()->set_tid(t.raw());
  return StatusOf(Call(std::move(req)));
}

Result<ctl::ConfigReply> TaskRuntime::Config() {
  if (auto st = EnsureEnrolled(); !st) return mpvm::unexpected(st.error());
  ctl::Envelope req = NewEnvelope();
  req.mutable_config();
  auto rep = Call(std::move(req));
  if (!rep) return mpvm::unexpected(rep.error());
  if (!rep->has_config_reply()) return Fail(Err::kDSysErr);
  return rep->config_reply();
}

Status TaskRuntime::Mstat(const std::string& host) {
  auto conf = Config();
  if (!conf) return mpvm::unexpected(conf.error());
  for (const auto& h : conf->hosts())
    if (h.name() == host) return {};
  return Fail(Err::kNoHost);
}

Result<ctl::TasksReply> TaskRuntime::Tasks(int where) {
  if (auto st = EnsureEnrolled(); !st) return mpvm::unexpected(st.error());
  ctl::Envelope req = NewEnvelope();
  req.mutable_tasks()->set_where(where);
  auto rep = Call(std::move(req));
  if (!rep) return mpvm::unexpected(rep.error());
  if (rep->has_status()) return Fail(FromPvmCode(rep->status().code()));
  if (!rep->has_tasks_reply()) return Fail(Err::kDSysErr);
  if (rep->tasks_reply().code() < 0) return Fail(FromPvmCode(rep->tasks_reply().code()));
  return rep->tasks_reply();
}

Result<int> TaskRuntime::TidToHost(int tid) {
  if (auto st = EnsureEnrolled(); !st) return mpvm::unexpected(st.error());
  Tid t(tid);
  if (!t.is_task() && !t.is_daemon()) return Fail(Err::kBadParam);
  return Tid::DaemonOf(t.host()).raw();
}

Status TaskRuntime::Halt() {
  if (auto st = EnsureEnrolled(); !st) return st;
  ctl::Envelope req = NewEnvelope();
  req.mutable_halt();
  auto rep = Call(std::move(req));
  // Return once the daemon has stopped: it closes our connection last.
  for (int64_t end = NowNs() + 10'000'000'000; enrolled() && NowNs() < end;)
    if (!Progress(100) && interrupt_mask_ != nullptr) break;
  LostDaemon();
  ResetState();
  return StatusOf(rep);
}

Result<int> TaskRuntime::AddHost(const std::string& line) {
  if (auto st = EnsureEnrolled(); !st) return mpvm::unexpected(st.error());
  if (line.empty()) return Fail(Err::kBadParam);
  ctl::Envelope req = NewEnvelope();
  req.mutable_add_host()->set_line(line);
  auto rep = Call(std::move(req));
  if (!rep) return mpvm::unexpected(rep.error());
  if (!rep->has_status()) return Fail(Err::kDSysErr);
  last_detail_ = rep->status().detail();
  if (rep->status().code() < 0) return Fail(FromPvmCode(rep->status().code()));
  return rep->status().code();
}

Status TaskRuntime::DelHost(const std::string& name) {
  if (auto st = EnsureEnrolled(); !st) return st;
  if (name.empty()) return Fail(Err::kBadParam);
  ctl::Envelope req = NewEnvelope();
  req.mutable_del_host()->set_name(name);
  auto rep = Call(std::move(req));
  if (rep && rep->has_status()) last_detail_ = rep->status().detail();
  return StatusOf(rep);
}

Status TaskRuntime::SetWorking(bool working) {
  if (auto st = EnsureEnrolled(); !st) return st;
  in_work_ = working;
  if (!daemon_ || daemon_lost_) return Fail(Err::kSysErr);
  ctl::Envelope note = NewEnvelope();
  note.mutable_work()->set_working(working);
  daemon_->Send(ControlHeader(mytid_.raw(), host_tid_.raw()), EncodeControl(note));
  return {};
}

Result<ctl::Envelope> TaskRuntime::ToolRequest(ctl::Envelope req) {
  if (auto st = EnsureEnrolled(); !st) return mpvm::unexpected(st.error());
  return Call(std::move(req));
}

Result<int> TaskRuntime::NewContext() {
  if (auto st = EnsureEnrolled(); !st) return mpvm::unexpected(st.error());
  ctl::Envelope req = NewEnvelope();
  req.mutable_new_context();
  auto rep = Call(std::move(req));
  if (!rep) return mpvm::unexpected(rep.error());
  if (!rep->has_status()) return Fail(Err::kDSysErr);
  if (rep->status().code() < 0) return Fail(FromPvmCode(rep->status().code()));
  return rep->status().code();
}

int TaskRuntime::SetContext(int ctx) {
  int old = ctx_;
  ctx_ = ctx;
  return old;
}

// ---------------------------------------------------------------------------
// Options

Result<int> TaskRuntime::SetOpt(int what, int val) {
  auto swap = [](int& slot, int v) {
    int old = slot;
    slot = v;
    return old;
  };
  switch (what) {
    case kOptRoute:
      if (val < 1 || val > 3) return Fail(Err::kBadParam);
      return swap(route_, val);
    case kOptDebugMask:
      return swap(debugmask_, val);
    case kOptAutoErr:
      if (val < 0 || val > 3) return Fail(Err::kBadParam);
      return swap(autoerr_, val);
    case kOptOutputTid:
      return swap(out_tid_, val);
    case kOptOutputCode:
      return swap(out_code_, val);
    case kOptOutputContext:
      return swap(out_ctx_, val);
    case kOptTraceTid:
      return swap(trace_tid_, val);
    case kOptTraceCode:
      return swap(trace_code_, val);
    case kOptTraceContext:
      return swap(trace_ctx_, val);
    case kOptPollTime: {  // microseconds a receive busy-polls before it sleeps
      if (val < 0) return Fail(Err::kBadParam);
      int old = static_cast<int>(spin_ns_ / 1000);
      spin_ns_ = int64_t{val} * 1000;
      return old;
    }
    case kOptTraceBuffer:
    case kOptTraceOptions:
    case kOptSelfTraceBuffer:
    case kOptSelfTraceOptions:
    case kOptPollType:
      return 0;  // accepted; tracing has no effect here
    case kOptFragSize:
      if (val <= 0) return Fail(Err::kBadParam);
      return swap(fragsize_, val);
    case kOptResvTids:
      return swap(resvtids_, val);
    case kOptSelfOutputTid:
    case kOptSelfOutputCode:
    case kOptSelfOutputContext: {
      // The daemon carries our stdout: tell it where to send it now. As in
      // PVM, this also becomes the setting for children.
      int tid = self_out_tid_, code = self_out_code_, ctx = self_out_ctx_;
      int& slot = what == kOptSelfOutputTid ? tid : what == kOptSelfOutputCode ? code : ctx;
      const int old = slot;
      slot = val;
      if (auto st = EnsureEnrolled(); !st) return mpvm::unexpected(st.error());
      ctl::Envelope req = NewEnvelope();
      req.mutable_set_output()->set_tid(tid);
      req.mutable_set_output()->set_code(code);
      req.mutable_set_output()->set_ctx(ctx);
      if (auto st = StatusOf(Call(std::move(req))); !st) return mpvm::unexpected(st.error());
      self_out_tid_ = out_tid_ = tid;
      self_out_code_ = out_code_ = code;
      self_out_ctx_ = out_ctx_ = ctx;
      return old;
    }
    case kOptSelfTraceTid:
      return swap(trace_tid_, val);
    case kOptSelfTraceCode:
      return swap(trace_code_, val);
    case kOptSelfTraceContext:
      return swap(trace_ctx_, val);
    case kOptShowTids:
      return swap(showtids_, val);
    case kOptNoReset:
      return swap(noreset_, val);
    default:
      return Fail(Err::kBadParam);
  }
}

Result<int> TaskRuntime::GetOpt(int what) {
  switch (what) {
    case kOptRoute:
      return route_;
    case kOptDebugMask:
      return debugmask_;
    case kOptAutoErr:
      return autoerr_;
    case kOptOutputTid:
      return out_tid_;
    case kOptOutputCode:
      return out_code_;
    case kOptOutputContext:
      return out_ctx_;
    case kOptTraceTid:
    case kOptSelfTraceTid:
      return trace_tid_;
    case kOptTraceCode:
    case kOptSelfTraceCode:
      return trace_code_;
    case kOptTraceContext:
    case kOptSelfTraceContext:
      return trace_ctx_;
    case kOptTraceBuffer:
    case kOptTraceOptions:
    case kOptSelfTraceBuffer:
    case kOptSelfTraceOptions:
      return 0;
    case kOptPollTime:
      return static_cast<int>(spin_ns_ / 1000);
    case kOptPollType:
      return 1;
    case kOptFragSize:
      return fragsize_;
    case kOptResvTids:
      return resvtids_;
    case kOptSelfOutputTid:
      return self_out_tid_;
    case kOptSelfOutputCode:
      return self_out_code_;
    case kOptSelfOutputContext:
      return self_out_ctx_;
    case kOptShowTids:
      return showtids_;
    case kOptNoReset:
      return noreset_;
    default:
      return Fail(Err::kBadParam);
  }
}

// ---------------------------------------------------------------------------
// Buffers

int TaskRuntime::NewBufId(std::unique_ptr<Message> m) {
  while (bufs_.contains(next_bufid_) || next_bufid_ <= 0) {
    next_bufid_ = next_bufid_ <= 0 ? 1 : next_bufid_ + 1;
  }
  int id = next_bufid_++;
  bufs_.emplace(id, std::move(m));
  return id;
}

Result<int> TaskRuntime::MkBuf(int encoding) {
  if (encoding != kEncDefault && encoding != kEncRaw && encoding != kEncInPlace &&
      encoding != kEncTrace)
    return Fail(Err::kBadParam);
  return NewBufId(std::make_unique<Message>(encoding == kEncTrace ? kEncDefault : encoding));
}

Result<int> TaskRuntime::InitSend(int encoding) {
  auto id = MkBuf(encoding);
  if (!id) return id;
  if (sbuf_ != 0) bufs_.erase(sbuf_);
  sbuf_ = *id;
  return *id;
}

Status TaskRuntime::FreeBuf(int bufid) {
  if (bufid < 0) return Fail(Err::kBadParam);
  auto it = bufs_.find(bufid);
  if (it == bufs_.end()) return Fail(Err::kNoSuchBuf);
  if (std::find(queue_.begin(), queue_.end(), bufid) != queue_.end())
    return Fail(Err::kNoSuchBuf);  // still an unreceived message
  bufs_.erase(it);
  if (sbuf_ == bufid) sbuf_ = 0;
  if (rbuf_ == bufid) rbuf_ = 0;
  if (probe_buf_ == bufid) probe_buf_ = 0;
  return {};
}

Result<int> TaskRuntime::SetSbuf(int bufid) {
  if (bufid < 0) return Fail(Err::kBadParam);
  if (bufid != 0 && !bufs_.contains(bufid)) return Fail(Err::kNoSuchBuf);
  int old = sbuf_;
  sbuf_ = bufid;
  return old;
}

Result<int> TaskRuntime::SetRbuf(int bufid) {
  if (bufid < 0) return Fail(Err::kBadParam);
  if (bufid != 0 && !bufs_.contains(bufid)) return Fail(Err::kNoSuchBuf);
  int old = rbuf_;
  rbuf_ = bufid;
  if (bufid != 0) bufs_[bufid]->Rewind();
  return old;
}

Result<Message*> TaskRuntime::Buffer(int bufid) {
  if (bufid < 0) return Fail(Err::kBadParam);
  auto it = bufs_.find(bufid);
  if (it == bufs_.end()) return Fail(Err::kNoSuchBuf);
  return it->second.get();
}

Result<Message*> TaskRuntime::SendBuffer() {
  if (sbuf_ == 0) return Fail(Err::kNoBuf);
  return Buffer(sbuf_);
}

Result<Message*> TaskRuntime::RecvBuffer() {
  if (rbuf_ == 0) return Fail(Err::kNoBuf);
  return Buffer(rbuf_);
}

// ---------------------------------------------------------------------------
// Sending

Connection* TaskRuntime::RouteTo(Tid dst) {
  if (route_ == kRouteDont || !dst.is_task()) return daemon_.get();
  Peer& p = peers_[dst.raw()];
  if (p.conn != nullptr && p.conn->open()) return p.conn;
  const int64_t now = NowNs();
  // A task that runs on this host listens on a socket in the host's run
  // directory, wherever it was born (a moved task's tid names its birth host).
  if (now >= p.retry_after_ns) {
    int fd = ConnectUnix(TaskSocketPath(rundir_, dst));
    if (fd >= 0) {
      conns_.push_back(std::make_unique<Connection>(fd));
      p.conn = conns_.back().get();
      return p.conn;
    }
    p.retry_after_ns = now + 20'000'000;  // not listening here (yet): try again in 20 ms
  }
  // Not listening here (on another host, not started yet, or gone): a
  // direct TCP link (authenticated) once the daemons say where it is, tried
  // again with a growing wait if it fails. Frames go through the daemons
  // meanwhile, and the sequence numbers keep their order when the link
  // takes over.
  if (link_key_ && !p.connecting && now >= p.locate_after_ns) AskWhere(dst);
  return daemon_.get();
}

void TaskRuntime::AskWhere(Tid dst) {
  if (!daemon_ || !daemon_->open()) return;
  ctl::Envelope req = NewEnvelope();
  req.set_version(kControlVersion);
  const uint64_t rid = next_rid_++;
  req.set_rid(rid);
  req.mutable_locate()->set_tid(dst.raw());
  if (!daemon_->Send(ControlHeader(mytid_.raw(), host_tid_.raw()), EncodeControl(req))) {
    LostDaemon();
    return;
  }
  locating_[rid] = dst.raw();
  peers_[dst.raw()].connecting = true;
}

void TaskRuntime::OnLocated(Tid dst, const ctl::Envelope& rep) {
  const bool debug = debugmask_ != 0 || CurrentSettings().debug;
  peers_[dst.raw()].connecting = false;
  if (!rep.has_locate_reply() || rep.locate_reply().code() != 0) {
    if (debug)
      std::fprintf(stderr, "libpvm [%s]: no direct link to %s yet (%s); relaying\n",
                   mytid_.str().c_str(), dst.str().c_str(),
                   rep.has_locate_reply() ? rep.locate_reply().detail().c_str() : "no answer");
    BackOffLink(dst);
    return;
  }
  const auto& where = rep.locate_reply();
  int fd = StartConnectTcp(where.addr(), static_cast<uint16_t>(where.port()));
  if (fd < 0) {
    if (debug)
      std::fprintf(stderr, "libpvm [%s]: cannot connect to %s at %s:%d: %s; relaying\n",
                   mytid_.str().c_str(), dst.str().c_str(), where.addr().c_str(), where.port(),
                   std::strerror(-fd));
    BackOffLink(dst);
    return;
  }
  auto hs =
      std::make_unique<ConnectingHandshake>(fd, *link_key_, mytid_.raw(), dst.raw(), link_encrypt_);
  hs->deadline_ns = NowNs() + 2'000'000'000;
  handshakes_.push_back(std::move(hs));
  peers_[dst.raw()].connecting = true;
}

void TaskRuntime::BackOffLink(Tid dst) {
  Peer& p = peers_[dst.raw()];
  p.connecting = false;
  p.backoff_ns = std::clamp<int64_t>(p.backoff_ns * 2, 20'000'000, 2'000'000'000);
  p.locate_after_ns = NowNs() + p.backoff_ns;
}

void TaskRuntime::StepLinkHandshakes(const pollfd* polled) {
  const int64_t now = NowNs();
  std::vector<std::unique_ptr<LinkHandshake>> ended;
  std::vector<LinkHandshake::State> how;
  auto keep = handshakes_.begin();
  for (auto& hs : handshakes_) {
    const bool ready = (polled++)->revents != 0;
    auto st = ready ? hs->Step() : LinkHandshake::State::kPending;
    if (st == LinkHandshake::State::kPending && now > hs->deadline_ns)
      st = LinkHandshake::State::kFailed;
    if (st == LinkHandshake::State::kPending) {
      *keep++ = std::move(hs);
    } else {
      ended.push_back(std::move(hs));
      how.push_back(st);
    }
  }
  handshakes_.erase(keep, handshakes_.end());
  for (size_t i = 0; i < ended.size(); ++i) LinkHandshakeEnded(*ended[i], how[i]);
}

void TaskRuntime::LinkHandshakeEnded(LinkHandshake& hs, LinkHandshake::State st) {
  if (st == LinkHandshake::State::kDone) {
    conns_.push_back(std::make_unique<Connection>(hs.fd()));
    Connection* c = conns_.back().get();
    c->peer_tid = hs.peer();
    if (auto cipher = hs.TakeCipher()) c->EnableCipher(std::move(cipher));
    if (hs.outgoing()) {
      Peer& p = peers_[hs.peer()];
      p.conn = c;
      p.connecting = false;
      p.backoff_ns = 0;
      if (debugmask_ != 0 || CurrentSettings().debug) {
        sockaddr_in a{};
        socklen_t len = sizeof a;
        char ip[INET_ADDRSTRLEN] = "?";
        if (getpeername(c->fd(), reinterpret_cast<sockaddr*>(&a), &len) == 0)
          inet_ntop(AF_INET, &a.sin_addr, ip, sizeof ip);
        std::fprintf(stderr, "libpvm [%s]: direct link to %s at %s:%d%s\n", mytid_.str().c_str(),
                     Tid(hs.peer()).str().c_str(), ip, ntohs(a.sin_port),
                     c->encrypted() ? " (encrypted)" : "");
      }
    }
    return;
  }
  close(hs.fd());
  const bool debug = debugmask_ != 0 || CurrentSettings().debug;
  const std::string why = hs.error().empty() ? "no handshake in time" : hs.error();
  if (hs.outgoing()) {
    // The peer may be moving or gone: its frames keep going through the daemons.
    BackOffLink(Tid(hs.peer()));
    if (debug)
      std::fprintf(stderr, "libpvm [%s]: direct link to %s failed: %s; relaying\n",
                   mytid_.str().c_str(), Tid(hs.peer()).str().c_str(), why.c_str());
    return;
  }
  // Say so when a caller failed to prove itself; a caller that went away (or
  // stalled) mid-handshake is only news when debugging.
  const bool quiet = hs.error().empty() || hs.error().starts_with("closed");
  if (!quiet || debug)
    std::fprintf(stderr, "libpvm [%s]: refused a link from another host: %s\n",
                 mytid_.str().c_str(), why.c_str());
}

bool TaskRuntime::SettleLinkHandshakes() {
  auto keep = handshakes_.begin();
  for (auto& hs : handshakes_) {
    if (!hs->outgoing()) {
      *keep++ = std::move(hs);
      continue;
    }
    close(hs->fd());
    peers_[hs->peer()].connecting = false;
  }
  handshakes_.erase(keep, handshakes_.end());
  // Answers still to come go to this daemon link, which the move hands
  // over: asked again from the new host. If the move fails, they come here
  // and are dropped.
  for (const auto& [rid, dst] : locating_) {
    peers_[dst].connecting = false;
    abandoned_rids_.insert(rid);
  }
  locating_.clear();
  return handshakes_.empty();
}

void TaskRuntime::AcceptLinks() {
  for (;;) {
    int fd = accept4(tcp_listen_fd_, nullptr, nullptr, SOCK_CLOEXEC | SOCK_NONBLOCK);
    if (fd < 0) break;
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    auto hs = std::make_unique<AcceptHandshake>(fd, *link_key_, mytid_.raw(), link_encrypt_);
    hs->deadline_ns = NowNs() + 5'000'000'000;  // a silent caller is dropped after 5 s
    handshakes_.push_back(std::move(hs));
  }
}

Status TaskRuntime::SendData(Tid dst, int tag, Message& m) {
  m.Flatten();
  auto aux = m.EncodeTypeMap();
  FrameHeader h;
  h.kind = FrameKind::kData;
  h.encoding = static_cast<uint8_t>(m.encoding() == kEncInPlace ? kEncRaw : m.encoding());
  h.src = mytid_.raw();
  h.dst = dst.raw();
  h.tag = tag;
  h.ctx = ctx_;
  if (dst == mytid_) {
    std::vector<uint8_t> payload(aux.begin(), aux.end());
    payload.insert(payload.end(), m.body().begin(), m.body().end());
    Message copy =
        Message::FromWire(h.encoding, std::move(payload), static_cast<uint32_t>(aux.size()));
    copy.src = h.src;
    copy.dst = h.dst;
    copy.tag = tag;
    copy.ctx = ctx_;
    Deliver(std::move(copy));
    return {};
  }
  h.seq = ++send_seq_[dst.raw()];
  if (dst.is_task()) {
    const int64_t now = NowNs();
    sent_.Keep(h, aux, m.body(), now);  // until dst acknowledges it
    traffic_.Count(dst.raw(), aux.size() + m.body().size());
    ReportTraffic(now);
  }
  Connection* c = RouteTo(dst);
  if (c != daemon_.get() && c->Send(h, aux, m.body())) {
    ++c->sends_unlooked;
    return {};
  }
  if (c != daemon_.get()) peers_.erase(dst.raw());  // peer gone: try the relay
  if (!daemon_ || !daemon_->Send(h, aux, m.body())) {
    LostDaemon();
    return Fail(Err::kSysErr);
  }
  // Keep data moving without waiting for the next blocking call.
  if (daemon_->wants_write()) daemon_->Flush();
  return {};
}

void TaskRuntime::ReportTraffic(int64_t now_ns) {
  auto due = traffic_.Due(now_ns);
  if (!due || !daemon_ || daemon_lost_) return;
  ctl::Envelope note = NewEnvelope();
  *note.mutable_traffic() = std::move(*due);
  daemon_->Send(ControlHeader(mytid_.raw(), host_tid_.raw()), EncodeControl(note));
}

Status TaskRuntime::Send(int tid, int tag) {
  if (auto st = EnsureEnrolled(); !st) return st;
  Tid t(tid);
  if (!t.is_task() && !t.is_daemon()) return Fail(Err::kBadParam);
  if (tag < 0) return Fail(Err::kBadParam);
  auto m = SendBuffer();
  if (!m) return mpvm::unexpected(m.error());
  auto st = SendData(t, tag, **m);
  Progress(0);
  return st;
}

Status TaskRuntime::Mcast(const int* tids, int n, int tag) {
  if (auto st = EnsureEnrolled(); !st) return st;
  if (n < 0 || (n > 0 && tids == nullptr) || tag < 0) return Fail(Err::kBadParam);
  auto m = SendBuffer();
  if (!m) return mpvm::unexpected(m.error());
  for (int i = 0; i < n; ++i)
    if (!Tid(tids[i]).is_task()) return Fail(Err::kBadParam);
  std::set<int> done;
  for (int i = 0; i < n; ++i) {
    if (tids[i] == mytid_.raw() || !done.insert(tids[i]).second) continue;
    if (auto st = SendData(Tid(tids[i]), tag, **m); !st) return st;
  }
  Progress(0);
  return {};
}

// ---------------------------------------------------------------------------
// Receiving

namespace {

// Keeps SIGMIGRATE blocked from the boundary check to the wait, which
// unblocks it atomically (ppoll): a move asked for in between interrupts the
// wait, instead of waiting for the next message to arrive.
class MigrateSignalGuard {
 public:
  explicit MigrateSignalGuard(bool on) : on_(on) {
    if (!on_) return;
    sigset_t m;
    sigemptyset(&m);
    sigaddset(&m, MigrateSignal());
    sigprocmask(SIG_BLOCK, &m, &before_);
  }
  ~MigrateSignalGuard() {
    if (on_) sigprocmask(SIG_SETMASK, &before_, nullptr);
  }
  // The mask to wait with: `mask` (or the one before), SIGMIGRATE let in.
  // It lies in the library's wait area: the daemon interrupts this wait.
  const sigset_t* WaitMask(const sigset_t* mask) {
    if (!on_) return mask;
    sigset_t& wait = LibraryWaits().mask;
    wait = mask != nullptr ? *mask : before_;
    sigdelset(&wait, MigrateSignal());
    return &wait;
  }

 private:
  bool on_;
  sigset_t before_{};
};

}  // namespace

bool TaskRuntime::Progress(int timeout_ms) {
  MigrateSignalGuard guard(Migratable());
  const uint64_t handled = frames_handled_;
  AtBoundary();  // a move asked for while in the library happens here
  // A copy that resumed there took in frames as it re-enrolled (what was
  // held for it): its caller must see them before anything more comes.
  if (frames_handled_ != handled) timeout_ms = 0;
  ProbeDue();
  SendDueAcks(false);
  timeout_ms = CapWait(timeout_ms);
  PollSet ps;
  BuildPollSet(ps, &timeout_ms);
  if (ps.fds.empty()) return true;
  int n;
  if (wait_sigmask_ == nullptr) wait_sigmask_ = interrupt_mask_;
  if (const sigset_t* mask = guard.WaitMask(wait_sigmask_); mask != nullptr) {
    timespec ts{timeout_ms / 1000, (timeout_ms % 1000) * 1000000L};
    n = ppoll(ps.fds.data(), ps.fds.size(), timeout_ms < 0 ? nullptr : &ts, mask);
  } else {
    n = poll(ps.fds.data(), ps.fds.size(), timeout_ms);
  }
  if (wait_sigmask_ == interrupt_mask_) wait_sigmask_ = nullptr;
  if (n < 0) {
    if (errno != EINTR) return true;
    AtBoundary();
    return false;
  }
  // A link with nothing to read had no kMoved on it: what was sent on it so
  // far went where its peer was.
  for (size_t i = 0; i < ps.who.size(); ++i)
    if (ps.who[i] != nullptr && (ps.fds[i].revents & (POLLIN | POLLHUP | POLLERR)) == 0)
      ps.who[i]->sends_unlooked = 0;
  if (!handshakes_.empty() || tcp_listen_fd_ >= 0) {
    const bool accept_ready = tcp_listen_fd_ >= 0 && ps.fds[ps.first_link_fd].revents != 0;
    StepLinkHandshakes(ps.fds.data() + ps.first_link_fd + (tcp_listen_fd_ >= 0 ? 1 : 0));
    if (accept_ready) AcceptLinks();
  }
  if (n == 0) return true;
  for (size_t i = 0; i < ps.who.size(); ++i)
    if (ps.fds[i].revents != 0) ServeReady(ps.who[i], ps.fds[i].revents);
  SendDueAcks(false);
  SweepClosed();
  return true;
}

void TaskRuntime::BuildPollSet(PollSet& ps, int* timeout_ms) const {
  ps.fds.reserve(conns_.size() + 2);
  if (daemon_ && daemon_->open()) {
    ps.fds.push_back(
        {daemon_->fd(), static_cast<short>(POLLIN | (daemon_->wants_write() ? POLLOUT : 0)), 0});
    ps.who.push_back(daemon_.get());
  }
  if (listen_fd_ >= 0) {
    ps.fds.push_back({listen_fd_, POLLIN, 0});
    ps.who.push_back(nullptr);
  }
  for (auto& c : conns_) {
    if (!c->open()) continue;
    ps.fds.push_back({c->fd(), static_cast<short>(POLLIN | (c->wants_write() ? POLLOUT : 0)), 0});
    ps.who.push_back(c.get());
  }
  // Links across hosts being set up: after the connections, by position.
  ps.first_link_fd = ps.fds.size();
  if (tcp_listen_fd_ >= 0) ps.fds.push_back({tcp_listen_fd_, POLLIN, 0});
  for (auto& hs : handshakes_) ps.fds.push_back({hs->fd(), hs->events(), 0});
  if (!handshakes_.empty()) {
    // Wake in time to drop a handshake that stalls.
    int64_t soonest = handshakes_.front()->deadline_ns;
    for (auto& hs : handshakes_) soonest = std::min(soonest, hs->deadline_ns);
    const int until = static_cast<int>(std::max<int64_t>(0, soonest - NowNs()) / 1000000 + 1);
    if (*timeout_ms < 0 || *timeout_ms > until) *timeout_ms = until;
  }
}

void TaskRuntime::ServeReady(Connection* c, short revents) {
  if (c == nullptr) {  // the listener: tasks of this host linking to this one
    for (;;) {
      int fd = accept4(listen_fd_, nullptr, nullptr, SOCK_CLOEXEC | SOCK_NONBLOCK);
      if (fd < 0) break;
      conns_.push_back(std::make_unique<Connection>(fd));
    }
    return;
  }
  if (revents & POLLOUT) c->Flush();
  if (!c->open() || !(revents & (POLLIN | POLLHUP | POLLERR))) return;
  auto rr = c->ReadAvailable();
  Frame f;
  for (;;) {
    auto st = c->reader().Next(f);
    if (st == FrameReader::Status::kFrame) {
      HandleFrame(c, std::move(f));
      continue;
    }
    if (st == FrameReader::Status::kError) rr = Connection::ReadResult::kError;
    break;
  }
  if (c->drained()) c->sends_unlooked = 0;  // a kMoved was in it, or not there yet
  if (rr != Connection::ReadResult::kOk) LinkEnded(c, rr);
}

void TaskRuntime::LinkEnded(Connection* c, Connection::ReadResult rr) {
  if (debugmask_ != 0 || CurrentSettings().debug)
    std::fprintf(stderr, "libpvm [%s]: %s link closed (%s)\n", mytid_.str().c_str(),
                 c == daemon_.get() ? "daemon" : "task",
                 rr == Connection::ReadResult::kClosed ? "end of stream"
                 : c->reader().error() == FrameError::kBadMagic && errno != 0
                     ? std::strerror(errno)
                     : std::string(FrameErrorText(c->reader().error())).c_str());
  if (c == daemon_.get()) {
    LostDaemon();
    return;
  }
  // What went on it and is not acknowledged may be lost: ask.
  for (const auto& [peer, p] : peers_)
    if (p.conn == c) sent_.ProbeNow(peer, NowNs());
  if (c->peer_tid != 0) sent_.ProbeNow(c->peer_tid, NowNs());
  c->Close();
}

void TaskRuntime::SweepClosed() {
  for (auto& c : conns_)
    if (c->open() && c->close_when_flushed() && !c->wants_write()) c->Close();
  for (auto it = peers_.begin(); it != peers_.end();) {
    if (it->second.conn != nullptr && !it->second.conn->open()) {
      it = peers_.erase(it);
    } else {
      ++it;
    }
  }
  std::erase_if(conns_, [](const std::unique_ptr<Connection>& c) { return !c->open(); });
}

void TaskRuntime::HandleFrame(Connection* from, Frame&& f) {
  ++frames_handled_;
  // A link authenticated as task X carries data from X only; control comes
  // from the daemon alone.
  if (from != daemon_.get() && (f.header.kind == FrameKind::kControl ||
                                (from->peer_tid != 0 && f.header.src != from->peer_tid))) {
    std::fprintf(
        stderr, "libpvm [%s]: dropped a link that sent %s\n", mytid_.str().c_str(),
        f.header.kind == FrameKind::kControl ? "a control frame" : "a frame for another sender");
    from->Close();
    return;
  }
  if (f.header.kind == FrameKind::kAck) {
    OnAck(f.header);
    return;
  }
  if (f.header.kind == FrameKind::kMoved) {
    // The task at the other end moved; its old daemon reads this link to the
    // end. Send to it afresh from now on, once what is queued here is out.
    if (from == daemon_.get()) return;
    ++stale_sends_[std::min<size_t>(from->sends_unlooked, stale_sends_.size() - 1)];
    if (auto p = peers_.find(f.header.src); p != peers_.end() && p->second.conn == from)
      peers_.erase(p);
    from->CloseWhenFlushed();
    return;
  }
  if (f.header.kind == FrameKind::kControl) {
    auto env = DecodeControl(f.payload);
    if (!env) return;  // not ours to act on; the daemon logs its own errors
    if (env->has_task_ended()) {
      const auto& te = env->task_ended();
      ended_.push_back({Tid(te.tid()), te.exit_code(), te.term_signal(), te.host_died()});
      return;
    }
    if (auto l = locating_.find(env->rid()); l != locating_.end()) {
      const Tid dst(l->second);
      locating_.erase(l);
      OnLocated(dst, *env);
      return;
    }
    if (abandoned_rids_.erase(env->rid()) > 0) return;  // its caller gave up waiting
    replies_[env->rid()] = std::move(*env);
    return;
  }
  const FrameHeader& h = f.header;
  ++hop_counts_[static_cast<size_t>(FrameHops(h))];
  Message m = Message::FromWire(h.encoding, std::move(f.payload), h.aux_length);
  m.src = h.src;
  m.dst = h.dst;
  m.tag = h.tag;
  m.ctx = h.ctx;
  if (from != daemon_.get() && !from->close_when_flushed()) {
    Peer& p = peers_[h.src];  // reuse an inbound link for replies
    if (p.conn == nullptr) p.conn = from;
  }
  DeliverInOrder(h, std::move(m));
}

void TaskRuntime::DeliverInOrder(const FrameHeader& h, Message&& m) {
  if (h.seq == 0) {
    Deliver(std::move(m));
    return;
  }
  RecvState& rs = recv_state_[h.src];
  if (h.seq < rs.expected) return;  // duplicate
  if (h.seq > rs.expected) {
    rs.held.emplace(h.seq, std::move(m));
    return;
  }
  Deliver(std::move(m));
  ++rs.expected;
  while (!rs.held.empty() && rs.held.begin()->first == rs.expected) {
    Deliver(std::move(rs.held.begin()->second));
    rs.held.erase(rs.held.begin());
    ++rs.expected;
  }
  acks_.Received(h.src, rs.expected - 1, NowNs(), h.length);
}

void TaskRuntime::Deliver(Message&& m) {
  if (catch_file_ != nullptr && m.ctx == kSystemCtx && m.tag == kOutputTag) {
    HandleOutput(m);
    return;
  }
  queue_.push_back(NewBufId(std::make_unique<Message>(std::move(m))));
}

void TaskRuntime::HandleOutput(Message& m) {
  int head[2];
  if (!m.Unpack(DataType::kInt, head, 2, 1)) return;
  const int tid = head[0], count = head[1];
  std::string& part = partial_lines_[tid];
  auto emit = [&](std::string_view line) {
    if (showtids_)
      std::fprintf(catch_file_, "[%s] %.*s\n", Tid(tid).str().c_str(),
                   static_cast<int>(line.size()), line.data());
    else
      std::fprintf(catch_file_, "%.*s\n", static_cast<int>(line.size()), line.data());
  };
  if (count == -1) {  // a child started: PVM marks the stream's beginning
    open_outputs_.insert(tid);
    if (showtids_) emit("BEGIN");
  } else if (count > 0) {
    std::string data(static_cast<size_t>(count), '\0');
    if (!m.Unpack(DataType::kByte, data.data(), count, 1)) return;
    part += data;
    size_t nl;
    while ((nl = part.find('\n')) != std::string::npos) {
      emit(std::string_view(part).substr(0, nl));
      part.erase(0, nl + 1);
    }
  } else if (count == 0) {
    if (!part.empty()) emit(part);
    if (showtids_) emit("EOF");
    partial_lines_.erase(tid);
    open_outputs_.erase(tid);
  }
  std::fflush(catch_file_);
}

void TaskRuntime::RunHandlers() {
  if (in_handler_ || handlers_.empty()) return;
  for (size_t i = 0; i < queue_.size();) {
    const Message& m = *bufs_[queue_[i]];
    const Handler* h = nullptr;
    for (const Handler& cand : handlers_)
      if ((cand.src == -1 || cand.src == m.src) && (cand.tag == -1 || cand.tag == m.tag) &&
          (cand.ctx == -1 || cand.ctx == m.ctx)) {
        h = &cand;
        break;
      }
    if (h == nullptr) {
      ++i;
      continue;
    }
    int id = queue_[i];
    queue_.erase(queue_.begin() + static_cast<ptrdiff_t>(i));
    int saved = rbuf_;
    rbuf_ = id;
    in_handler_ = true;
    auto fn = h->fn;
    fn(id);
    in_handler_ = false;
    bufs_.erase(id);
    rbuf_ = bufs_.contains(saved) ? saved : 0;
    i = 0;  // the handler may have changed the queue
  }
}

std::optional<size_t> TaskRuntime::FindMatch(int tid, int tag, int* err) {
  *err = 0;
  if (matchfn_ == nullptr) {
    for (size_t i = 0; i < queue_.size(); ++i) {
      const Message& m = *bufs_[queue_[i]];
      if ((tid == -1 || m.src == tid) && (tag == -1 || m.tag == tag) && m.ctx == ctx_) return i;
    }
    return std::nullopt;
  }
  std::optional<size_t> best;
  int best_rank = 1;
  for (size_t i = 0; i < queue_.size(); ++i) {
    int r = matchfn_(queue_[i], tid, tag);
    if (r < 0) {
      *err = r;
      return std::nullopt;
    }
    if (r == 1) return i;
    if (r > best_rank) {
      best_rank = r;
      best = i;
    }
  }
  return best;
}

int TaskRuntime::AdoptReceived(size_t index) {
  int id = queue_[index];
  queue_.erase(queue_.begin() + static_cast<ptrdiff_t>(index));
  if (rbuf_ != 0 && rbuf_ != id) {
    bufs_.erase(rbuf_);
    if (sbuf_ == rbuf_) sbuf_ = 0;
  }
  rbuf_ = id;
  bufs_[id]->Rewind();
  return id;
}

Result<int> TaskRuntime::Trecv(int tid, int tag, long timeout_us) {
  if (auto st = EnsureEnrolled(); !st) return mpvm::unexpected(st.error());
  if (tid != -1 && !Tid(tid).is_task() && !Tid(tid).is_daemon()) return Fail(Err::kBadParam);
  if (tag < -1) return Fail(Err::kBadParam);
  const int64_t deadline = timeout_us < 0 ? INT64_MAX : NowNs() + int64_t{timeout_us} * 1000;
  bool first = true;
  for (;;) {
    RunHandlers();
    int err;
    auto idx = FindMatch(tid, tag, &err);
    if (err < 0) return Fail(FromPvmCode(err));
    if (idx) return AdoptReceived(*idx);
    if (!enrolled()) return Fail(Err::kSysErr);
    const int64_t now = NowNs();
    if (!first && now >= deadline) return 0;
    first = false;
    int wait_ms = -1;
    if (deadline != INT64_MAX) {
      int64_t left = deadline - now;
      wait_ms = left <= 0 ? 0 : static_cast<int>((left + 999'999) / 1'000'000);
    }
    // Poll without sleeping for a short while first: a reply that is a few
    // microseconds away is then picked up without a scheduler round trip.
    // Not when the sender may need this CPU (spin.h).
    if (wait_ms != 0 && spin_ns_ > 0 && spin_policy_.Allowed(now)) {
      const int64_t spin_end = NowNs() + spin_ns_;
      size_t before = queue_.size();
      while (queue_.size() == before && NowNs() < spin_end && enrolled()) Progress(0);
      if (queue_.size() != before) continue;
    }
    Progress(wait_ms);
  }
}

Result<int> TaskRuntime::Recv(int tid, int tag) { return Trecv(tid, tag, -1); }

Result<int> TaskRuntime::Nrecv(int tid, int tag) { return Trecv(tid, tag, 0); }

Result<int> TaskRuntime::Probe(int tid, int tag) {
  if (auto st = EnsureEnrolled(); !st) return mpvm::unexpected(st.error());
  if (tid != -1 && !Tid(tid).is_task() && !Tid(tid).is_daemon()) return Fail(Err::kBadParam);
  if (tag < -1) return Fail(Err::kBadParam);
  Progress(0);
  RunHandlers();
  int err;
  auto idx = FindMatch(tid, tag, &err);
  if (err < 0) return Fail(FromPvmCode(err));
  return idx ? queue_[*idx] : 0;
}

TaskRuntime::MatchFn TaskRuntime::SetMatchFn(MatchFn f) {
  MatchFn old = matchfn_;
  matchfn_ = f;
  return old;
}

std::optional<Message> TaskRuntime::TakeMessage(int tid, int tag, int ctx) {
  for (size_t i = 0; i < queue_.size(); ++i) {
    Message& m = *bufs_[queue_[i]];
    if ((tid == -1 || m.src == tid) && (tag == -1 || m.tag == tag) && m.ctx == ctx) {
      Message out = std::move(m);
      bufs_.erase(queue_[i]);
      queue_.erase(queue_.begin() + static_cast<ptrdiff_t>(i));
      out.Rewind();
      return out;
    }
  }
  return std::nullopt;
}

bool TaskRuntime::WaitActivity(int timeout_ms, const sigset_t* sigmask) {
  wait_sigmask_ = sigmask;
  bool ok = Progress(timeout_ms);
  wait_sigmask_ = nullptr;
  return ok && !daemon_lost_;
}

Result<int> TaskRuntime::AddHandler(int src, int tag, int ctx, int (*fn)(int)) {
  if (fn == nullptr) return Fail(Err::kBadParam);
  handlers_.push_back({next_handler_, src, tag, ctx, fn});
  return next_handler_++;
}

Status TaskRuntime::DelHandler(int id) {
  auto it = std::find_if(handlers_.begin(), handlers_.end(),
                         [&](const Handler& h) { return h.id == id; });
  if (it == handlers_.end()) return Fail(id < 0 ? Err::kBadParam : Err::kNotFound);
  handlers_.erase(it);
  return {};
}

// ---------------------------------------------------------------------------
// Notify, output, mailbox, groups

Status TaskRuntime::Notify(int what, int tag, const int* tids, int count) {
  if (auto st = EnsureEnrolled(); !st) return st;
  const int kind = what & ~kNotifyCancel;
  if (kind != kNotifyTaskExit && kind != kNotifyHostDelete && kind != kNotifyHostAdd)
    return Fail(Err::kBadParam);
  if (tag < 0 && !(what & kNotifyCancel)) return Fail(Err::kBadParam);
  if (kind != kNotifyHostAdd && (count < 0 || (count > 0 && tids == nullptr)))
    return Fail(Err::kBadParam);
  ctl::Envelope req = NewEnvelope();
  auto* n = req.mutable_notify();
  n->set_what(kind);
  n->set_tag(tag);
  n->set_ctx(ctx_);
  n->set_cancel((what & kNotifyCancel) != 0);
  if (kind == kNotifyHostAdd) {
    n->set_count(count);
  } else {
    for (int i = 0; i < count; ++i) {
      if (kind == kNotifyTaskExit && !Tid(tids[i]).is_task()) return Fail(Err::kBadParam);
      n->add_tids(tids[i]);
    }
  }
  return StatusOf(Call(std::move(req)));
}

Status TaskRuntime::CatchOut(FILE* f) {
  if (auto st = EnsureEnrolled(); !st) return st;
  catch_file_ = f;
  if (f != nullptr) {
    out_tid_ = mytid_.raw();
    out_code_ = kOutputTag;
    out_ctx_ = kSystemCtx;
  } else {
    out_tid_ = self_out_tid_;
    out_code_ = self_out_code_;
    out_ctx_ = self_out_ctx_;
  }
  return {};
}

Result<int> TaskRuntime::PutInfo(const std::string& name, int bufid, int flags) {
  if (auto st = EnsureEnrolled(); !st) return mpvm::unexpected(st.error());
  if (name.empty() || flags < 0) return Fail(Err::kBadParam);
  auto m = Buffer(bufid);
  if (!m) return mpvm::unexpected(m.error());
  (*m)->Flatten();
  ctl::Envelope req = NewEnvelope();
  auto* p = req.mutable_mbox_put();
  p->set_name(name);
  p->set_flags(flags);
  p->set_encoding((*m)->encoding() == kEncInPlace ? kEncRaw : (*m)->encoding());
  auto body = (*m)->body();
  p->set_data(body.data(), body.size());
  auto aux = (*m)->EncodeTypeMap();
  p->set_aux(aux.data(), aux.size());
  auto rep = Call(std::move(req));
  if (!rep) return mpvm::unexpected(rep.error());
  if (!rep->has_status()) return Fail(Err::kDSysErr);
  if (rep->status().code() < 0) return Fail(FromPvmCode(rep->status().code()));
  return rep->status().code();
}

Result<int> TaskRuntime::RecvInfo(const std::string& name, int index, int flags) {
  if (auto st = EnsureEnrolled(); !st) return mpvm::unexpected(st.error());
  if (name.empty() || index < 0 || flags < 0) return Fail(Err::kBadParam);
  ctl::Envelope req = NewEnvelope();
  auto* g = req.mutable_mbox_get();
  g->set_name(name);
  g->set_index(index);
  g->set_flags(flags);
  auto rep = Call(std::move(req));
  if (!rep) return mpvm::unexpected(rep.error());
  if (!rep->has_mbox_get_reply()) return Fail(Err::kDSysErr);
  const auto& r = rep->mbox_get_reply();
  if (r.code() < 0) return Fail(FromPvmCode(r.code()));
  std::vector<uint8_t> payload(r.aux().begin(), r.aux().end());
  payload.insert(payload.end(), r.data().begin(), r.data().end());
  auto m = std::make_unique<Message>(
      Message::FromWire(r.encoding(), std::move(payload), static_cast<uint32_t>(r.aux().size())));
  m->src = r.owner();
  return NewBufId(std::move(m));
}

Status TaskRuntime::DelInfo(const std::string& name, int index, int flags) {
  if (auto st = EnsureEnrolled(); !st) return st;
  if (name.empty() || index < 0 || flags < 0) return Fail(Err::kBadParam);
  ctl::Envelope req = NewEnvelope();
  req.mutable_mbox_del()->set_name(name);
  req.mutable_mbox_del()->set_index(index);
  return StatusOf(Call(std::move(req)));
}

Result<ctl::MboxInfoReply> TaskRuntime::MboxInfo(const std::string& pattern) {
  if (auto st = EnsureEnrolled(); !st) return mpvm::unexpected(st.error());
  ctl::Envelope req = NewEnvelope();
  req.mutable_mbox_info()->set_pattern(pattern);
  auto rep = Call(std::move(req));
  if (!rep) return mpvm::unexpected(rep.error());
  if (!rep->has_mbox_info_reply()) return Fail(Err::kDSysErr);
  if (rep->mbox_info_reply().code() < 0) return Fail(FromPvmCode(rep->mbox_info_reply().code()));
  return rep->mbox_info_reply();
}

Result<ctl::GroupReply> TaskRuntime::Group(ctl::GroupRequest::Op op, const std::string& group,
                                           int arg) {
  if (auto st = EnsureEnrolled(); !st) return mpvm::unexpected(st.error());
  if (group.empty()) return Fail(Err::kNullGroup);
  ctl::Envelope req = NewEnvelope();
  auto* g = req.mutable_group();
  g->set_op(op);
  g->set_group(group);
  g->set_arg(arg);
  auto rep = Call(std::move(req));
  if (!rep) return mpvm::unexpected(rep.error());
  if (!rep->has_group_reply()) return Fail(Err::kDSysErr);
  if (rep->group_reply().code() < 0) return Fail(FromPvmCode(rep->group_reply().code()));
  return rep->group_reply();
}

}  // namespace mpvm
