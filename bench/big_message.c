/* big_message.c -- one large PVM message between the two tasks of a launch
 * (pvm_siblings), built unchanged against mpvm and Debian's PVM. Rank 0 packs
 * MIB mebibytes with PvmDataInPlace in 256 MiB pvm_pkbyte pieces of one
 * buffer and sends them; rank 1 receives, checks every byte and answers.
 * Each rank prints its times and its peak resident memory (ru_maxrss).
 *   big_message MIB */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/time.h>

#include "pvm3.h"

#define PIECE (256L << 20)

static double now_s(void) {
  struct timeval tv;
  gettimeofday(&tv, 0);
  return tv.tv_sec + tv.tv_usec / 1e6;
}

static long peak_mib(void) {
  struct rusage ru;
  getrusage(RUSAGE_SELF, &ru);
  return ru.ru_maxrss / 1024;
}

static unsigned char pattern(long i) { return (unsigned char)(i * 7 + (i >> 20)); }

int main(int argc, char **argv) {
  long mib = argc > 1 ? atol(argv[1]) : 1100, total = mib << 20;
  int me = pvm_mytid(), *tids, n = pvm_siblings(&tids), ok = 0;
  if (n != 2 || me < 0) {
    fprintf(stderr, "big_message: start exactly 2 tasks\n");
    return 1;
  }
  int peer = tids[0] == me ? tids[1] : tids[0];
  pvm_setopt(PvmRoute, PvmRouteDirect); /* both systems on their fastest route */
  if (tids[0] == me) {
    unsigned char *buf = malloc(PIECE);
    for (long i = 0; i < PIECE; i++) buf[i] = pattern(i);
    double t0 = now_s();
    pvm_initsend(PvmDataInPlace);
    for (long at = 0; at < total; at += PIECE) {
      long len = total - at < PIECE ? total - at : PIECE;
      int rc = pvm_pkbyte((char *)buf, (int)len, 1);
      if (rc < 0) {
        printf("pack failed: %d\n", rc);
        return 2;
      }
    }
    int rc = pvm_send(peer, 1);
    double t1 = now_s();
    if (rc < 0) {
      printf("send failed: %d\n", rc);
      return 2;
    }
    pvm_recv(peer, 2);
    pvm_upkint(&ok, 1, 1);
    double t2 = now_s();
    printf("sender MiB %ld send_s %.3f delivered_s %.3f intact %s peak_rss_mib %ld\n", mib, t1 - t0,
           t2 - t0, ok ? "yes" : "NO", peak_mib());
  } else {
    int bytes = 0;
    pvm_recv(peer, 1);
    pvm_bufinfo(pvm_getrbuf(), &bytes, NULL, NULL);
    unsigned char *got = malloc((size_t)bytes);
    ok = got != NULL && bytes == total && pvm_upkbyte((char *)got, bytes, 1) >= 0;
    for (long i = 0; ok && i < total; i++) ok = got[i] == pattern(i % PIECE);
    pvm_initsend(PvmDataDefault);
    pvm_pkint(&ok, 1, 1);
    pvm_send(peer, 2);
    printf("receiver MiB %ld bytes %d intact %s peak_rss_mib %ld\n", mib, bytes, ok ? "yes" : "NO",
           peak_mib());
  }
  pvm_exit();
  return ok ? 0 : 3;
}
