/*
 * child.c -- helper task for the API and integration tests.
 *
 *   child echo          receive messages from the parent and send them back
 *                       until tag 0 arrives
 *   child exit N        exit with status N right away
 *   child crash         die of SIGSEGV
 *   child print TEXT    print TEXT without a newline and exit at once
 *   child flood N       print N numbered lines, then exit
 *   child threads       report the thread count, then block in pvm_recv
 *   child hold          print "ready" and block in pvm_recv forever
 *   child tick          print "tick N" every 50 ms, with its pid first, forever
 *   child ring ROUNDS   pass a counter round the prun siblings
 *   child env NAME      print NAME=value of an environment variable
 *   child selfout       send its own output to its parent (PvmSelfOutputTid)
 *   child watchhost HEX wait for the PvmHostDelete notify of host tid HEX
 *   child stream N MAX  send N checked messages (1..MAX bytes) to the other
 *                       task of a 2-task launch and check the N it sends
 *   child sendafter     of a 2-task launch: rank 1 says "ready PID" and
 *                       answers one message; rank 0 says "waiting PID",
 *                       waits for SIGUSR1, then times its first send to
 *                       rank 1 ("send RC took S s") and says "answered"
 */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/personality.h>
#include <time.h>
#include <unistd.h>

#include "pvm3.h"

static int threads(void) {
  FILE *f = fopen("/proc/self/status", "r");
  char line[256];
  int n = -1;
  while (f && fgets(line, sizeof line, f))
    if (sscanf(line, "Threads: %d", &n) == 1) break;
  if (f) fclose(f);
  return n;
}

