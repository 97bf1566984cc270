// ckpt_demo — exercises the checkpoint engine without daemons: the program
// moves itself into a fresh copy of itself (started with a raw fork+exec on
// a socketpair) and must finish with exactly the output of a run that never
// moved. test_ckpt.py compares the two.
//
//   ckpt_demo MODE N [AT...]
//     MODE call:    capture at the listed iterations (a library-call boundary)
//     MODE signal:  capture from a SIGUSR1 handler wherever the loop is
//     MODE threads: start a thread, then try to capture (must be refused)
//     MODE socket:  hold a foreign socket open, then try (must be refused)
//     MODE none:    never capture (the reference run)
//     MODE sparse:  move a mostly untouched 64 MiB mapping (see Sparse())
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <sodium.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <string>
#include <vector>

#include "mpvm/ckpt/ckpt.h"

namespace {

__attribute__((constructor)) void MaybeRestore() { mpvm::ckpt::RestoreIfRequested(); }

char** g_argv;
volatile sig_atomic_t g_moves = 0;
uint8_t g_key[mpvm::ckpt::kKeySize];  // the image is sealed under it, as in a real move

// A pipe holding the key, whose read end the restorer inherits as fd 101
// (MPVM_RESTORE_KEY_FD). Raw syscalls: this runs in signal handlers.
bool PassKey() {
  int kp[2];
  if (syscall(SYS_pipe2, kp, 0) != 0) return false;
  const bool ok = syscall(SYS_write, kp[1], g_key, sizeof g_key) == sizeof g_key &&
                  syscall(SYS_dup2, kp[0], 101) == 101;
  syscall(SYS_close, kp[0]);
  syscall(SYS_close, kp[1]);
  return ok;
}

// Starts a copy of this program that restores from the other end of a
// socketpair; returns our end. Raw syscalls: this runs in signal handlers.
int StartRestorer() {
  int sv[2];
  if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0) return -1;
  long pid = syscall(SYS_fork);
  if (pid == 0) {
    if (!PassKey()) syscall(SYS_exit_group, 126);
    int fd = static_cast<int>(syscall(SYS_fcntl, sv[1], F_DUPFD, 102));  // no CLOEXEC
    char env0[32] = "MPVM_RESTORE_FD=";
    int n = static_cast<int>(strlen(env0));
    env0[n++] = static_cast<char>('0' + fd / 100);
    env0[n++] = static_cast<char>('0' + fd / 10 % 10);
    env0[n++] = static_cast<char>('0' + fd % 10);
    env0[n] = '\0';
    char env1[] = "MPVM_RESTORE_KEY_FD=101";
    char* envp[] = {env0, env1, nullptr};
    syscall(SYS_execve, "/proc/self/exe", g_argv, envp);
    syscall(SYS_exit_group, 126);
  }
  close(sv[1]);
  return pid < 0 ? -1 : sv[0];
}

// ckpt_demo.pid in the working directory names the process that runs now.
void WritePid() {
  char buf[24];
  int n = snprintf(buf, sizeof buf, "%d\n", static_cast<int>(getpid()));
  int fd = open("ckpt_demo.pid.tmp", O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) return;
  if (write(fd, buf, static_cast<size_t>(n)) != n) _exit(3);
  close(fd);
  rename("ckpt_demo.pid.tmp", "ckpt_demo.pid");
}

