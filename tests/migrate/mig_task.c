/* mig_task.c — a PVM task for the migration tests. Unmodified PVM code: it
 * knows nothing of migration, which happens to it from outside.
 *
 *   mig_task spin N       compute N rounds (no PVM calls between); print a
 *                         checksum every N/10 rounds and at the end
 *   mig_task hold MIB     fill MIB MiB of heap with a pattern, say "ready",
 *                         wait for SIGUSR1 (in pvm_trecv) and check the data
 *                         (bench/migrate_cost.py moves it meanwhile)
 *   mig_task pipe N       spin N with a pipe of its own open (it cannot move)
 *   mig_task ring K N     the parent spawns K-1 more; a token of N rounds
 *                         goes around with checksummed, sequence-numbered
 *                         messages of varying size; each prints its result
 *   mig_task stream N H [MIB]
 *                         the parent (holding MIB MiB of data, so that a
 *                         move of it takes a while) spawns a partner on
 *                         host H; both send
 *                         each other N sequence-numbered, checksummed
 *                         messages in lock step, with a little computing
 *                         between, and check every one they receive; each
 *                         watches the other (pvm_notify) and says so and
 *                         exits 3 if it is lost
 *   mig_task share S      compute for S seconds of wall time; print the
 *                         share of a CPU it got in each second ("second 1
 *                         share 0.400"), then over all ("share 0.400"): an
 *                         emulated host's enforced speed, seen from a task
 *   mig_task call C ARG [pinned]
 *                         say "start", make one blocking call C (sleep,
 *                         nanosleep or poll for ARG s, read from the FIFO
 *                         ARG, system("sleep ARG; echo done"), or alarm(ARG)
 *                         while computing), say what it returned, with
 *                         errno and its duration ("call sleep returned 0
 *                         errno 0 after 3.00 s"), then compute 1 s more;
 *                         pinned: with a pipe open, so that it cannot move
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include "pvm3.h"

static uint64_t mix(uint64_t x) {
  x ^= x >> 33;
  x *= 0xff51afd7ed558ccdULL;
  x ^= x >> 33;
  return x;
}

static int spin(long n) {
  int me = pvm_mytid();
  uint64_t sum = 0;
  printf("start %s\n", me > 0 ? "enrolled" : "alone");
  fflush(stdout);
  for (long i = 1; i <= n; ++i) {
    sum = mix(sum + (uint64_t)i);
    if (i % (n / 10) == 0) {
      printf("at %ld sum %016llx\n", i, (unsigned long long)sum);
      fflush(stdout);
    }
  }
  printf("done sum %016llx\n", (unsigned long long)sum);
  pvm_exit();
  return 0;
}

static double seconds(clockid_t clock) {
  struct timespec t;
  clock_gettime(clock, &t);
  return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

static int share(double wall) {
  pvm_mytid();
  const double cpu0 = seconds(CLOCK_PROCESS_CPUTIME_ID), t0 = seconds(CLOCK_MONOTONIC);
  double cpu_mark = cpu0, mark = t0, now = t0;
  volatile uint64_t sum = 0;
  int second = 0;
  while (now - t0 < wall) {
    for (int i = 0; i < 100000; ++i) sum = mix(sum + (uint64_t)i);
    now = seconds(CLOCK_MONOTONIC);
    if (now - mark >= 1.0) {
      const double cpu = seconds(CLOCK_PROCESS_CPUTIME_ID);
      printf("second %d share %.3f\n", ++second, (cpu - cpu_mark) / (now - mark));
      fflush(stdout);
      cpu_mark = cpu;
      mark = now;
    }
  }
  printf("share %.3f\n", (seconds(CLOCK_PROCESS_CPUTIME_ID) - cpu0) / (now - t0));
  pvm_exit();
  return 0;
}

enum { kTagToken = 7, kTagTids = 8, kTagDone = 9 };

static int ring(int k, int rounds) {
  int me = pvm_mytid();
  int parent = pvm_parent();
  int tids[64];
  if (k < 2 || k > 64) return 2;
  if (parent == PvmNoParent || parent <= 0) {
    tids[0] = me;
    char* args[] = {"ring", NULL, NULL, NULL};
    char ks[16], ns[16];
    snprintf(ks, sizeof ks, "%d", k);
    snprintf(ns, sizeof ns, "%d", rounds);
    args[1] = ks;
    args[2] = ns;
    char self[4096];
    ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
    self[n > 0 ? n : 0] = '\0';
    if (pvm_spawn(self, args, PvmTaskDefault, "", k - 1, tids + 1) != k - 1) {
      fprintf(stderr, "spawn failed: %d %d %d\n", tids[1], tids[2], tids[3]);
      return 1;
    }
    pvm_initsend(PvmDataDefault);
    pvm_pkint(tids, k, 1);
    pvm_mcast(tids + 1, k - 1, kTagTids);
  } else {
    pvm_recv(parent, kTagTids);
    pvm_upkint(tids, k, 1);
  }
  int pos = 0;
  while (tids[pos] != me) ++pos;
  int next = tids[(pos + 1) % k], prev = tids[(pos + k - 1) % k];
  uint64_t sum = 0;
  static uint64_t buf[65536];
  for (int r = 0; r < rounds; ++r) {
    if (pos == 0) {
      int len = 1 + (int)(mix((uint64_t)r) % 4096);
      for (int i = 0; i < len; ++i) buf[i] = mix((uint64_t)r * 131 + (uint64_t)i);
      pvm_initsend(PvmDataDefault);
      pvm_pkint(&r, 1, 1);
      pvm_pkint(&len, 1, 1);
      pvm_pkbyte((char*)buf, len * 8, 1);
      pvm_send(next, kTagToken);
    }
    int seq, len;
    pvm_recv(prev, kTagToken);
    pvm_upkint(&seq, 1, 1);
    pvm_upkint(&len, 1, 1);
    pvm_upkbyte((char*)buf, len * 8, 1);
    if (seq != r) {
      printf("task %d: round %d got %d\n", pos, r, seq);
      return 1;
    }
    for (int i = 0; i < len; ++i) sum = mix(sum ^ buf[i]);
    if (pos != 0) {
      pvm_initsend(PvmDataDefault);
      pvm_pkint(&seq, 1, 1);
      pvm_pkint(&len, 1, 1);
      pvm_pkbyte((char*)buf, len * 8, 1);
      pvm_send(next, kTagToken);
    }
  }
  if (pos == 0) {
    for (int i = 1; i < k; ++i) {
      uint64_t s;
      int from;
      pvm_recv(tids[i], kTagDone);
      pvm_upkint(&from, 1, 1);
      pvm_upkbyte((char*)&s, 8, 1);
      printf("task %d sum %016llx\n", from, (unsigned long long)s);
    }
    printf("task 0 sum %016llx\n", (unsigned long long)sum);
  } else {
    pvm_initsend(PvmDataDefault);
    pvm_pkint(&pos, 1, 1);
    pvm_pkbyte((char*)&sum, 8, 1);
    pvm_send(tids[0], kTagDone);
  }
  pvm_exit();
  return 0;
}

enum { kTagStream = 10, kTagLost = 11, kStreamWords = 128 };

/* Sends message `i` to `to`: its number, then words derived from it. */
static void stream_send(int to, int i) {
  uint64_t w[kStreamWords];
  for (int k = 0; k < kStreamWords; ++k) w[k] = mix((uint64_t)i * 7919 + (uint64_t)k);
  pvm_initsend(PvmDataDefault);
  pvm_pkint(&i, 1, 1);
  pvm_pkbyte((char*)w, sizeof w, 1);
  pvm_send(to, kTagStream);
}

