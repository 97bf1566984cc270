/* move_ring.c -- the task of bench/move_cost.py: a ring of K plain PVM tasks
 * in lock step, for measuring what a move costs the tasks that talk to the
 * moved one. It knows nothing of migration.
 *
 *   move_ring K ROUNDS [MAXBYTES]
 *
 * The first task spawns the other K-1. In each round every task sends one
 * message to each of three peers (the next, the previous, and the one half
 * way round), of a size between 1 byte and MAXBYTES (default 8192) that
 * depends on the round, the sender and the direction, then receives the
 * three sent to it, checks each one's round number and checksums its bytes.
 * A task cannot start round r+1 before its neighbours have sent round r, so
 * a stalled task stalls the ring.
 *
 * The first task prints, per task, the checksum of all it received (equal
 * to a run without moves) and its longest round; then the ring's time, from
 * when every task knows the others to the end of the last round.
 *
 * With MOVE_RING_ROUNDS=DIR in the environment each task also writes the
 * wall-clock end of each of its rounds to DIR/task-POS (one per line), to
 * see a move's cost as the moved task's peers see it.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "pvm3.h"

enum { kTagTids = 1, kTagDone = 2, kTagRound = 10, kMaxTasks = 256 };

static uint64_t mix(uint64_t x) {
  x ^= x >> 33;
  x *= 0xff51afd7ed558ccdULL;
  x ^= x >> 33;
  x *= 0xc4ceb9fe1a85ec53ULL;
  x ^= x >> 33;
  return x;
}

static double now_s(void) {
  struct timespec t;
  clock_gettime(CLOCK_REALTIME, &t); /* comparable with the daemons' records */
  return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

/* The k tids, in ring order: the first task spawns and tells the others. */
static int gather_ring(int k, int rounds, int maxbytes, int* tids) {
  int parent = pvm_parent();
  if (parent > 0) {
    pvm_recv(parent, kTagTids);
    return pvm_upkint(tids, k, 1);
  }
  char ks[16], ns[16], bs[16], self[4096];
  snprintf(ks, sizeof ks, "%d", k);
  snprintf(ns, sizeof ns, "%d", rounds);
  snprintf(bs, sizeof bs, "%d", maxbytes);
  char* args[] = {ks, ns, bs, NULL};
  ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
  self[n > 0 ? n : 0] = '\0';
  tids[0] = pvm_mytid();
  int got = pvm_spawn(self, args, PvmTaskDefault, "", k - 1, tids + 1);
  if (got != k - 1) {
    fprintf(stderr, "move_ring: spawned %d of %d tasks (%d)\n", got, k - 1, tids[1]);
    return -1;
  }
  pvm_initsend(PvmDataDefault);
  pvm_pkint(tids, k, 1);
  return pvm_mcast(tids + 1, k - 1, kTagTids);
}

static int message_len(int round, int from, int dir, int maxbytes) {
  return 1 + (int)(mix(((uint64_t)round << 20) ^ ((uint64_t)from << 4) ^ (uint64_t)dir) %
                   (uint64_t)maxbytes);
}

static void send_round(int round, int pos, int dir, int to, int maxbytes, unsigned char* buf) {
  int len = message_len(round, pos, dir, maxbytes);
  uint64_t seed = mix(((uint64_t)round << 24) ^ ((uint64_t)pos << 8) ^ (uint64_t)dir);
  for (int i = 0; i < len; ++i) buf[i] = (unsigned char)(seed >> ((i & 7) * 8)) ^ (unsigned char)i;
  pvm_initsend(PvmDataDefault);
  pvm_pkint(&round, 1, 1);
  pvm_pkint(&len, 1, 1);
  pvm_pkbyte((char*)buf, len, 1);
  pvm_send(to, kTagRound + dir);
}

