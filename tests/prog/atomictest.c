/*
 * atomictest: MPI atomic mode for calls larger than one delegate request.
 * In atomic mode (MPI_File_set_atomicity) every rank overwrites the same
 * range again and again with bytes of its own, and rank 0 also reads the
 * range back between its writes: every read, and the file in the end,
 * must hold one rank's bytes throughout, never a mix. Two shapes:
 *
 *   big      one contiguous call of SIZE bytes (default 20 MiB: more than a
 *            ring slot of 16 MiB, so two requests)
 *   strided  a file view of 8-byte blocks every 16 bytes, 6,000 of them per
 *            call (more than the 4,096 runs of one request's extent list)
 *
 * With the server applying each request alone, another rank's write lands
 * between two requests of a call and a read sees a mix.
 *
 *   mpiexec -n N atomictest PATH [ROUNDS] [SIZE]
 *
 * Prints "atomictest ok" and exits 0, or names the first mixed read.
 */
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "mpiclass.h"

static int rank;

static void fail(const char *what, long round, const unsigned char *b, long n)
{
    long first = 0;
    while (first < n && b[first] == b[0])
        first++;
    printf("atomictest: rank %d: %s, round %ld: a mix of writers (byte 0 is %d, byte %ld is %d)\n",
           rank, what, round, b[0], first, first < n ? b[first] : -1);
    fflush(stdout);
    MPI_Abort(MPI_COMM_WORLD, 1);
}

static int uniform(const unsigned char *b, long n)
{
    for (long i = 1; i < n; i++)
        if (b[i] != b[0])
            return 0;
    return 1;
}

/* run overwrites count blocks of blk bytes every stride bytes (a file view
 * when stride > blk), rounds times per rank, rank 0 reading between. */
static void run(const char *path, const char *what, long rounds, long blk, long stride, long count)
{
    MPI_File fh;
    MPI_Datatype ft = MPI_BYTE;
    long n = blk * count;
    unsigned char *b = malloc(n), *g = malloc(n);
    MPI_Status st;
    int got;
    if (b == NULL || g == NULL) {
        printf("atomictest: out of memory\n");
        MPI_Abort(MPI_COMM_WORLD, 2);
    }
    memset(b, 'A' + rank, n);
    check(MPI_File_open(MPI_COMM_WORLD, path, MPI_MODE_CREATE | MPI_MODE_RDWR, MPI_INFO_NULL, &fh),
          "open");
    if (stride > blk) {
        MPI_Datatype vec;
        MPI_Type_vector((int) count, (int) blk, (int) stride, MPI_BYTE, &vec);
        MPI_Type_create_resized(vec, 0, stride * count, &ft);
        MPI_Type_free(&vec);
        MPI_Type_commit(&ft);
        check(MPI_File_set_view(fh, 0, MPI_BYTE, ft, "native", MPI_INFO_NULL), "set_view");
    }
    check(MPI_File_set_atomicity(fh, 1), "set_atomicity");
    MPI_Barrier(MPI_COMM_WORLD);
    for (long r = 0; r < rounds; r++) {
        check(MPI_File_write_at(fh, 0, b, (int) n, MPI_BYTE, &st), "write_at");
        if (rank == 0) {
            check(MPI_File_read_at(fh, 0, g, (int) n, MPI_BYTE, &st), "read_at");
            MPI_Get_count(&st, MPI_BYTE, &got);
            if (got != n) {
                printf("atomictest: %s, round %ld: read %d of %ld bytes\n", what, r, got, n);
                MPI_Abort(MPI_COMM_WORLD, 1);
            }
            if (!uniform(g, n))
                fail(what, r, g, n);
        }
    }
    MPI_Barrier(MPI_COMM_WORLD);
    check(MPI_File_read_at(fh, 0, g, (int) n, MPI_BYTE, &st), "read_at");
    if (!uniform(g, n))
        fail(what, rounds, g, n);
    check(MPI_File_close(&fh), "close");
    if (ft != MPI_BYTE)
        MPI_Type_free(&ft);
    free(b);
    free(g);
    if (rank == 0)
        printf("atomictest: %s: %ld rounds, every read one writer's\n", what, rounds);
}

int main(int argc, char **argv)
{
    char path[4096];
    long rounds, size;
    MPI_Init(&argc, &argv);
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    if (argc < 2) {
        if (rank == 0)
            printf("usage: atomictest PATH [ROUNDS] [SIZE]\n");
        MPI_Abort(MPI_COMM_WORLD, 2);
    }
    rounds = argc > 2 ? atol(argv[2]) : 10;
    size = argc > 3 ? atol(argv[3]) : 20L << 20;
    snprintf(path, sizeof(path), "%s.big", argv[1]);
    run(path, "big", rounds, size, size, 1);
    snprintf(path, sizeof(path), "%s.strided", argv[1]);
    run(path, "strided", rounds, 8, 16, 6000);
    if (rank == 0)
        printf("atomictest ok\n");
    MPI_Finalize();
    return 0;
}