/* Receives message `i` from `from`; 0 if it is message i and intact, 3 if
 * `from` was lost (its PvmTaskExit notification came instead). */
static int stream_check(int from, int i) {
  uint64_t w[kStreamWords];
  int got = -1, bytes, tag, src;
  int bufid = pvm_recv(-1, -1);
  if (bufid < 0 || pvm_bufinfo(bufid, &bytes, &tag, &src) < 0) return 1;
  if (tag == kTagLost) {
    printf("partner t%x lost before message %d\n", from, i);
    return 3;
  }
  if (pvm_upkint(&got, 1, 1) < 0 || pvm_upkbyte((char*)w, sizeof w, 1) < 0) return 1;
  if (got != i) {
    printf("expected message %d, got %d\n", i, got);
    return 1;
  }
  for (int k = 0; k < kStreamWords; ++k)
    if (w[k] != mix((uint64_t)i * 7919 + (uint64_t)k)) {
      printf("message %d is damaged at word %d\n", i, k);
      return 1;
    }
  return 0;
}

static int stream(int n, const char* host, long mib) {
  int me = pvm_mytid();
  int parent = pvm_parent();
  int partner = parent;
  if (me <= 0) return 1;
  if (parent == PvmNoParent || parent <= 0) {
    size_t words = (size_t)mib << 17;
    uint64_t* ballast = words > 0 ? malloc(words * sizeof *ballast) : NULL;
    for (size_t k = 0; k < words && ballast != NULL; ++k) ballast[k] = mix(k);
    printf("start stream\n");
    fflush(stdout);
    char ns[16], self[4096];
    snprintf(ns, sizeof ns, "%d", n);
    char* args[] = {"stream", ns, (char*)host, NULL};
    ssize_t len = readlink("/proc/self/exe", self, sizeof self - 1);
    self[len > 0 ? len : 0] = '\0';
    if (pvm_spawn(self, args, PvmTaskHost, (char*)host, 1, &partner) != 1) {
      fprintf(stderr, "cannot spawn the partner on %s: %d\n", host, partner);
      return 1;
    }
  }
  uint64_t sum = 0;
  pvm_notify(PvmTaskExit, kTagLost, 1, &partner);
  for (int i = 1; i <= n; ++i) {
    stream_send(partner, i);
    int rc = stream_check(partner, i);
    if (rc != 0) return rc;
    for (int k = 0; k < 100000; ++k) sum = mix(sum + (uint64_t)k);
  }
  printf("%s got all %d (%llx)\n", parent > 0 ? "partner" : "mover", n,
         (unsigned long long)(sum & 0xf));
  pvm_exit();
  return 0;
}

