/* pingpong.c -- PVM ping-pong between the two tasks of a launch (pvm_siblings),
 * built unchanged against mpvm and Debian's PVM. Rank 0 prints, for each size,
 * the median round-trip time in microseconds over REPS exchanges.
 *   pingpong [encoding: raw|xdr|inplace] */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>

#include "pvm3.h"

static double now_us(void) {
  struct timeval tv;
  gettimeofday(&tv, 0);
  return tv.tv_sec * 1e6 + tv.tv_usec;
}
static int cmp(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return x < y ? -1 : x > y;
}

int main(int argc, char **argv) {
  int enc = PvmDataRaw;
  if (argc > 1 && !strcmp(argv[1], "xdr")) enc = PvmDataDefault;
  if (argc > 1 && !strcmp(argv[1], "inplace")) enc = PvmDataInPlace;
  int sizes[] = {8, 1024, 65536, 1048576};
  int me = pvm_mytid(), *tids, n = pvm_siblings(&tids);
  if (n != 2) {
    fprintf(stderr, "pingpong: start exactly 2 tasks\n");
    return 1;
  }
  int peer = tids[0] == me ? tids[1] : tids[0], first = tids[0] == me;
  char *buf = malloc(1048576);
  memset(buf, 1, 1048576);
  for (int s = 0; s < 4; s++) {
    int reps = sizes[s] >= 1048576 ? 50 : 500;
    double *t = malloc(sizeof(double) * reps);
    for (int r = -10; r < reps; r++) { /* 10 warm-up exchanges */
      double t0 = now_us();
      if (first) {
        pvm_initsend(enc);
        pvm_pkbyte(buf, sizes[s], 1);
        pvm_send(peer, 1);
        pvm_recv(peer, 1);
        pvm_upkbyte(buf, sizes[s], 1);
      } else {
        pvm_recv(peer, 1);
        pvm_upkbyte(buf, sizes[s], 1);
        pvm_initsend(enc);
        pvm_pkbyte(buf, sizes[s], 1);
        pvm_send(peer, 1);
      }
      if (r >= 0) t[r] = now_us() - t0;
    }
    qsort(t, reps, sizeof(double), cmp);
    if (first) printf("%d %.1f\n", sizes[s], t[reps / 2]);
    free(t);
  }
  fflush(stdout);
  pvm_exit();
  return 0;
}
