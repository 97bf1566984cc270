/* mpi_pingpong.c -- the Open MPI counterpart of pingpong.c. */
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int cmp(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return x < y ? -1 : x > y;
}

int main(int argc, char **argv) {
  int rank, sizes[] = {8, 1024, 65536, 1048576};
  MPI_Init(&argc, &argv);
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  char *buf = malloc(1048576);
  memset(buf, 1, 1048576);
  for (int s = 0; s < 4; s++) {
    int reps = sizes[s] >= 1048576 ? 50 : 500;
    double *t = malloc(sizeof(double) * reps);
    for (int r = -10; r < reps; r++) {
      double t0 = MPI_Wtime();
      if (rank == 0) {
        MPI_Send(buf, sizes[s], MPI_BYTE, 1, 1, MPI_COMM_WORLD);
        MPI_Recv(buf, sizes[s], MPI_BYTE, 1, 1, MPI_COMM_WORLD, MPI_STATUS_IGNORE);
      } else {
        MPI_Recv(buf, sizes[s], MPI_BYTE, 0, 1, MPI_COMM_WORLD, MPI_STATUS_IGNORE);
        MPI_Send(buf, sizes[s], MPI_BYTE, 0, 1, MPI_COMM_WORLD);
      }
      if (r >= 0) t[r] = (MPI_Wtime() - t0) * 1e6;
    }
    qsort(t, reps, sizeof(double), cmp);
    if (rank == 0) printf("%d %.1f\n", sizes[s], t[reps / 2]);
    free(t);
  }
  MPI_Finalize();
  return 0;
}
