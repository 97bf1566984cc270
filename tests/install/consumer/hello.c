#include <pvm3.h>
#include <stdio.h>

int main(void) {
  printf("PVM %s, PvmNoParent=%d\n", pvm_version(), PvmNoParent);
  return 0;
}
