/* hop_task.c — measures forwarding hops while this task is moved around.
 *
 *   hop_task STOPFILE   spawns a sender, then receives its sequence-numbered
 *                       stream (acknowledged every 256 messages) until
 *                       STOPFILE exists; checks that nothing was lost,
 *                       doubled or reordered, and prints how often daemons
 *                       forwarded the messages on their way (mpvm.h)
 *   hop_task send       the sender (spawned by the above); prints its link
 *                       updates by the stale sends it made before each
 *
 * The test moves the receiver between hosts while the stream runs
 * (test_migrate.py: ForwardingTest).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "mpvm.h"
#include "pvm3.h"

enum { kTagData = 1, kTagAck = 2, kWindow = 256 };

/* Computes for about `us` microseconds (outside the library). */
static void compute(long us) {
  struct timespec t0, t;
  clock_gettime(CLOCK_MONOTONIC, &t0);
  do clock_gettime(CLOCK_MONOTONIC, &t);
  while ((t.tv_sec - t0.tv_sec) * 1000000L + (t.tv_nsec - t0.tv_nsec) / 1000 < us);
}

static int sender(void) {
  int parent = pvm_parent();
  char pad[64];
  memset(pad, 'x', sizeof pad);
  for (long seq = 0;; ++seq) {
    /* A little work per message: the sender is between sends, not waiting
     * for an acknowledgement, when a move of the receiver commits. */
    compute(20);
    pvm_initsend(PvmDataDefault);
    pvm_pklong(&seq, 1, 1);
    pvm_pkbyte(pad, sizeof pad, 1);
    pvm_send(parent, kTagData);
    if ((seq + 1) % kWindow != 0) continue;
    int stop = 0;
    pvm_recv(parent, kTagAck);
    pvm_upkint(&stop, 1, 1);
    if (stop) break;
  }
  long end = -1;
  pvm_initsend(PvmDataDefault);
  pvm_pklong(&end, 1, 1);
  pvm_send(parent, kTagData);
  unsigned long stale[4];
  int most = mpvm_stale_sends(stale, 4);
  printf("link updates by stale sends 0:%lu 1:%lu 2:%lu 3+:%lu max %d\n", stale[0], stale[1],
         stale[2], stale[3], most);
  pvm_exit();
  return 0;
}

int main(int argc, char** argv) {
  if (argc == 2 && strcmp(argv[1], "send") == 0) return sender();
  if (argc != 2) {
    fprintf(stderr, "usage: hop_task STOPFILE\n");
    return 2;
  }
  if (pvm_mytid() < 0) return 1;
  char self[4096];
  ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
  self[n > 0 ? n : 0] = '\0';
  char* args[] = {"send", NULL};
  int child;
  if (pvm_spawn(self, args, PvmTaskDefault, "", 1, &child) != 1) {
    fprintf(stderr, "cannot spawn the sender: %d\n", child);
    return 1;
  }
  printf("start\n");
  fflush(stdout);
  long want = 0;
  for (;;) {
    long seq;
    pvm_recv(child, kTagData);
    pvm_upklong(&seq, 1, 1);
    if (seq == -1) break;
    if (seq != want) {
      printf("out of order: got %ld, expected %ld\n", seq, want);
      return 1;
    }
    ++want;
    if (want % kWindow == 0) {
      int stop = access(argv[1], F_OK) == 0;
      pvm_initsend(PvmDataDefault);
      pvm_pkint(&stop, 1, 1);
      pvm_send(child, kTagAck);
    }
  }
  unsigned long hops[4];
  int most = mpvm_forward_hops(hops, 4);
  printf("received %ld in order\n", want);
  printf("hops 0:%lu 1:%lu 2:%lu 3+:%lu max %d\n", hops[0], hops[1], hops[2], hops[3], most);
  pvm_exit();
  return 0;
}
