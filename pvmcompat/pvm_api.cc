// pvm_api.cc — the PVM 3.4 C API: a thin noexcept shell over one TaskRuntime.
//
// Each function validates nothing itself: it calls the runtime, sets
// pvm_errno, and reports errors as PVM does under PvmAutoErr (1: print
// "libpvm [t40001]: pvm_send(): Bad parameter" on stderr, 2: also exit,
// 3: also abort). Calls PVM keeps quiet about (pvm_parent, pvm_pstat, ...)
// stay quiet here too.
#include <signal.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdio>
#include <string>
#include <vector>

#include "mpvm/ckpt/ckpt.h"
#include "mpvm/clock.h"
#include "mpvm/daemon_starter.h"
#include "mpvm/error.h"
#include "mpvm/paths.h"
#include "mpvm/settings.h"
#include "mpvm/task_runtime.h"
#include "mpvm/work.h"
#include "pvm3.h"
#include "rt_call.h"

using mpvm::DataType;
using mpvm::Err;
using mpvm::Message;
using mpvm::Tid;

extern "C" {
int pvm_errno = 0;
int pvm_nerr = 37;
int pvm_useruid = -1;
int pvm_inprecv = 0;
}

namespace {

// A process started to restore a migrating task becomes that task here,
// before the program's own constructors and main run (they ran already, in
// the process it continues). Otherwise this returns at once.
__attribute__((constructor(101))) void RestoreMigratingTask() { mpvm::ckpt::RestoreIfRequested(); }

using mpvm_compat::Rt;

std::string Who() {
  Tid t = Rt()->tid();
  if (t.raw() != 0) return t.str();
  return "pid" + std::to_string(getpid());
}

// Records and (per PvmAutoErr) reports an error; returns PVM's code.
int Report(const char* fn, Err e, bool quiet = false) {
  const int code = mpvm::ToPvmCode(e);
  pvm_errno = code;
  const int mode = Rt()->autoerr();
  if (!quiet && mode > 0) {
    std::fprintf(stderr, "libpvm [%s]: %s(): %s\n", Who().c_str(), fn,
                 std::string(mpvm::PvmErrorText(code)).c_str());
    if (mode == 2) exit(1);
    if (mode == 3) abort();
  }
  return code;
}

int Ret(const char* fn, const mpvm::Status& st, bool quiet = false) {
  if (!st) return Report(fn, st.error(), quiet);
  pvm_errno = 0;
  return 0;
}

template <typename T>
int RetVal(const char* fn, const mpvm::Result<T>& r, bool quiet = false) {
  if (!r) return Report(fn, r.error(), quiet);
  pvm_errno = 0;
  return static_cast<int>(*r);
}

int PackItems(const char* fn, DataType t, const void* p, int n, int stride) {
  auto m = Rt()->SendBuffer();
  if (!m) return Report(fn, m.error());
  return Ret(fn, (*m)->Pack(t, p, n, stride));
}

int UnpackItems(const char* fn, DataType t, void* p, int n, int stride) {
  auto m = Rt()->RecvBuffer();
  if (!m) return Report(fn, m.error());
  return Ret(fn, (*m)->Unpack(t, p, n, stride));
}

// PVM_* datatype codes to DataType; false for PVM_STR and unknown codes.
bool TypeOf(int datatype, DataType* t) {
  static const DataType kMap[] = {DataType::kStr,    DataType::kByte,  DataType::kShort,
                                  DataType::kInt,    DataType::kFloat, DataType::kCplx,
                                  DataType::kDouble, DataType::kDcplx, DataType::kLong,
                                  DataType::kUShort, DataType::kUInt,  DataType::kULong};
  if (datatype < 1 || datatype > 11) return false;
  *t = kMap[datatype];
  return true;
}

// Storage for arrays returned to the caller (valid until the next call).
std::vector<pvmhostinfo> g_hosts;
std::vector<std::string> g_host_strings;
std::vector<pvmtaskinfo> g_tasks;
std::vector<std::string> g_task_strings;
std::vector<int> g_siblings;
std::vector<pvmmboxinfo> g_classes;
std::vector<std::string> g_class_names;
std::vector<std::vector<int>> g_class_ints;

}  // namespace

namespace mpvm_compat {
mpvm::TaskRuntime& RuntimeObject() {
  // Never destroyed: tasks may call pvm_* from atexit handlers.
  static mpvm::TaskRuntime* rt = [] {
    auto* r = new mpvm::TaskRuntime();
    atexit([] { Rt()->FlushAll(); });
    return r;
  }();
  return *rt;
}
}  // namespace mpvm_compat

namespace mpvm_groups {
int Report(const char* fn, Err e, bool quiet) { return ::Report(fn, e, quiet); }
}  // namespace mpvm_groups