static volatile sig_atomic_t g_usr1;
static void on_usr1(int sig) {
  (void)sig;
  g_usr1 = 1;
}

static int hold(long mib) {
  signal(SIGUSR1, on_usr1);
  int me = pvm_mytid();
  size_t n = (size_t)mib << 17; /* 8-byte words */
  uint64_t* data = malloc(n * sizeof *data);
  if (me <= 0 || data == NULL) return 1;
  for (size_t i = 0; i < n; ++i) data[i] = mix(i);
  printf("ready\n");
  fflush(stdout);
  while (!g_usr1) { /* waits in the library, where a move may interrupt it */
    struct timeval tv = {0, 100000};
    pvm_trecv(-1, 999, &tv);
  }
  for (size_t i = 0; i < n; ++i)
    if (data[i] != mix(i)) {
      printf("data differ at word %zu\n", i);
      return 1;
    }
  printf("intact\n");
  pvm_exit();
  return 0;
}

static volatile sig_atomic_t g_alarms;
static void on_alarm(int sig) {
  (void)sig;
  g_alarms = g_alarms + 1;
}

/* One blocking call of the kind a move must not disturb; its result. */
static long blocking_call(const char* c, const char* arg, int fifo) {
  const double secs = atof(arg);
  if (strcmp(c, "sleep") == 0) return (long)sleep((unsigned)secs);
  if (strcmp(c, "nanosleep") == 0) {
    struct timespec ts = {(time_t)secs, 0}, rem = {0, 0};
    return nanosleep(&ts, &rem);
  }
  if (strcmp(c, "poll") == 0) return poll(NULL, 0, (int)(secs * 1000));
  if (strcmp(c, "read") == 0) {
    char buf[64];
    return read(fifo, buf, sizeof buf);
  }
  if (strcmp(c, "system") == 0) {
    char cmd[64];
    snprintf(cmd, sizeof cmd, "sleep %s; echo done", arg);
    return system(cmd);
  }
  if (strcmp(c, "alarm") == 0) { /* computes until the alarm has fired */
    signal(SIGALRM, on_alarm);
    alarm((unsigned)secs);
    const double t0 = seconds(CLOCK_MONOTONIC);
    uint64_t sum = 0;
    while (g_alarms == 0 && seconds(CLOCK_MONOTONIC) - t0 < 2 * secs + 5) sum = mix(sum + 1);
    return g_alarms + (long)(sum & 0);
  }
  errno = EINVAL;
  return -1;
}

static int call(const char* c, const char* arg, int pinned) {
  int fds[2];
  if (pinned && pipe(fds) != 0) return 1;
  if (pvm_mytid() <= 0) return 1;
  const int fifo = strcmp(c, "read") == 0 ? open(arg, O_RDONLY) : -1;
  if (strcmp(c, "read") == 0 && fifo < 0) return 1;
  printf("start %s\n", c);
  fflush(stdout);
  const double t0 = seconds(CLOCK_MONOTONIC);
  errno = 0;
  const long r = blocking_call(c, arg, fifo);
  const int err = r < 0 ? errno : 0;
  printf("call %s returned %ld errno %d after %.2f s\n", c, r, err, seconds(CLOCK_MONOTONIC) - t0);
  fflush(stdout);
  if (fifo >= 0) close(fifo);
  const double t1 = seconds(CLOCK_MONOTONIC);
  uint64_t sum = 0;
  while (seconds(CLOCK_MONOTONIC) - t1 < 1.0) sum = mix(sum + 1); /* a move may happen now */
  printf("done %d\n", (int)(sum & 0));
  pvm_exit();
  return 0;
}

int main(int argc, char** argv) {
  if (argc >= 3 && strcmp(argv[1], "spin") == 0) return spin(atol(argv[2]));
  if (argc >= 3 && strcmp(argv[1], "hold") == 0) return hold(atol(argv[2]));
  if (argc >= 3 && strcmp(argv[1], "share") == 0) return share(atof(argv[2]));
  if (argc >= 3 && strcmp(argv[1], "pipe") == 0) {
    int fds[2];
    if (pipe(fds) != 0) return 1;
    return spin(atol(argv[2]));
  }
  if (argc >= 4 && strcmp(argv[1], "call") == 0)
    return call(argv[2], argv[3], argc >= 5 && strcmp(argv[4], "pinned") == 0);
  if (argc >= 4 && strcmp(argv[1], "ring") == 0) return ring(atoi(argv[2]), atoi(argv[3]));
  if (argc >= 4 && strcmp(argv[1], "stream") == 0)
    return stream(atoi(argv[2]), argv[3], argc >= 5 ? atol(argv[4]) : 0);
  fprintf(stderr,
          "usage: mig_task spin N | hold MIB | share S | pipe N | ring K N | stream N HOST [MIB]\n"
          "       mig_task call sleep|nanosleep|poll|read|system|alarm ARG [pinned]\n");
  return 2;
}
