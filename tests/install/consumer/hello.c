#include <stdio.h>
#include <pvm3.h>

int main(void) {
  printf("PVM %s, PvmNoParent=%d\n", pvm_version(), PvmNoParent);
  return 0;
}
