/* spawn_latency.c -- median time of pvm_spawn of one task on a given host
 * (the call returns once the task runs there), over N calls; each task exits
 * at once. Prints "host N median_ms p90_ms".
 *   spawn_latency HOST N PROGRAM */
#include <stdio.h>
#include <stdlib.h>
#include <sys/time.h>

#include "pvm3.h"

static double now_ms(void) {
  struct timeval tv;
  gettimeofday(&tv, 0);
  return tv.tv_sec * 1e3 + tv.tv_usec / 1e3;
}
static int cmp(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return x < y ? -1 : x > y;
}

int main(int argc, char **argv) {
  if (argc < 4) return 2;
  int n = atoi(argv[2]);
  double *t = malloc(sizeof(double) * n);
  char *args[] = {"exit", "0", 0};
  if (pvm_mytid() < 0) return 1;
  for (int i = 0; i < n; i++) {
    int tid;
    double t0 = now_ms();
    if (pvm_spawn(argv[3], args, PvmTaskHost, argv[1], 1, &tid) != 1) {
      fprintf(stderr, "spawn on %s failed: %d\n", argv[1], tid);
      return 1;
    }
    t[i] = now_ms() - t0;
    pvm_notify(PvmTaskExit, 9, 1, &tid);
    pvm_recv(-1, 9); /* reap before the next one */
  }
  qsort(t, n, sizeof(double), cmp);
  printf("%s %d %.2f %.2f\n", argv[1], n, t[n / 2], t[n * 9 / 10]);
  pvm_exit();
  return 0;
}
