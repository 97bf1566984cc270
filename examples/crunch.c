/* crunch.c -- a plain PVM program that computes: each instance does the same
 * fixed amount of number crunching, then reports how long it took. Nothing
 * in it knows of migration or of the balancer; the README's demo runs it on
 * emulated hosts of mixed speed with mpvm's balancer off, then on.
 *
 *   prun -n 8 crunch [ROUNDS]      (default 600 million rounds, about 1.5 s
 *                                   of one CPU here)
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/time.h>

#include "pvm3.h"

static double now(void) {
  struct timeval tv;
  gettimeofday(&tv, NULL);
  return (double)tv.tv_sec + (double)tv.tv_usec / 1e6;
}

int main(int argc, char** argv) {
  const long rounds = argc > 1 ? atol(argv[1]) : 600000000L;
  const int me = pvm_mytid();
  const double t0 = now();
  uint64_t x = (uint64_t)me;
  for (long i = 0; i < rounds; ++i) {
    x ^= x >> 33;
    x = x * 0xff51afd7ed558ccdULL + (uint64_t)i;
  }
  printf("t%x crunched %ld rounds in %.2f s (checksum %016llx)\n", me, rounds, now() - t0,
         (unsigned long long)(x & 0xffff));
  pvm_exit();
  return 0;
}
