/* work_task.c -- the balancer benchmarks' task: a plain PVM program that
 * computes a fixed amount of work with mpvm_work (mpvm.h) and says how long
 * it took. It knows nothing of the balancer.
 *
 *   work_task W            W units of work (1 unit: 1 ms of one CPU here)
 *   work_task W SEED       a random amount in [0, 2W), the same for the same
 *                          SEED and rank (MPVM_RANK), whatever the placement
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "mpvm.h"

static double now_s(void) {
  struct timespec t;
  clock_gettime(CLOCK_REALTIME, &t); /* comparable between the tasks of a job */
  return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

static double rank_uniform(unsigned long seed, int rank) {
  uint64_t x = (uint64_t)seed * 0x9e3779b97f4a7c15ULL + (uint64_t)rank + 1;
  x ^= x >> 33;
  x *= 0xff51afd7ed558ccdULL;
  x ^= x >> 33;
  x *= 0xc4ceb9fe1a85ec53ULL;
  x ^= x >> 33;
  return (double)(x >> 11) / 9007199254740992.0; /* [0, 1) */
}

int main(int argc, char** argv) {
  if (argc < 2) {
    fprintf(stderr, "usage: work_task W [SEED]\n");
    return 2;
  }
  double units = atof(argv[1]);
  if (argc >= 3) units = 2 * units * rank_uniform(strtoul(argv[2], NULL, 10), mpvm_rank());
  pvm_mytid();
  const double t0 = now_s();
  if (mpvm_work(units) != 0) return 1;
  const double t1 = now_s();
  printf("rank %d work %.0f took %.3f s start %.3f end %.3f\n", mpvm_rank(), units, t1 - t0, t0,
         t1);
  pvm_exit();
  return 0;
}
