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

#ifdef __cplusplus
}
#endif

#endif /* MPVM_H_ */