/* Receives round `round` from `from` in direction `dir`; 0 if it was in order. */
static int recv_round(int round, int from, int dir, unsigned char* buf, uint64_t* sum) {
  int seq = -1, len = 0;
  pvm_recv(from, kTagRound + dir);
  pvm_upkint(&seq, 1, 1);
  pvm_upkint(&len, 1, 1);
  pvm_upkbyte((char*)buf, len, 1);
  if (seq != round) return -1;
  for (int i = 0; i < len; ++i) *sum = mix(*sum ^ ((uint64_t)buf[i] << (i & 31)));
  return 0;
}

struct Result {
  uint64_t sum;
  double seconds, longest;
  int longest_round;
};

static FILE* open_times(int pos) {
  const char* dir = getenv("MOVE_RING_ROUNDS");
  if (!dir || !*dir) return NULL;
  char path[4096];
  snprintf(path, sizeof path, "%s/task-%d", dir, pos);
  return fopen(path, "w");
}

static int run_rounds(int k, int pos, const int* tids, int rounds, int maxbytes,
                      struct Result* res) {
  static unsigned char buf[1 << 20];
  const int hop[3] = {1, k - 1, k / 2}; /* next, previous, half way round */
  const double t0 = now_s();
  double last = t0;
  FILE* times = open_times(pos);
  for (int r = 0; r < rounds; ++r) {
    for (int d = 0; d < 3; ++d) send_round(r, pos, d, tids[(pos + hop[d]) % k], maxbytes, buf);
    for (int d = 0; d < 3; ++d) {
      if (recv_round(r, tids[(pos + k - hop[d]) % k], d, buf, &res->sum) != 0) {
        fprintf(stderr, "move_ring: task %d got a message out of order in round %d\n", pos, r);
        return -1;
      }
    }
    const double t = now_s();
    if (t - last > res->longest) {
      res->longest = t - last;
      res->longest_round = r;
    }
    last = t;
    if (times) fprintf(times, "%.6f\n", t);
  }
  if (times) fclose(times);
  res->seconds = last - t0;
  return 0;
}

static void report(int k, int pos, const int* tids, const struct Result* mine) {
  if (pos != 0) {
    pvm_initsend(PvmDataDefault);
    pvm_pkint(&pos, 1, 1);
    pvm_pkbyte((char*)mine, sizeof *mine, 1);
    pvm_send(tids[0], kTagDone);
    return;
  }
  double ring = mine->seconds;
  printf("task 0 sum %016llx longest %.4f s round %d\n", (unsigned long long)mine->sum,
         mine->longest, mine->longest_round);
  for (int i = 1; i < k; ++i) {
    struct Result r;
    int from;
    pvm_recv(-1, kTagDone);
    pvm_upkint(&from, 1, 1);
    pvm_upkbyte((char*)&r, sizeof r, 1);
    printf("task %d sum %016llx longest %.4f s round %d\n", from, (unsigned long long)r.sum,
           r.longest, r.longest_round);
    if (r.seconds > ring) ring = r.seconds;
  }
  printf("ring %.4f s\n", ring);
}

int main(int argc, char** argv) {
  if (argc < 3) {
    fprintf(stderr, "usage: move_ring K ROUNDS [MAXBYTES]\n");
    return 2;
  }
  const int k = atoi(argv[1]), rounds = atoi(argv[2]);
  const int maxbytes = argc > 3 ? atoi(argv[3]) : 8192;
  if (k < 2 || k > kMaxTasks || rounds < 1 || maxbytes < 1 || maxbytes > (1 << 20)) {
    fprintf(stderr, "move_ring: K in [2, %d], ROUNDS >= 1, MAXBYTES in [1, 1 MiB]\n", kMaxTasks);
    return 2;
  }
  int tids[kMaxTasks];
  if (pvm_mytid() < 0 || gather_ring(k, rounds, maxbytes, tids) < 0) return 1;
  int pos = 0;
  while (tids[pos] != pvm_mytid()) ++pos;
  struct Result res;
  memset(&res, 0, sizeof res);
  const int ok = run_rounds(k, pos, tids, rounds, maxbytes, &res);
  if (ok == 0) report(k, pos, tids, &res);
  pvm_exit();
  return ok == 0 ? 0 : 1;
}
