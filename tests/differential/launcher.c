/*
 * launcher.c -- spawn N copies of a PVM program, collect their output with
 * pvm_catchout, and wait for all of them. Built against mpvm and against
 * Debian's PVM so both runs of the differential test start programs alike.
 *
 *   launcher N program [args...]
 */
#include <stdio.h>
#include <stdlib.h>

#include "pvm3.h"

int main(int argc, char **argv) {
  if (argc < 3) {
    fprintf(stderr, "usage: launcher N program [args...]\n");
    return 2;
  }
  int n = atoi(argv[1]);
  int tids[64];
  if (n < 1 || n > 64) return 2;
  if (pvm_mytid() < 0) return 1;
  pvm_catchout(stdout);
  int ok = pvm_spawn(argv[2], argc > 3 ? argv + 3 : (char **)0, PvmTaskDefault, "", n, tids);
  if (ok != n) {
    fprintf(stderr, "launcher: started %d of %d (first code %d)\n", ok, n, tids[0]);
    pvm_exit();
    return 1;
  }
  pvm_notify(PvmTaskExit, 999, n, tids);
  for (int i = 0; i < n; i++) pvm_recv(-1, 999);
  pvm_exit(); /* waits for the children's output */
  return 0;
}