/* sendafter: see the usage above. */
static int send_after(int me) {
  int *tids, n = pvm_siblings(&tids);
  if (n != 2) return 3;
  if (tids[1] == me) {
    printf("ready %d\n", (int)getpid());
    fflush(stdout);
    pvm_recv(tids[0], 41);
    pvm_initsend(PvmDataDefault);
    pvm_send(tids[0], 42);
    pvm_exit();
    return 0;
  }
  sigset_t usr1;
  int sig = 0;
  sigemptyset(&usr1);
  sigaddset(&usr1, SIGUSR1);
  sigprocmask(SIG_BLOCK, &usr1, NULL);
  printf("waiting %d\n", (int)getpid());
  fflush(stdout);
  sigwait(&usr1, &sig);
  struct timespec t0, t1;
  clock_gettime(CLOCK_MONOTONIC, &t0);
  pvm_initsend(PvmDataDefault);
  int rc = pvm_send(tids[1], 41);
  clock_gettime(CLOCK_MONOTONIC, &t1);
  printf("send %d took %.3f s\n", rc,
         (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9);
  fflush(stdout);
  pvm_recv(tids[1], 42);
  printf("answered\n");
  pvm_exit();
  return 0;
}

int main(int argc, char **argv) {
  const char *mode = argc > 1 ? argv[1] : "echo";
  if (!strcmp(mode, "exit")) return argc > 2 ? atoi(argv[2]) : 0;
  if (!strcmp(mode, "crash")) {
    fflush(stdout);
    signal(SIGSEGV, SIG_DFL); /* a plain crash, even under AddressSanitizer */
    raise(SIGSEGV);
  }
  if (!strcmp(mode, "print")) {
    printf("%s", argc > 2 ? argv[2] : "");
    return 0; /* no newline, no flush, no pvm_exit: the output must still arrive */
  }
  if (!strcmp(mode, "layout")) { /* address-space randomisation: on or off */
    printf("aslr %s\n", (personality(0xffffffff) & ADDR_NO_RANDOMIZE) ? "off" : "on");
    return 0;
  }
  if (!strcmp(mode, "env")) {
    const char *v = getenv(argc > 2 ? argv[2] : "");
    printf("%s=%s\n", argc > 2 ? argv[2] : "", v ? v : "(unset)");
    return 0;
  }
  if (!strcmp(mode, "flood")) {
    int n = argc > 2 ? atoi(argv[2]) : 1000;
    for (int i = 0; i < n; i++) printf("line %d of %d\n", i, n);
    return 0;
  }
  int me = pvm_mytid();
  if (me < 0) return 3;
  if (!strcmp(mode, "selfout")) { /* send my own stdout to my parent, tag 77 */
    pvm_setopt(PvmSelfOutputCode, 77);
    pvm_setopt(PvmSelfOutputTid, pvm_parent());
    printf("redirected\n");
    fflush(stdout);
    pvm_exit();
    return 0;
  }
  if (!strcmp(mode, "stream")) { /* stream N MAXBYTES: exchange checked messages with the sibling */
    int n = atoi(argv[2]), max = atoi(argv[3]), *tids, ns = pvm_siblings(&tids);
    int peer = tids[0] == me ? tids[1] : tids[0], bad = 0, got = 0;
    unsigned seed = (unsigned)me;
    char *buf = malloc((size_t)max), *in = malloc((size_t)max);
    if (ns != 2) return 4;
    for (int i = 0; i < n || got < n; i++) {
      if (i < n) {
        int len = (int)(rand_r(&seed) % (unsigned)max) + 1;
        unsigned sum = 0;
        for (int k = 0; k < len; k++)
          sum = sum * 31 + (unsigned char)(buf[k] = (char)rand_r(&seed));
        pvm_initsend(PvmDataRaw);
        pvm_pkint(&i, 1, 1);
        pvm_pkint(&len, 1, 1);
        pvm_pkbyte(buf, len, 1);
        pvm_pkuint(&sum, 1, 1);
        pvm_send(peer, 11);
      }
      while (got < n && (i >= n ? pvm_recv(peer, 11) : pvm_nrecv(peer, 11)) > 0) {
        int seq, len;
        unsigned sum, mine = 0;
        pvm_upkint(&seq, 1, 1);
        pvm_upkint(&len, 1, 1);
        if (len < 1 || len > max) {
          bad++;
          break;
        }
        pvm_upkbyte(in, len, 1);
        pvm_upkuint(&sum, 1, 1);
        for (int k = 0; k < len; k++) mine = mine * 31 + (unsigned char)in[k];
        if (seq != got || sum != mine) bad++;
        got++;
        if (i < n) break;
      }
    }
    printf("stream: received %d of %d in order, %d bad\n", got, n, bad);
    free(buf);
    free(in);
    pvm_exit();
    return bad != 0;
  }
  if (!strcmp(mode, "watchhost")) { /* wait for PvmHostDelete of host HEXTID */
    int host = (int)strtol(argv[2], 0, 16), who = 0;
    pvm_notify(PvmHostDelete, 70, 1, &host);
    printf("watching %x\n", host);
    fflush(stdout);
    pvm_recv(-1, 70);
    pvm_upkint(&who, 1, 1);
    printf("host deleted %x\n", who);
    pvm_exit();
    return 0;
  }
  if (!strcmp(mode, "threads")) {
    volatile double x = 0;
    for (int i = 0; i < 20000000; i++) x += i * 0.5; /* compute */
    printf("threads while computing: %d\n", threads());
    printf("pid %d blocking\n", (int)getpid());
    fflush(stdout);
    pvm_recv(-1, 1);
    printf("threads after recv: %d\n", threads());
    pvm_exit();
    return 0;
  }
  if (!strcmp(mode, "recvone")) { /* take one message, then exit with the rest unread */
    pvm_recv(-1, -1);
    _exit(0);
  }
  if (!strcmp(mode, "bigcheck")) { /* answer a message's length and byte sum */
    int bytes = 0;
    pvm_recv(pvm_parent(), 31);
    pvm_bufinfo(pvm_getrbuf(), &bytes, NULL, NULL);
    unsigned char *buf = malloc((size_t)bytes);
    unsigned long sum = 0;
    if (buf == NULL || pvm_upkbyte((char *)buf, bytes, 1) < 0) return 4;
    for (int i = 0; i < bytes; i++) sum = sum * 31 + buf[i];
    pvm_initsend(PvmDataDefault);
    pvm_pkint(&bytes, 1, 1);
    pvm_pkulong(&sum, 1, 1);
    pvm_send(pvm_parent(), 32);
    pvm_exit();
    return 0;
  }
  if (!strcmp(mode, "freezeleave")) { /* join GROUP, freeze it at 2, leave, tell the parent */
    char *g = argv[2];
    int inst = pvm_joingroup(g), size = pvm_freezegroup(g, 2), left = pvm_lvgroup(g);
    pvm_initsend(PvmDataDefault);
    pvm_pkint(&inst, 1, 1);
    pvm_pkint(&size, 1, 1);
    pvm_pkint(&left, 1, 1);
    pvm_send(pvm_parent(), 91);
    pvm_exit();
    return 0;
  }
  if (!strcmp(mode, "tick")) {
    printf("pid %d\n", (int)getpid());
    for (long n = 0;; ++n) {
      printf("tick %ld\n", n);
      fflush(stdout);
      usleep(50000);
    }
  }
  if (!strcmp(mode, "sendafter")) return send_after(me);
  if (!strcmp(mode, "hold")) {
    printf("ready %x\n", me);
    fflush(stdout);
    pvm_recv(-1, 12345);
    pvm_exit();
    return 0;
  }
  if (!strcmp(mode, "ring")) {
    int rounds = argc > 2 ? atoi(argv[2]) : 1, *tids, n = pvm_siblings(&tids), r = -1;
    for (int i = 0; i < n; i++)
      if (tids[i] == me) r = i;
    for (int k = 0; k < rounds; k++) {
      int v = 0;
      if (r == 0) {
        pvm_initsend(PvmDataDefault);
        pvm_pkint(&v, 1, 1);
        pvm_send(tids[(r + 1) % n], 5);
        pvm_recv(tids[n - 1], 5);
        pvm_upkint(&v, 1, 1);
        if (v != n - 1) return 9;
      } else {
        pvm_recv(tids[r - 1], 5);
        pvm_upkint(&v, 1, 1);
        v++;
        pvm_initsend(PvmDataDefault);
        pvm_pkint(&v, 1, 1);
        pvm_send(tids[(r + 1) % n], 5);
      }
    }
    printf("rank %s of %s ok\n", getenv("MPVM_RANK"), getenv("MPVM_SIZE"));
    pvm_exit();
    return 0;
  }
  /* echo */
  int parent = pvm_parent();
  for (;;) {
    int b = pvm_recv(parent, -1), len, tag, src;
    pvm_bufinfo(b, &len, &tag, &src);
    if (tag == 0) break;
    pvm_setsbuf(pvm_mkbuf(PvmDataRaw));
    pvm_freebuf(pvm_setsbuf(b)); /* send the received buffer back as is */
    pvm_send(parent, tag);
  }
  pvm_exit();
  return 0;
}
