/* work_task.c -- the balancer benchmarks' task: a plain PVM program that
 * computes a fixed amount of work with mpvm_work (mpvm.h) and says how long
 * it took. It knows nothing of the balancer.
 *
 *   work_task W            W units of work (1 unit: 1 ms of one CPU here)
 *   work_task W SEED       a random amount in [0, 2W), the same for the same
 *                          SEED and rank (MPVM_RANK), whatever the placement
 *   work_task -b NB pinned|movable W [SEED]
 *                          the first NB ranks are background load (the
 *                          digest's E4, scaled by 1/100): each computes for
 *                          U(0, 300) units and sleeps U(0, 0.3) s in turn
 *                          until every other rank has ended; "pinned" ones
 *                          hold a file lock, so mpvm refuses to move them.
 *                          The others work as above and report rank - NB.
 */
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <time.h>
#include <unistd.h>

#include "mpvm.h"

static double now_s(void) {
  struct timespec t;
  clock_gettime(CLOCK_REALTIME, &t); /* comparable between the tasks of a job */
  return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

static double rank_uniform(unsigned long seed, int rank) {
  uint64_t x = (uint64_t)seed * 0x9e3779b97f4a7c15ULL + (uint64_t)rank + 1;
  x ^= x >> 33;
  x *= 0xff51afd7ed558ccdULL;
  x ^= x >> 33;
  x *= 0xc4ceb9fe1a85ec53ULL;
  x ^= x >> 33;
  return (double)(x >> 11) / 9007199254740992.0; /* [0, 1) */
}

enum { kDoneTag = 77 };

/* Another user's work: computes and sleeps in turn until `workers` "done"
 * messages have come. */
static int background(int pinned, int workers) {
  int lock = -1;
  if (pinned) { /* a file lock: mpvm leaves a task holding one where it is */
    char path[64];
    snprintf(path, sizeof path, "/tmp/work_task.%d.lock", (int)getpid());
    lock = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    unlink(path);
    if (lock < 0 || flock(lock, LOCK_EX) != 0) return 1;
  }
  unsigned long step = 0;
  for (int done = 0; done < workers; ++step) {
    const double run = 300 * rank_uniform(2 * step, mpvm_rank());
    const double rest = 0.3 * rank_uniform(2 * step + 1, mpvm_rank());
    if (mpvm_work(run) != 0) return 1;
    struct timespec ts = {(time_t)rest, (long)((rest - (time_t)rest) * 1e9)};
    nanosleep(&ts, NULL);
    while (pvm_nrecv(-1, kDoneTag) > 0) ++done;
  }
  if (lock >= 0) close(lock);
  pvm_exit();
  return 0;
}

/* Tells every background rank (the first `nb` siblings) this one is done. */
static void say_done(int nb) {
  int* tids = NULL;
  const int n = pvm_siblings(&tids);
  for (int i = 0; i < nb && i < n; ++i) {
    pvm_initsend(PvmDataDefault);
    pvm_send(tids[i], kDoneTag);
  }
}

int main(int argc, char** argv) {
  int nb = 0, pinned = 0, arg = 1;
  if (argc >= 4 && strcmp(argv[1], "-b") == 0) {
    nb = atoi(argv[2]);
    pinned = strcmp(argv[3], "pinned") == 0;
    arg = 4;
  }
  if (argc < arg + 1) {
    fprintf(stderr, "usage: work_task [-b NB pinned|movable] W [SEED]\n");
    return 2;
  }
  pvm_mytid();
  if (nb > 0 && mpvm_rank() < nb) return background(pinned, mpvm_size() - nb);
  const int rank = mpvm_rank() - nb;
  double units = atof(argv[arg]);
  if (argc >= arg + 2) units = 2 * units * rank_uniform(strtoul(argv[arg + 1], NULL, 10), rank);
  const double t0 = now_s();
  if (mpvm_work(units) != 0) return 1;
  const double t1 = now_s();
  printf("rank %d work %.0f took %.3f s start %.3f end %.3f\n", rank, units, t1 - t0, t0, t1);
  fflush(stdout);
  if (nb > 0) say_done(nb);
  pvm_exit();
  return 0;
}