extern "C" {

char* pvm_errlist[] = {
    const_cast<char*>("Error 0"),
    const_cast<char*>("Error 1"),
    const_cast<char*>("Bad parameter"),
    const_cast<char*>("Parameter mismatch"),
    const_cast<char*>("Value too large"),
    const_cast<char*>("End of buffer"),
    const_cast<char*>("No such host"),
    const_cast<char*>("No such file"),
    const_cast<char*>("Permission denied"),
    const_cast<char*>("Error 9"),
    const_cast<char*>("Malloc failed"),
    const_cast<char*>("Error 11"),
    const_cast<char*>("Can't decode message"),
    const_cast<char*>("Error 13"),
    const_cast<char*>("Can't contact local daemon"),
    const_cast<char*>("No current buffer"),
    const_cast<char*>("No such buffer"),
    const_cast<char*>("Null group name"),
    const_cast<char*>("Already in group"),
    const_cast<char*>("No such group"),
    const_cast<char*>("Not in group"),
    const_cast<char*>("No such instance"),
    const_cast<char*>("Host failed"),
    const_cast<char*>("No parent task"),
    const_cast<char*>("Not implemented"),
    const_cast<char*>("Pvmd system error"),
    const_cast<char*>("Version mismatch"),
    const_cast<char*>("Out of resources"),
    const_cast<char*>("Duplicate host"),
    const_cast<char*>("Can't start pvmd"),
    const_cast<char*>("Already in progress"),
    const_cast<char*>("No such task"),
    const_cast<char*>("Not Found"),
    const_cast<char*>("Already exists"),
    const_cast<char*>("Hoster run on non-master host"),
    const_cast<char*>("Spawning parent set PvmNoSpawnParent"),
    const_cast<char*>("Master Host IP is Loopback"),
};

// ---- Tasks and the virtual machine ----------------------------------------

int pvm_mytid(void) {
  auto st = Rt()->Enrol();
  if (!st) return Report("pvm_mytid", st.error());
  pvm_errno = 0;
  return Rt()->tid().raw();
}

int pvm_parent(void) {
  auto r = Rt()->Parent();
  if (!r) return Report("pvm_parent", r.error(), true);
  return r->raw();
}

int pvm_exit(void) { return Ret("pvm_exit", Rt()->Exit()); }

int pvm_spawn(char* task, char** argv, int flag, char* where, int ntask, int* tids) {
  if (task == nullptr || ntask < 1) return Report("pvm_spawn", Err::kBadParam);
  mpvm::SpawnRequestOptions o;
  o.file = task;
  for (char** a = argv; a != nullptr && *a != nullptr; ++a) o.args.emplace_back(*a);
  o.flags = flag;
  o.where = where != nullptr ? where : "";
  o.ntask = ntask;
  auto r = Rt()->Spawn(o);
  if (!r) return Report("pvm_spawn", r.error());
  int ok = 0;
  for (size_t i = 0; i < r->size(); ++i) {
    if (tids != nullptr) tids[i] = (*r)[i];
    if ((*r)[i] > 0) ++ok;
  }
  pvm_errno = 0;
  return ok;
}

int pvm_kill(int tid) {
  // PVM 3.4.6 returns 0 for a tid that names no task (its daemon has
  // nothing to kill); a relinked program expects that.
  auto st = Rt()->Kill(Tid(tid));
  if (!st && st.error() == Err::kNoTask) return 0;
  return Ret("pvm_kill", st);
}
int pvm_sendsig(int tid, int signum) { return Ret("pvm_sendsig", Rt()->SendSig(Tid(tid), signum)); }
int pvm_pstat(int tid) { return Ret("pvm_pstat", Rt()->Pstat(Tid(tid)), true); }
int pvm_mstat(char* host) {
  if (host == nullptr) return Report("pvm_mstat", Err::kBadParam);
  return Ret("pvm_mstat", Rt()->Mstat(host), true);
}

int pvm_config(int* nhost, int* narch, struct pvmhostinfo** hostp) {
  auto r = Rt()->Config();
  if (!r) return Report("pvm_config", r.error());
  g_hosts.clear();
  g_host_strings.clear();
  g_host_strings.reserve(2 * static_cast<size_t>(r->hosts_size()));
  std::vector<std::string> archs;
  for (const auto& h : r->hosts()) {
    g_host_strings.push_back(h.name());
    char* name = g_host_strings.back().data();
    g_host_strings.push_back(h.arch());
    char* arch = g_host_strings.back().data();
    g_hosts.push_back({h.tid(), name, arch, h.speed(), h.dsig()});
    if (std::find(archs.begin(), archs.end(), h.arch()) == archs.end()) archs.push_back(h.arch());
  }
  if (nhost) *nhost = static_cast<int>(g_hosts.size());
  if (narch) *narch = static_cast<int>(archs.size());
  if (hostp) *hostp = g_hosts.data();
  pvm_errno = 0;
  return 0;
}

int pvm_tasks(int where, int* ntask, struct pvmtaskinfo** taskp) {
  auto r = Rt()->Tasks(where);
  if (!r) return Report("pvm_tasks", r.error());
  g_tasks.clear();
  g_task_strings.clear();
  g_task_strings.reserve(static_cast<size_t>(r->tasks_size()));
  for (const auto& t : r->tasks()) {
    g_task_strings.push_back(t.a_out());
    g_tasks.push_back(
        {t.tid(), t.ptid(), t.host(), t.flag(), g_task_strings.back().data(), t.pid()});
  }
  if (ntask) *ntask = static_cast<int>(g_tasks.size());
  if (taskp) *taskp = g_tasks.data();
  pvm_errno = 0;
  return 0;
}

int pvm_tidtohost(int tid) { return RetVal("pvm_tidtohost", Rt()->TidToHost(tid)); }

int pvm_siblings(int** tids) {
  auto r = Rt()->Siblings();
  if (!r) return Report("pvm_siblings", r.error());
  g_siblings.clear();
  for (Tid t : *r) g_siblings.push_back(t.raw());
  if (tids) *tids = g_siblings.data();
  return static_cast<int>(g_siblings.size());
}

int pvm_archcode(char* arch) {
  if (arch != nullptr && strcmp(arch, mpvm::kArch) == 0) return 0x408c41;
  return Report("pvm_archcode", arch == nullptr ? Err::kBadParam : Err::kNotFound);
}

int pvm_halt(void) { return Ret("pvm_halt", Rt()->Halt()); }

int pvm_start_pvmd(int argc, char** argv, int block) {
  (void)block;  // the daemon is ready when StartDaemon returns
  std::vector<std::string> args;
  for (int i = 0; i < argc && argv != nullptr; ++i)
    if (argv[i] != nullptr) args.emplace_back(argv[i]);
  auto r = mpvm::StartDaemon(mpvm::RunDir(), args, /*embedded=*/false);
  if (!r) {
    if (r.error() == Err::kDupHost) return Report("pvm_start_pvmd", Err::kDupHost, true);
    return Report("pvm_start_pvmd", r.error());
  }
  return pvm_mytid() < 0 ? pvm_errno : 0;
}

char* pvm_version(void) { return const_cast<char*>(PVM_VER); }

// Each entry is a host-file line: "name [sp=N] [local=1] ...". Hosts with
// local=1 are emulated on this machine; others need `mpvmd --join` there.
int pvm_addhosts(char** hosts, int nhost, int* infos) {
  if (hosts == nullptr || nhost < 1) return Report("pvm_addhosts", Err::kBadParam);
  int added = 0;
  for (int i = 0; i < nhost; ++i) {
    auto r =
        hosts[i] != nullptr ? Rt()->AddHost(hosts[i]) : mpvm::Result<int>(Fail(Err::kBadParam));
    if (infos != nullptr) infos[i] = r ? *r : mpvm::ToPvmCode(r.error());
    if (r) ++added;
  }
  pvm_errno = 0;
  return added;
}
int pvm_delhosts(char** hosts, int nhost, int* infos) {
  if (hosts == nullptr || nhost < 1) return Report("pvm_delhosts", Err::kBadParam);
  int deleted = 0;
  for (int i = 0; i < nhost; ++i) {
    auto st = hosts[i] != nullptr ? Rt()->DelHost(hosts[i]) : mpvm::Status(Fail(Err::kBadParam));
    if (infos != nullptr) infos[i] = st ? 0 : mpvm::ToPvmCode(st.error());
    if (st) ++deleted;
  }
  pvm_errno = 0;
  return deleted;
}
int pvm_hostsync(int, struct timeval*, struct timeval*) {
  return Report("pvm_hostsync", Err::kNotImpl);
}
int pvm_getfds(int** fds) {
  (void)fds;
  return Report("pvm_getfds", Err::kNotImpl);
}
int pvm_getnoresets(int** tids, int* ntids) {
  if (tids) *tids = nullptr;
  if (ntids) *ntids = 0;
  return 0;
}
int pvm_reg_hoster(void) { return Report("pvm_reg_hoster", Err::kNotImpl); }
int pvm_reg_rm(struct pvmhostinfo**) { return Report("pvm_reg_rm", Err::kNotImpl); }
int pvm_reg_tasker(void) { return Report("pvm_reg_tasker", Err::kNotImpl); }
int pvm_reg_tracer(int, int, int, int, char*, int, int) {
  return Report("pvm_reg_tracer", Err::kNotImpl);
}
int pvm_tickle(int, int*, int*, int*) { return Report("pvm_tickle", Err::kNotImpl); }

// ---- Errors and options ----------------------------------------------------

char* pvm_strerror(void) { return const_cast<char*>(mpvm::PvmErrorText(pvm_errno).data()); }

int pvm_perror(char* msg) {
  std::fprintf(stderr, "libpvm [%s]: %s: %s\n", Who().c_str(), msg != nullptr ? msg : "",
               std::string(mpvm::PvmErrorText(pvm_errno)).c_str());
  return 0;
}

int pvm_setopt(int what, int val) { return RetVal("pvm_setopt", Rt()->SetOpt(what, val)); }
int pvm_getopt(int what) { return RetVal("pvm_getopt", Rt()->GetOpt(what)); }

// ---- Buffers ---------------------------------------------------------------

int pvm_initsend(int encoding) { return RetVal("pvm_initsend", Rt()->InitSend(encoding)); }
int pvm_mkbuf(int encoding) { return RetVal("pvm_mkbuf", Rt()->MkBuf(encoding)); }
int pvm_freebuf(int bufid) { return Ret("pvm_freebuf", Rt()->FreeBuf(bufid)); }
int pvm_getsbuf(void) { return Rt()->sbuf(); }
int pvm_getrbuf(void) { return Rt()->rbuf(); }
int pvm_setsbuf(int bufid) { return RetVal("pvm_setsbuf", Rt()->SetSbuf(bufid)); }
int pvm_setrbuf(int bufid) { return RetVal("pvm_setrbuf", Rt()->SetRbuf(bufid)); }

int pvm_bufinfo(int bufid, int* bytes, int* msgtag, int* tid) {
  auto m = Rt()->Buffer(bufid);
  if (!m) return Report("pvm_bufinfo", bufid <= 0 ? Err::kBadParam : m.error());
  if (bytes) *bytes = static_cast<int>((*m)->size());
  if (msgtag) *msgtag = (*m)->tag;
  if (tid) *tid = (*m)->src;
  return 0;
}

int pvm_getminfo(int bufid, struct pvmminfo* info) {
  auto m = Rt()->Buffer(bufid);
  if (!m) return Report("pvm_getminfo", bufid <= 0 ? Err::kBadParam : m.error());
  if (info == nullptr) return Report("pvm_getminfo", Err::kBadParam);
  const Message& x = **m;
  *info = {static_cast<int>(x.size()), x.ctx, x.tag, x.wid, x.encoding(), x.crc, x.src, x.dst};
  return 0;
}

int pvm_setminfo(int bufid, struct pvmminfo* info) {
  auto m = Rt()->Buffer(bufid);
  if (!m) return Report("pvm_setminfo", bufid <= 0 ? Err::kBadParam : m.error());
  if (info == nullptr) return Report("pvm_setminfo", Err::kBadParam);
  Message& x = **m;
  x.ctx = info->ctx;
  x.tag = info->tag;
  x.wid = info->wid;
  x.src = info->src;
  x.dst = info->dst;
  return 0;
}

// ---- Packing ---------------------------------------------------------------

#define MPVM_PK(name, ctype, dtype)                                \
  int pvm_pk##name(ctype* xp, int nitem, int stride) {             \
    return PackItems("pvm_pk" #name, dtype, xp, nitem, stride);    \
  }                                                                \
  int pvm_upk##name(ctype* xp, int nitem, int stride) {            \
    return UnpackItems("pvm_upk" #name, dtype, xp, nitem, stride); \
  }
MPVM_PK(byte, char, DataType::kByte)
MPVM_PK(short, short, DataType::kShort)
MPVM_PK(ushort, unsigned short, DataType::kUShort)
MPVM_PK(int, int, DataType::kInt)
MPVM_PK(uint, unsigned int, DataType::kUInt)
MPVM_PK(long, long, DataType::kLong)
MPVM_PK(ulong, unsigned long, DataType::kULong)
MPVM_PK(float, float, DataType::kFloat)
MPVM_PK(cplx, float, DataType::kCplx)
MPVM_PK(double, double, DataType::kDouble)
MPVM_PK(dcplx, double, DataType::kDcplx)
#undef MPVM_PK

int pvm_pkstr(char* sp) {
  auto m = Rt()->SendBuffer();
  if (!m) return Report("pvm_pkstr", m.error());
  return Ret("pvm_pkstr", (*m)->PackStr(sp));
}

int pvm_upkstr(char* sp) {
  auto m = Rt()->RecvBuffer();
  if (!m) return Report("pvm_upkstr", m.error());
  return Ret("pvm_upkstr", (*m)->UnpackStr(sp));
}

int pvm_pkmesg(int bufid) {
  auto m = Rt()->SendBuffer();
  if (!m) return Report("pvm_pkmesg", m.error());
  auto inner = Rt()->Buffer(bufid);
  if (!inner) return Report("pvm_pkmesg", inner.error());
  if (*inner == *m) return Report("pvm_pkmesg", Err::kBadParam);
  return Ret("pvm_pkmesg", (*m)->PackMessage(**inner));
}

int pvm_pkmesgbody(int bufid) {
  auto m = Rt()->SendBuffer();
  if (!m) return Report("pvm_pkmesgbody", m.error());
  auto inner = Rt()->Buffer(bufid);
  if (!inner) return Report("pvm_pkmesgbody", inner.error());
  if (*inner == *m) return Report("pvm_pkmesgbody", Err::kBadParam);
  (*inner)->Flatten();
  auto body = (*inner)->body();
  return Ret("pvm_pkmesgbody",
             (*m)->Pack(DataType::kByte, body.data(), static_cast<int>(body.size()), 1));
}

int pvm_upkmesg(void) {
  auto m = Rt()->RecvBuffer();
  if (!m) return Report("pvm_upkmesg", m.error());
  auto inner = (*m)->UnpackMessage();
  if (!inner) return Report("pvm_upkmesg", inner.error());
  auto id = Rt()->MkBuf(inner->encoding());
  if (!id) return Report("pvm_upkmesg", id.error());
  **Rt()->Buffer(*id) = std::move(*inner);
  return *id;
}

namespace {

// Shared by pvm_packf and pvm_unpackf. `pack` selects direction.
int FormatCall(const char* fn, const char* fmt, va_list ap, bool pack) {
  if (fmt == nullptr) return Report(fn, Err::kBadParam);
  for (const char* p = fmt; *p != '\0'; ++p) {
    if (*p != '%') continue;
    ++p;
    if (*p == '+') {
      int enc = va_arg(ap, int);
      if (pack) {
        auto r = Rt()->InitSend(enc);
        if (!r) return Report(fn, r.error());
      }
      continue;
    }
    bool vector = false;
    int count = 1, stride = 1;
    if (*p == '*') {
      count = va_arg(ap, int);
      vector = true;
      ++p;
    } else if (*p >= '0' && *p <= '9') {
      count = static_cast<int>(strtol(p, const_cast<char**>(&p), 10));
      vector = true;
    }
    if (*p == '.') {
      ++p;
      vector = true;
      if (*p == '*') {
        stride = va_arg(ap, int);
        ++p;
      } else {
        stride = static_cast<int>(strtol(p, const_cast<char**>(&p), 10));
      }
    }
    bool h = false, l = false, u = false;
    for (; *p == 'h' || *p == 'l' || *p == 'u'; ++p) {
      h |= *p == 'h';
      l |= *p == 'l';
      u |= *p == 'u';
    }
    DataType t;
    switch (*p) {
      case 'c':
        t = DataType::kByte;
        break;
      case 'd':
        t = h   ? (u ? DataType::kUShort : DataType::kShort)
            : l ? (u ? DataType::kULong : DataType::kLong)
                : (u ? DataType::kUInt : DataType::kInt);
        break;
      case 'f':
        t = l ? DataType::kDouble : DataType::kFloat;
        break;
      case 'x':
        t = l ? DataType::kDcplx : DataType::kCplx;
        break;
      case 's': {
        char* s = va_arg(ap, char*);
        int rc = pack ? pvm_pkstr(s) : pvm_upkstr(s);
        if (rc < 0) return rc;
        continue;
      }
      default:
        return Report(fn, Err::kBadParam);
    }
    if (!pack || vector) {
      void* ptr = va_arg(ap, void*);
      int rc = pack ? PackItems(fn, t, ptr, count, stride) : UnpackItems(fn, t, ptr, count, stride);
      if (rc < 0) return rc;
      continue;
    }
    // A scalar passed by value (after C's default promotions).
    union {
      char c;
      short s;
      int i;
      long lg;
      float f;
      double d;
    } v;
    switch (t) {
      case DataType::kByte:
        v.c = static_cast<char>(va_arg(ap, int));
        break;
      case DataType::kShort:
      case DataType::kUShort:
        v.s = static_cast<short>(va_arg(ap, int));
        break;
      case DataType::kInt:
      case DataType::kUInt:
        v.i = va_arg(ap, int);
        break;
      case DataType::kLong:
      case DataType::kULong:
        v.lg = va_arg(ap, long);
        break;
      case DataType::kFloat:
        v.f = static_cast<float>(va_arg(ap, double));
        break;
      case DataType::kDouble:
        v.d = va_arg(ap, double);
        break;
      default:
        return Report(fn, Err::kBadParam);  // complex values must be passed by address
    }
    int rc = PackItems(fn, t, &v, 1, 1);
    if (rc < 0) return rc;
  }
  return 0;
}

}  // namespace

int pvm_vpackf(const char* fmt, va_list ap) { return FormatCall("pvm_packf", fmt, ap, true); }
int pvm_vunpackf(const char* fmt, va_list ap) { return FormatCall("pvm_unpackf", fmt, ap, false); }
int pvm_packf(const char* fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  int rc = FormatCall("pvm_packf", fmt, ap, true);
  va_end(ap);
  return rc;
}
int pvm_unpackf(const char* fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  int rc = FormatCall("pvm_unpackf", fmt, ap, false);
  va_end(ap);
  return rc;
}

// ---- Sending and receiving -------------------------------------------------

int pvm_send(int tid, int msgtag) { return Ret("pvm_send", Rt()->Send(tid, msgtag)); }

int pvm_mcast(int* tids, int ntask, int msgtag) {
  return Ret("pvm_mcast", Rt()->Mcast(tids, ntask, msgtag));
}

int pvm_psend(int tid, int msgtag, void* buf, int len, int datatype) {
  DataType t = DataType::kByte;
  if (len < 0 || (datatype != PVM_STR && !TypeOf(datatype, &t)))
    return Report("pvm_psend", Err::kBadParam);
  auto prev = Rt()->sbuf();
  auto id = Rt()->MkBuf(PvmDataRaw);
  if (!id) return Report("pvm_psend", id.error());
  Rt()->SetSbuf(*id);
  Message* m = *Rt()->Buffer(*id);
  mpvm::Status st =
      datatype == PVM_STR ? m->PackStr(static_cast<char*>(buf)) : m->Pack(t, buf, len, 1);
  if (st) st = Rt()->Send(tid, msgtag);
  Rt()->SetSbuf(prev);
  Rt()->FreeBuf(*id);
  return Ret("pvm_psend", st);
}

int pvm_recv(int tid, int msgtag) { return RetVal("pvm_recv", Rt()->Recv(tid, msgtag)); }
int pvm_nrecv(int tid, int msgtag) { return RetVal("pvm_nrecv", Rt()->Nrecv(tid, msgtag)); }
int pvm_probe(int tid, int msgtag) { return RetVal("pvm_probe", Rt()->Probe(tid, msgtag)); }

int pvm_trecv(int tid, int msgtag, struct timeval* tmout) {
  long us = -1;
  if (tmout != nullptr) {
    if (tmout->tv_sec < 0 || tmout->tv_usec < 0) return Report("pvm_trecv", Err::kBadParam);
    us = tmout->tv_sec * 1000000L + tmout->tv_usec;
  }
  return RetVal("pvm_trecv", Rt()->Trecv(tid, msgtag, us));
}

int pvm_precv(int tid, int msgtag, void* buf, int len, int datatype, int* atid, int* atag,
              int* alen) {
  DataType t;
  if (len < 0 || (datatype != PVM_STR && !TypeOf(datatype, &t)))
    return Report("pvm_precv", Err::kBadParam);
  pvm_inprecv = 1;
  auto id = Rt()->Recv(tid, msgtag);
  pvm_inprecv = 0;
  if (!id) return Report("pvm_precv", id.error());
  Message* m = *Rt()->Buffer(*id);
  if (atid) *atid = m->src;
  if (atag) *atag = m->tag;
  int items = 0;
  mpvm::Status st;
  if (datatype == PVM_STR) {
    st = m->UnpackStr(static_cast<char*>(buf));
    items = 1;
  } else {
    // Receive as many items as arrived, up to len.
    static const int kSize[] = {0, 1, 2, 4, 4, 8, 8, 16, 8, 2, 4, 8};
    int have = static_cast<int>(m->size()) / kSize[datatype];
    items = have < len ? have : len;
    st = m->Unpack(t, buf, items, 1);
  }
  if (alen) *alen = items;
  Rt()->FreeBuf(*id);
  return Ret("pvm_precv", st);
}

int (*pvm_recvf(int (*new_match)(int, int, int)))(int, int, int) {
  return Rt()->SetMatchFn(new_match);
}

// ---- Contexts and handlers -------------------------------------------------

int pvm_newcontext(void) { return RetVal("pvm_newcontext", Rt()->NewContext()); }
int pvm_setcontext(int ctx) {
  if (ctx < 0) return Report("pvm_setcontext", Err::kBadParam);
  return Rt()->SetContext(ctx);
}
int pvm_getcontext(void) { return Rt()->context(); }
int pvm_freecontext(int ctx) {
  if (ctx < 0) return Report("pvm_freecontext", Err::kBadParam);
  return 0;  // contexts are plain numbers; nothing is held for them
}

int pvm_addmhf(int src, int tag, int ctx, int (*func)(int)) {
  return RetVal("pvm_addmhf", Rt()->AddHandler(src, tag, ctx, func));
}
int pvm_delmhf(int mhid) { return Ret("pvm_delmhf", Rt()->DelHandler(mhid)); }

// ---- Events, output, environment -----------------------------------------

int pvm_notify(int what, int msgtag, int cnt, int* tids) {
  return Ret("pvm_notify", Rt()->Notify(what, msgtag, tids, cnt));
}

int pvm_catchout(FILE* ff) { return Ret("pvm_catchout", Rt()->CatchOut(ff)); }

namespace {
std::vector<std::string> ExportList() {
  std::vector<std::string> out;
  const char* ex = getenv("PVM_EXPORT");
  std::string s = ex != nullptr ? ex : "";
  size_t pos = 0;
  while (pos < s.size()) {
    size_t end = s.find(':', pos);
    if (end == std::string::npos) end = s.size();
    if (end > pos) out.push_back(s.substr(pos, end - pos));
    pos = end + 1;
  }
  return out;
}
void SetExportList(const std::vector<std::string>& names) {
  std::string s;
  for (const auto& n : names) s += (s.empty() ? "" : ":") + n;
  if (s.empty()) {
    unsetenv("PVM_EXPORT");
  } else {
    setenv("PVM_EXPORT", s.c_str(), 1);
  }
}
}  // namespace

int pvm_export(char* name) {
  if (name == nullptr || *name == '\0' || strchr(name, ':') != nullptr)
    return Report("pvm_export", Err::kBadParam);
  auto names = ExportList();
  for (const auto& n : names)
    if (n == name) return 0;
  names.emplace_back(name);
  SetExportList(names);
  return 0;
}

int pvm_unexport(char* name) {
  if (name == nullptr || *name == '\0') return Report("pvm_unexport", Err::kBadParam);
  auto names = ExportList();
  std::erase(names, std::string(name));
  SetExportList(names);
  return 0;
}

// ---- Mailbox ---------------------------------------------------------------

int pvm_putinfo(char* name, int bufid, int flags) {
  if (name == nullptr) return Report("pvm_putinfo", Err::kBadParam);
  return RetVal("pvm_putinfo", Rt()->PutInfo(name, bufid, flags), true);
}

int pvm_recvinfo(char* name, int index, int flags) {
  if (name == nullptr) return Report("pvm_recvinfo", Err::kBadParam);
  return RetVal("pvm_recvinfo", Rt()->RecvInfo(name, index, flags), true);
}

int pvm_delinfo(char* name, int index, int flags) {
  if (name == nullptr) return Report("pvm_delinfo", Err::kBadParam);
  return Ret("pvm_delinfo", Rt()->DelInfo(name, index, flags), true);
}

int pvm_getmboxinfo(char* pattern, int* nclasses, struct pvmmboxinfo** classes) {
  auto r = Rt()->MboxInfo(pattern != nullptr ? pattern : "*");
  if (!r) return Report("pvm_getmboxinfo", r.error());
  g_classes.clear();
  g_class_names.clear();
  g_class_ints.clear();
  g_class_names.reserve(static_cast<size_t>(r->classes_size()));
  g_class_ints.reserve(3 * static_cast<size_t>(r->classes_size()));
  for (const auto& c : r->classes()) {
    g_class_names.push_back(c.name());
    g_class_ints.emplace_back(c.indices().begin(), c.indices().end());
    int* idx = g_class_ints.back().data();
    g_class_ints.emplace_back(c.owners().begin(), c.owners().end());
    int* own = g_class_ints.back().data();
    g_class_ints.emplace_back(c.flags().begin(), c.flags().end());
    int* fl = g_class_ints.back().data();
    g_classes.push_back({g_class_names.back().data(), c.indices_size(), idx, own, fl});
  }
  if (nclasses) *nclasses = static_cast<int>(g_classes.size());
  if (classes) *classes = g_classes.data();
  return 0;
}

// PVM 3.3 name service, kept on top of the mailbox as PVM 3.4 does.
int pvm_insert(char* name, int req, int data) {
  if (name == nullptr) return Report("pvm_insert", Err::kBadParam);
  int prev = Rt()->sbuf();
  auto id = Rt()->MkBuf(PvmDataDefault);
  if (!id) return Report("pvm_insert", id.error());
  (*Rt()->Buffer(*id))->Pack(DataType::kInt, &data, 1, 1);
  int flags = req < 0 ? PvmMboxMultiInstance : 0;
  auto r = Rt()->PutInfo(name, *id, flags);
  Rt()->FreeBuf(*id);
  Rt()->SetSbuf(prev);
  return RetVal("pvm_insert", r, true);
}

int pvm_lookup(char* name, int req, int* datap) {
  if (name == nullptr) return Report("pvm_lookup", Err::kBadParam);
  auto id = Rt()->RecvInfo(name, req < 0 ? 0 : req, req < 0 ? PvmMboxFirstAvail : 0);
  if (!id) return Report("pvm_lookup", id.error(), true);
  Message* m = *Rt()->Buffer(*id);
  int v = 0;
  m->Unpack(DataType::kInt, &v, 1, 1);
  if (datap) *datap = v;
  Rt()->FreeBuf(*id);
  return req < 0 ? 0 : req;
}

int pvm_delete(char* name, int req) {
  if (name == nullptr) return Report("pvm_delete", Err::kBadParam);
  return Ret("pvm_delete", Rt()->DelInfo(name, req < 0 ? 0 : req, 0), true);
}

// ---- PVM-internal entry points Debian's libpvm3 also exports ---------------

void* pvm_alloc(unsigned n, const char*) { return malloc(n == 0 ? 1 : n); }
void pvm_free(void* p) { free(p); }
void* pvm_realloc(void* p, unsigned n) { return realloc(p, n == 0 ? 1 : n); }
int pvm_fd_add(int, int) { return PvmNotImpl; }
int pvm_fd_delete(int, int) { return PvmNotImpl; }
int pvm_gettmask(int, char*) { return PvmNotImpl; }
int pvm_settmask(int, char*) { return PvmNotImpl; }
int pvm_tc_noop(int) { return 0; }
int pvm_tc_settmask(int) { return 0; }
int pvm_tc_settrace(int) { return 0; }
int pvm_tc_settrcbuf(int) { return 0; }
int pvm_tc_settrcopt(int) { return 0; }
int pvm_tc_siblings(int) { return 0; }

char* pvmgetrsh(void) {
  const std::string& r = mpvm::CurrentSettings().rsh;
  return const_cast<char*>(!r.empty() ? r.c_str() : "ssh");
}
char* pvmgettmp(void) { return const_cast<char*>(mpvm::CurrentSettings().tmp.c_str()); }
char* pvmtmpnam(char* buf) {
  static char own[128];
  static int n = 0;
  char* out = buf != nullptr ? buf : own;
  snprintf(out, 128, "%s/mpvm.%d.%d", pvmgettmp(), getpid(), n++);
  return out;
}

}  // extern "C"

