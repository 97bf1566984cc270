/*
 * ring.c -- pass a token around all tasks of a prun launch.
 *
 *   prun -n 8 ./ring [rounds]
 *
 * Each task finds its neighbours with pvm_siblings(); task 0 starts the
 * token, every task adds its rank, and task 0 checks the sum each round.
 */
#include <stdio.h>
#include <stdlib.h>

#include "pvm3.h"

int main(int argc, char **argv) {
  int rounds = argc > 1 ? atoi(argv[1]) : 3;
  int *tids;
  int mytid = pvm_mytid();
  if (mytid < 0) {
    pvm_perror("ring: pvm_mytid");
    return 1;
  }
  int n = pvm_siblings(&tids);
  int me = 0;
  for (int i = 0; i < n; i++)
    if (tids[i] == mytid) me = i;
  int next = tids[(me + 1) % n], prev = tids[(me + n - 1) % n];
  int expected = n * (n - 1) / 2;

  for (int r = 0; r < rounds; r++) {
    int token;
    if (me == 0) {
      token = 0;
      pvm_initsend(PvmDataDefault);
      pvm_pkint(&token, 1, 1);
      pvm_send(next, 1);
      pvm_recv(prev, 1);
      pvm_upkint(&token, 1, 1);
      printf("round %d: token %d %s\n", r, token, token == expected ? "ok" : "WRONG");
      if (token != expected) return 1;
    } else {
      pvm_recv(prev, 1);
      pvm_upkint(&token, 1, 1);
      token += me;
      pvm_initsend(PvmDataDefault);
      pvm_pkint(&token, 1, 1);
      pvm_send(next, 1);
    }
  }
  if (me == 0) printf("%d tasks passed the token %d times\n", n, rounds);
  pvm_exit();
  return 0;
}
