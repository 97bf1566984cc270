/* chatty_pairs.c -- the tasks of the balancer's experiment E12: pairs of
 * plain PVM tasks that talk a lot to each other and compute little. It
 * knows nothing of migration.
 *
 *   prun -n 2P chatty_pairs ROUNDS BYTES [COMPUTE_US]
 *
 * The 2P tasks started together (pvm_siblings) pair up by position: 0 with
 * 1, 2 with 3, and so on. Round-robin placement on two hosts puts each pair
 * across them. In each round the even task of a pair sends BYTES to the
 * odd one, which sends them back, then each computes for COMPUTE_US
 * microseconds of its CPU time (default 20). Every message is checked.
 *
 * Each task prints its net communication time (wall time inside pvm_send
 * and pvm_recv) and its elapsed time:
 *   comm 3.412 s elapsed 4.020 s
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "pvm3.h"

enum { kTagPing = 7 };

static double clock_s(clockid_t id) {
  struct timespec t;
  clock_gettime(id, &t);
  return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

static void compute(double seconds) {
  const double until = clock_s(CLOCK_PROCESS_CPUTIME_ID) + seconds;
  while (clock_s(CLOCK_PROCESS_CPUTIME_ID) < until) {
  }
}

/* Sends `n` bytes of round `r` to `to`, and takes the time it took. */
static int send_round(int to, int r, char* buf, int n, double* comm) {
  memset(buf, (char)r, (size_t)n);
  const double t0 = clock_s(CLOCK_MONOTONIC);
  pvm_initsend(PvmDataRaw);
  pvm_pkint(&r, 1, 1);
  pvm_pkbyte(buf, n, 1);
  const int rc = pvm_send(to, kTagPing);
  *comm += clock_s(CLOCK_MONOTONIC) - t0;
  return rc;
}

/* Receives round `r` from `from`, checks it, and takes the time it took. */
static int recv_round(int from, int r, char* buf, int n, double* comm) {
  const double t0 = clock_s(CLOCK_MONOTONIC);
  int got = -1;
  if (pvm_recv(from, kTagPing) < 0 || pvm_upkint(&got, 1, 1) < 0 || pvm_upkbyte(buf, n, 1) < 0)
    return -1;
  *comm += clock_s(CLOCK_MONOTONIC) - t0;
  for (int i = 0; i < n; ++i)
    if (buf[i] != (char)r) return -1;
  return got == r ? 0 : -1;
}

int main(int argc, char** argv) {
  if (argc < 3) {
    fprintf(stderr, "usage: prun -n 2P chatty_pairs ROUNDS BYTES [COMPUTE_US]\n");
    return 2;
  }
  const int rounds = atoi(argv[1]), bytes = atoi(argv[2]);
  const double compute_s = (argc > 3 ? atof(argv[3]) : 20) / 1e6;
  pvm_mytid();
  int* tids = NULL;
  const int n = pvm_siblings(&tids);
  int me = -1;
  for (int i = 0; i < n; ++i)
    if (tids[i] == pvm_mytid()) me = i;
  if (n < 2 || me < 0 || (me ^ 1) >= n || bytes < 1 || rounds < 1) {
    fprintf(stderr, "chatty_pairs: needs an even number of tasks (prun -n 2P), got %d\n", n);
    pvm_exit();
    return 2;
  }
  const int peer = tids[me ^ 1], even = (me % 2) == 0;
  char* buf = malloc((size_t)bytes);
  double comm = 0;
  const double start = clock_s(CLOCK_MONOTONIC);
  for (int r = 0; r < rounds; ++r) {
    const int bad = even ? send_round(peer, r, buf, bytes, &comm) < 0 ||
                               recv_round(peer, r, buf, bytes, &comm) < 0
                         : recv_round(peer, r, buf, bytes, &comm) < 0 ||
                               send_round(peer, r, buf, bytes, &comm) < 0;
    if (bad) {
      fprintf(stderr, "chatty_pairs: task %d: round %d failed\n", me, r);
      pvm_exit();
      return 1;
    }
    compute(compute_s);
  }
  printf("comm %.3f s elapsed %.3f s\n", comm, clock_s(CLOCK_MONOTONIC) - start);
  free(buf);
  pvm_exit();
  return 0;
}