namespace {

// A histogram into counts[0..n-1] (the last entry takes the rest); returns
// the largest index with a count.
template <size_t N>
int Histogram(const std::array<uint64_t, N>& all, unsigned long* counts, int n) {
  if (counts == nullptr || n < 1) return PvmBadParam;
  int most = 0;
  for (int h = 0; h < n; ++h) counts[h] = 0;
  for (int h = 0; h < static_cast<int>(N); ++h) {
    counts[std::min(h, n - 1)] += all[static_cast<size_t>(h)];
    if (all[static_cast<size_t>(h)] > 0) most = h;
  }
  return most;
}
}  // namespace

extern "C" {
int mpvm_rank(void) {
  const char* r = getenv("MPVM_RANK");
  return r != nullptr ? atoi(r) : -1;
}
int mpvm_size(void) {
  const char* s = getenv("MPVM_SIZE");
  return s != nullptr ? atoi(s) : -1;
}
int pvm_migrate(int tid, const char* host) {
  if (host == nullptr) return Report("pvm_migrate", Err::kBadParam);
  auto r = Rt()->Migrate(tid, host);
  if (!r && !Rt()->last_detail().empty() && Rt()->autoerr() > 0)
    std::fprintf(stderr, "libpvm [%s]: pvm_migrate(): %s\n", Who().c_str(),
                 Rt()->last_detail().c_str());
  return RetVal("pvm_migrate", r);
}
int pvm_location(int tid) { return RetVal("pvm_location", Rt()->Location(tid)); }

int mpvm_work(double units) {
  if (!(units >= 0) || !std::isfinite(units)) return Report("mpvm_work", Err::kBadParam);
  (void)Rt()->SetWorking(true);  // a task outside a VM just computes
  double left = units;
  int64_t last = mpvm::MonotonicNs();
  while (left > 0) {
    std::string rundir;
    {
      auto rt = Rt();  // a boundary: a pending move happens here
      rundir = rt->rundir();
    }
    const auto v = mpvm::ReadVirtualCpu(rundir);
    if (!v) {  // a real host, or one with a CPU limit: compute
      const double slice = std::min(left, 10.0);
      mpvm::Spin(slice);
      left -= slice;
      continue;
    }
    const int64_t now = mpvm::MonotonicNs();
    // A quantum longer than two (a move's blackout, a stall) counts as two.
    left -= mpvm::VirtualProgress(*v, std::min(now - last, 2 * mpvm::kWorkQuantumNs));
    last = now;
    if (left <= 0) break;
    const double per_ns = mpvm::VirtualProgress(*v, 1'000'000'000) / 1e9;
    const int64_t ns = std::min(mpvm::kWorkQuantumNs, static_cast<int64_t>(left / per_ns) + 1);
    // A quantum is a point where the task may move: the wait area says so.
    timespec& ts = mpvm::LibraryWaits().sleep;
    ts = timespec{ns / 1'000'000'000, ns % 1'000'000'000};
    nanosleep(&ts, nullptr);
  }
  (void)Rt()->SetWorking(false);
  return 0;
}

int mpvm_forward_hops(unsigned long* counts, int n) {
  return Histogram(Rt()->hop_counts(), counts, n);
}
int mpvm_stale_sends(unsigned long* counts, int n) {
  return Histogram(Rt()->stale_sends(), counts, n);
}
}

// ---- libpvm internals that PVM 3.4's own example programs call -------------
extern "C" {

int pvmsleep(int secs) {
  sleep(static_cast<unsigned>(secs < 0 ? 0 : secs));
  return 0;
}

int pvmgetclock(struct timeval* tm) { return gettimeofday(tm, nullptr); }

int lpvmerr(const char* f, int code) {
  pvm_errno = code;
  if (Rt()->autoerr() > 0)
    std::fprintf(stderr, "libpvm [%s]: %s(): %s\n", Who().c_str(), f != nullptr ? f : "",
                 std::string(mpvm::PvmErrorText(code)).c_str());
  return code;
}

int pvmdisplaymhfinfo(const char* who, const char* msg, int tid) {
  std::fprintf(stderr, "%s: %s (t%x): message handlers are registered with pvm_addmhf\n",
               who != nullptr ? who : "", msg != nullptr ? msg : "", tid);
  return 0;
}

}  // extern "C"

// ---- PVM 3.3 message wait ids (kept under PVM33COMPAT in pvm3.h) -----------
extern "C" {
int pvm_getmwid(int bufid) {
  auto m = Rt()->Buffer(bufid);
  if (!m) return Report("pvm_getmwid", m.error());
  return (*m)->wid;
}
int pvm_setmwid(int bufid, int waitid) {
  auto m = Rt()->Buffer(bufid);
  if (!m) return Report("pvm_setmwid", m.error());
  (*m)->wid = waitid;
  return 0;
}
}
