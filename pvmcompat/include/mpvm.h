/*
 * mpvm.h -- mpvm's extensions to the PVM 3.4 API.
 *
 * Programs that use only <pvm3.h> stay portable to other PVMs; these calls
 * exist only under mpvm.
 */
#ifndef MPVM_H_
#define MPVM_H_

#include "pvm3.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Rank and size of this task in a `prun -n N` launch (0..N-1, N), or -1 when
 * not started by prun. */
int mpvm_rank(void);
int mpvm_size(void);

/* Moves task `tid` (this task included) to the host named `host` while it
 * runs; it keeps its tid. Returns the new host's daemon tid once the task runs
 * there, or a PVM error: PvmNoTask, PvmNoHost, PvmBadParam, or PvmSysErr when
 * the move was refused (the reason goes to stderr under PvmAutoErr). A refused
 * move leaves the task running where it was. */
int pvm_migrate(int tid, const char* host);

/* The daemon tid of the host where task `tid` runs now (pvm_tidtohost gives
 * the host it was born on, which its tid names). */
int pvm_location(int tid);

/* How many data messages this task has received, by the number of times
 * daemons forwarded them on their way because the task had moved away from
 * where they were sent (0: not forwarded). Fills counts[0..n-1] (the last
 * entry also counts anything forwarded more often) and returns the largest
 * number of hops seen, or PvmBadParam. */
int mpvm_forward_hops(unsigned long* counts, int n);

/* Stale sends: when a task this one has a direct link to moves away, its old
 * host tells this task so on the link (a link update), and this task sends to
 * it afresh from then on. Its stale sends on the link are the messages it
 * sent there between its last look at the link that found no update and the
 * look that found it (an upper bound on those sent after the update
 * arrived). The library looks after every send, so this is at most 1.
 * Fills counts[k] with the number of link updates after which this task had
 * made k stale sends (the last entry also counts more) and returns the most
 * on one link, or PvmBadParam. */
int mpvm_stale_sends(unsigned long* counts, int n);

/* Computes `units` of work, one unit being one millisecond of one CPU of
 * this machine (speed 1000), the work unit of the balancer's benchmarks. On
 * an emulated host in virtual-work mode (`prun --cpu virtual`) the task uses
 * no CPU: its work advances at the host's speed divided by the tasks working
 * there, checked every 10 ms, and it may move between quanta. Elsewhere it
 * computes for that much CPU time, which an emulated host's speed limit
 * stretches. Returns 0, or PvmBadParam for a negative or non-finite amount. */
int mpvm_work(double units);

#ifdef __cplusplus
}
#endif

#endif /* MPVM_H_ */