// For the cost benchmark: a restore process waiting on a TCP listener on
// loopback (as a destination daemon prepares one), and our connection to it.
int StartTcpRestorer() {
  int l = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof a;
  if (bind(l, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0 || listen(l, 1) != 0 ||
      getsockname(l, reinterpret_cast<sockaddr*>(&a), &len) != 0)
    return -1;
  pid_t pid = fork();
  if (pid == 0) {
    if (!PassKey()) _exit(126);
    int fd = fcntl(l, F_DUPFD, 102);
    std::string env = "MPVM_RESTORE_LISTEN_FD=" + std::to_string(fd);
    char env1[] = "MPVM_RESTORE_KEY_FD=101";
    char* envp[] = {env.data(), env1, nullptr};
    execve("/proc/self/exe", g_argv, envp);
    _exit(126);
  }
  close(l);
  // The restore process starts in the background, as the destination daemon
  // starts it when it accepts a migration; give it time to be waiting.
  usleep(300000);
  int c = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (connect(c, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) return -1;
  return c;
}

double NowMs() {
  timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

// Moves this process. Returns in the new process; reports refusals.
volatile double g_freeze_ms = 0;
bool g_tcp = false;
bool g_say_sent = false;  // the source says how many bytes its image took
uint64_t g_sent = 0;

void Move(const int* own = nullptr, int nown = 0) {
  int fd = g_tcp ? StartTcpRestorer() : StartRestorer();
  if (fd < 0) return;
  char why[mpvm::ckpt::kWhySize];
  mpvm::ckpt::CaptureOptions o;
  o.out_fd = fd;
  o.key = g_key;
  o.own_fds = own;
  o.n_own_fds = nown;
  o.bytes_sent = &g_sent;
  g_freeze_ms = NowMs();
  auto r = mpvm::ckpt::Capture(o, why, sizeof why);
  if (r == mpvm::ckpt::CaptureResult::kResumed) {
    g_moves = g_moves + 1;
    WritePid();
    return;
  }
  if (r == mpvm::ckpt::CaptureResult::kSaved) {
    mpvm::ckpt::Commit(fd);
    if (g_say_sent) {
      char line[64];
      int len = snprintf(line, sizeof line, "image %llu bytes\n", (unsigned long long)g_sent);
      if (write(2, line, static_cast<size_t>(len)) < 0) _exit(3);
    }
    syscall(SYS_exit_group, 0);  // no stdio flush: the buffers moved
  }
  mpvm::ckpt::Abort(fd);
  close(fd);
  char line[300];
  int n = snprintf(line, sizeof line, "refused: %s\n", why);
  if (write(2, line, static_cast<size_t>(n)) < 0) _exit(3);
}

void OnSignal(int) { Move(); }

// sparse: a 64 MiB anonymous mapping of which every 16th page holds data
// (one more page was written, then discarded with MADV_DONTNEED) moves; the
// pages with data must arrive, the others read as zeros, the image must be
// about a sixteenth of the mapping, and fresh heap memory must still be
// zeroed (calloc trusts that memory new from the kernel is).
int Sparse() {
  g_say_sent = true;
  const size_t page = 4096, pages = 16384;
  auto* p = static_cast<unsigned char*>(
      mmap(nullptr, pages * page, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0));
  if (p == MAP_FAILED) return 2;
  for (size_t i = 0; i < pages; i += 16)
    memset(p + i * page, static_cast<int>(i / 16 % 251) + 1, page);
  memset(p + 8 * page, 0x5a, page);
  madvise(p + 8 * page, page, MADV_DONTNEED);
  Move();
  size_t bad = 0;
  for (size_t i = 0; i < pages; ++i) {
    const unsigned char want = i % 16 == 0 ? static_cast<unsigned char>(i / 16 % 251 + 1) : 0;
    for (size_t j = 0; j < page; j += 512) bad += p[i * page + j] != want;
  }
  auto* fresh = static_cast<unsigned char*>(calloc(1, 100000));
  for (size_t j = 0; j < 100000; ++j) bad += fresh[j] != 0;
  printf("sparse %s\n", bad == 0 ? "intact" : "CORRUPT");
  fprintf(stderr, "moves %d\n", static_cast<int>(g_moves));
  return bad == 0 ? 0 : 1;
}

void* Idle(void*) {
  pause();
  return nullptr;
}

}  // namespace

int main(int argc, char** argv) {
  g_argv = argv;
  if (sodium_init() < 0) return 1;
  randombytes_buf(g_key, sizeof g_key);  // a restored copy keeps it: main ran once
  if (argc < 3) {
    fprintf(stderr, "usage: ckpt_demo call|signal|threads|socket|none N [AT...]\n");
    return 2;
  }
  std::string mode = argv[1];
  long n = atol(argv[2]);
  std::vector<long> at;
  for (int i = 3; i < argc; ++i) at.push_back(atol(argv[i]));

  if (mode == "bench") {  // bench MIB: move a task holding MIB of data over TCP
    g_tcp = true;
    size_t bytes = static_cast<size_t>(n) << 20;
    auto* data = static_cast<uint64_t*>(malloc(bytes));
    uint64_t x = 88172645463325252ull, sum = 0;
    for (size_t i = 0; i < bytes / 8; ++i) data[i] = x ^= x << 13, x ^= x >> 7, x ^= x << 17;
    for (size_t i = 0; i < bytes / 8; ++i) sum += data[i];
    Move();
    double blackout = NowMs() - g_freeze_ms;
    uint64_t check = 0;
    for (size_t i = 0; i < bytes / 8; ++i) check += data[i];
    printf("moved %ld MiB: blackout %.3f ms, %s\n", n, blackout,
           check == sum ? "intact" : "CORRUPT");
    return check == sum ? 0 : 1;
  }
  if (mode == "sparse") return Sparse();
  if (mode == "threads") {
    pthread_t t;
    pthread_create(&t, nullptr, Idle, nullptr);
    Move();
    return 0;
  }
  if (mode == "socket") {
    int sv[2];
    socketpair(AF_UNIX, SOCK_STREAM, 0, sv);
    Move();
    return 0;
  }
  if (mode == "signal") {
    struct sigaction sa {};
    sa.sa_handler = OnSignal;
    sa.sa_flags = SA_RESTART;
    sigfillset(&sa.sa_mask);
    sigaction(SIGUSR1, &sa, nullptr);
  }
  WritePid();

  // State of every kind: heap (small and mmap'ed), static data, stack,
  // C++ containers, an open file, stdio buffers, floating point.
  static double table[1 << 16];
  std::vector<double> big(3 << 20);  // 24 MiB, mmap'ed by malloc
  std::map<long, std::string> names;
  FILE* log = fopen("ckpt_demo.log", "w+");  // in the working directory
  if (log == nullptr) return 2;
  double acc = 0;
  printf("start pid-independent output\n");  // stays buffered when stdout is a pipe
  for (long i = 0; i < n; ++i) {
    for (size_t j = 0; j < big.size(); j += 4099) big[j] += std::sqrt(static_cast<double>(i + j));
    table[i & 0xffff] = acc;
    acc += big[static_cast<size_t>(i * 7919) % big.size() / 4099 * 4099] * 1e-3;
    names[i % 97] += static_cast<char>('a' + i % 26);
    fprintf(log, "%ld %.6f\n", i, acc);
    if (i % (n / 10 + 1) == 0) printf("step %ld acc %.9f\n", i, acc);
    if (mode == "call")
      for (long a : at)
        if (a == i) Move();
  }
  // Every volatile spin the signal can land in is part of the loop above;
  // here, check everything survived.
  fflush(log);
  long lines = 0;
  rewind(log);
  for (int c; (c = fgetc(log)) != EOF;) lines += c == '\n';
  size_t namelen = 0;
  for (auto& [k, v] : names) namelen += v.size() + static_cast<size_t>(k);
  printf("done acc %.9f table %.9f lines %ld names %zu\n", acc, table[(n - 1) & 0xffff], lines,
         namelen);
  fprintf(stderr, "moves %d\n", static_cast<int>(g_moves));
  return 0;
}
