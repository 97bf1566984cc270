/* waitinfo.c -- block until a mailbox entry NAME exists (PvmMboxWaitForInfo).
 * Lets the differential test start task1 only after task0 has registered. */
#include <stdio.h>

#include "pvm3.h"

int main(int argc, char **argv) {
  if (argc != 2 || pvm_mytid() < 0) return 2;
  int b = pvm_recvinfo(argv[1], 0, PvmMboxWaitForInfo);
  pvm_exit();
  return b < 0 ? 1 : 0;
}
