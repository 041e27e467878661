/*
 * overlap: how much of the time of MPI_File_iwrite_at a program hides
 * behind computation. First the I/O alone: post, wait (time T_io). Then
 * post, compute for 3 T_io + 20 ms (a busy loop), and time MPI_Wait alone
 * (W): the I/O left for MPI_Wait to do. The hidden share is 1 - W / T_io,
 * between 0 (nothing progressed during the computation: the driver does its
 * work inside MPI_Wait, as ROMIO's own does, mpich #5920) and 1 (all of it);
 * tests/integration.sh asserts it. Each figure is the median of five runs.
 *
 * A second figure, hidden_eq, is the share hidden behind a computation as
 * long as the I/O (C = T_io; total T): (T_io + C - T) / T_io. It is printed,
 * not asserted: it measures free cores as much as the driver. The busy loop
 * holds one core, and the I/O needs CPU of its own at the same moment (the
 * rank's copy into the shared-memory ring, the server's writes). On this
 * project's 2-core machine, shared with other work, it measured 0.45-0.64
 * (load 2 to 13) and was seen at 0.00 (issue 10) with the same driver,
 * while the hidden share above stayed 1.00.
 * Prints one line:
 *   overlap MiB=.. io_ms=.. wait_ms=.. hidden=0.NN total_eq_ms=.. hidden_eq=0.NN
 *
 *   mpiexec -n 1 overlap PATH [MiB]
 */
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>

#define RUNS 5

static double spin(double secs)
{
    volatile double x = 0;
    double t0 = MPI_Wtime();
    while (MPI_Wtime() - t0 < secs)
        for (int k = 0; k < 1000; k++)
            x += k * 1e-9;
    return x;
}

/* One iwrite of n bytes with compute seconds of work before the wait;
 * returns the whole time, and the time of MPI_Wait alone in *wait. */
static double run(const char *path, char *buf, long n, double compute, double *wait)
{
    MPI_File fh;
    MPI_Request req;
    if (MPI_File_open(MPI_COMM_SELF, path, MPI_MODE_CREATE | MPI_MODE_WRONLY, MPI_INFO_NULL, &fh)
        != MPI_SUCCESS)
        MPI_Abort(MPI_COMM_WORLD, 1);
    double t0 = MPI_Wtime();
    if (MPI_File_iwrite_at(fh, 0, buf, (int) n, MPI_BYTE, &req) != MPI_SUCCESS)
        MPI_Abort(MPI_COMM_WORLD, 1);
    if (compute > 0)
        spin(compute);
    double t1 = MPI_Wtime();
    MPI_Wait(&req, MPI_STATUS_IGNORE);
    double t2 = MPI_Wtime();
    MPI_File_close(&fh);
    if (wait)
        *wait = t2 - t1;
    return t2 - t0;
}

static int cmp(const void *a, const void *b)
{
    double x = *(const double *) a, y = *(const double *) b;
    return (x > y) - (x < y);
}

static double median(double *v)
{
    qsort(v, RUNS, sizeof *v, cmp);
    return v[RUNS / 2];
}

int main(int argc, char **argv)
{
    MPI_Init(&argc, &argv);
    long mib = argc > 2 ? atol(argv[2]) : 64;
    long n = mib << 20;
    char *buf = malloc(n);
    for (long i = 0; i < n; i++)
        buf[i] = (char) i;
    double io[RUNS], total[RUNS], wait[RUNS];
    run(argv[1], buf, n, 0, NULL); /* warm up: library, servers, page cache */
    for (int i = 0; i < RUNS; i++)
        io[i] = run(argv[1], buf, n, 0, NULL);
    double tio = median(io);
    for (int i = 0; i < RUNS; i++)
        total[i] = run(argv[1], buf, n, tio, NULL);
    for (int i = 0; i < RUNS; i++)
        run(argv[1], buf, n, 3 * tio + 0.02, &wait[i]);
    double t = median(total), w = median(wait);
    double hidden = 1 - w / tio, hidden_eq = (tio + tio - t) / tio;
    hidden = hidden < 0 ? 0 : hidden > 1 ? 1 : hidden;
    hidden_eq = hidden_eq < 0 ? 0 : hidden_eq > 1 ? 1 : hidden_eq;
    printf("overlap MiB=%ld io_ms=%.1f wait_ms=%.2f hidden=%.2f total_eq_ms=%.1f hidden_eq=%.2f\n",
           mib, tio * 1e3, w * 1e3, hidden, t * 1e3, hidden_eq);
    free(buf);
    MPI_Finalize();
    return 0;
}
