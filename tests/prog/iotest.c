/*
 * iotest: a deterministic MPI-IO workload that exercises the access
 * patterns ordinary programs use, for comparing file systems. Run the same
 * command with a ufs: and a delegate: path: the files must be identical
 * byte for byte, and the printed read checksums equal.
 *
 *   mpiexec -n N iotest PATH
 *
 * Phases (all on one shared file, each in its own region):
 *   1 contiguous independent writes, explicit offsets
 *   2 contiguous collective writes (write_at_all), one rank writing nothing
 *   3 a vector file view, independent writes through the individual pointer
 *   4 the same view, collective writes (write_all)
 *   5 a noncontiguous memory type (struct with gaps) into a contiguous file range
 *   6 a subarray (darray-like) view, collective, plus a read-only overlapping view read
 *   7 nonblocking writes and reads (iwrite_at, iread_at, iwrite_all)
 *   8 set_size (grow), then writes past the old end, then preallocate
 *   9 sync and reads back by other ranks, with a checksum printed by rank 0
 */
#include <mpi.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "mpiclass.h"

static int rank, nprocs;

static unsigned char val(int phase, long i)
{
    return (unsigned char) (phase * 37 + i * 7 + rank * 13 + (i >> 8));
}

static uint64_t sum_bytes(const unsigned char *b, long n)
{
    uint64_t h = 1469598103934665603ULL;
    for (long i = 0; i < n; i++)
        h = (h ^ b[i]) * 1099511628211ULL;
    return h;
}

#define REGION (1L << 20)

int main(int argc, char **argv)
{
    MPI_File fh;
    MPI_Status st;
    MPI_Request req;
    MPI_Init(&argc, &argv);
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    MPI_Comm_size(MPI_COMM_WORLD, &nprocs);
    if (argc != 2) {
        fprintf(stderr, "usage: iotest PATH\n");
        MPI_Abort(MPI_COMM_WORLD, 2);
    }
    MPI_File_set_errhandler(MPI_FILE_NULL, MPI_ERRORS_RETURN);
    if (rank == 0)
        MPI_File_delete(argv[1], MPI_INFO_NULL);
    MPI_Barrier(MPI_COMM_WORLD);
    check(MPI_File_open(MPI_COMM_WORLD, argv[1], MPI_MODE_CREATE | MPI_MODE_RDWR, MPI_INFO_NULL, &fh),
          "open");
    unsigned char *buf = malloc(REGION), *rbuf = malloc(REGION);

    /* 1: contiguous independent, explicit offsets, odd sizes */
    for (int k = 0; k < 5; k++) {
        long n = 1000 + 333 * k;
        for (long i = 0; i < n; i++)
            buf[i] = val(1, i + k);
        MPI_Offset off = 1 * REGION + (MPI_Offset) (k * nprocs + rank) * 2400;
        check(MPI_File_write_at(fh, off, buf, (int) n, MPI_BYTE, &st), "phase 1");
    }

    /* 2: collective contiguous, the last rank writes nothing */
    {
        long n = rank == nprocs - 1 && nprocs > 1 ? 0 : 5000 + rank;
        for (long i = 0; i < n; i++)
            buf[i] = val(2, i);
        check(MPI_File_write_at_all(fh, 2 * REGION + rank * 6000, buf, (int) n, MPI_BYTE, &st),
              "phase 2");
    }

    /* 3 and 4: vector view of 100-byte records interleaved between ranks */
    MPI_Datatype vec;
    MPI_Type_vector(200, 100, 100 * nprocs, MPI_BYTE, &vec);
    MPI_Type_commit(&vec);
    for (int phase = 3; phase <= 4; phase++) {
        check(MPI_File_set_view(fh, phase * REGION + rank * 100, MPI_BYTE, vec, "native", MPI_INFO_NULL),
              "set_view");
        for (long i = 0; i < 20000; i++)
            buf[i] = val(phase, i);
        if (phase == 3) {
            check(MPI_File_write(fh, buf, 7000, MPI_BYTE, &st), "phase 3a");
            check(MPI_File_write(fh, buf + 7000, 13000, MPI_BYTE, &st), "phase 3b");
        } else {
            check(MPI_File_write_all(fh, buf, 20000, MPI_BYTE, &st), "phase 4");
        }
    }
    check(MPI_File_set_view(fh, 0, MPI_BYTE, MPI_BYTE, "native", MPI_INFO_NULL), "reset view");

    /* 5: noncontiguous memory: 3 ints and a double with gaps, 500 times */
    {
        MPI_Datatype s, sr;
        int bl[2] = { 3, 1 };
        MPI_Aint disp[2] = { 0, 16 };
        MPI_Datatype types[2] = { MPI_INT, MPI_DOUBLE };
        MPI_Type_create_struct(2, bl, disp, types, &s);
        MPI_Type_create_resized(s, 0, 32, &sr);
        MPI_Type_commit(&sr);
        for (long i = 0; i < 32 * 500; i++)
            buf[i] = val(5, i);
        check(MPI_File_write_at(fh, 5 * REGION + rank * 10000, buf, 500, sr, &st), "phase 5");
        MPI_Type_free(&s);
        MPI_Type_free(&sr);
    }

    /* 6: a 2-D subarray view, collective; then an overlapping read-only read */
    {
        int gsizes[2] = { 64, 64 * nprocs }, lsizes[2] = { 64, 64 }, starts[2] = { 0, 64 * rank };
        MPI_Datatype sub;
        MPI_Type_create_subarray(2, gsizes, lsizes, starts, MPI_ORDER_C, MPI_INT, &sub);
        MPI_Type_commit(&sub);
        check(MPI_File_set_view(fh, 6 * REGION, MPI_INT, sub, "native", MPI_INFO_NULL), "subarray view");
        for (long i = 0; i < 64 * 64 * 4; i++)
            buf[i] = val(6, i);
        check(MPI_File_write_all(fh, buf, 64 * 64, MPI_INT, &st), "phase 6");
        MPI_Type_free(&sub);
        check(MPI_File_set_view(fh, 0, MPI_BYTE, MPI_BYTE, "native", MPI_INFO_NULL), "reset view");
    }

    /* 7: nonblocking */
    {
        for (long i = 0; i < 30000; i++)
            buf[i] = val(7, i);
        MPI_Request r2;
        check(MPI_File_iwrite_at(fh, 7 * REGION + rank * 30000, buf, 20000, MPI_BYTE, &req), "iwrite_at");
        check(MPI_File_iwrite_at(fh, 7 * REGION + rank * 30000 + 20000, buf + 20000, 10000, MPI_BYTE, &r2),
              "iwrite_at 2");
        check(MPI_Wait(&req, &st), "wait");
        check(MPI_Wait(&r2, &st), "wait 2");
        check(MPI_File_iwrite_at_all(fh, 7 * REGION + (nprocs + rank) * 30000, buf, 30000, MPI_BYTE, &req),
              "iwrite_at_all");
        check(MPI_Wait(&req, &st), "wait all");
    }

    /* 8: grow with set_size, write past the old end, preallocate further */
    check(MPI_File_set_size(fh, 9 * REGION), "set_size");
    for (long i = 0; i < 4096; i++)
        buf[i] = val(8, i);
    check(MPI_File_write_at(fh, 9 * REGION + rank * 8192, buf, 4096, MPI_BYTE, &st), "phase 8");
    check(MPI_File_preallocate(fh, 9 * REGION + nprocs * 8192 + 12345), "preallocate");

    /* 9: sync, barrier, sync; every rank reads what the next rank wrote */
    check(MPI_File_sync(fh), "sync");
    MPI_Barrier(MPI_COMM_WORLD);
    check(MPI_File_sync(fh), "sync");
    int next = (rank + 1) % nprocs;
    check(MPI_File_read_at(fh, 7 * REGION + next * 30000, rbuf, 30000, MPI_BYTE, &st), "read back");
    int count;
    MPI_Get_count(&st, MPI_BYTE, &count);
    MPI_Request rr;
    check(MPI_File_iread_at(fh, 1 * REGION, rbuf + 30000, 20000, MPI_BYTE, &rr), "iread_at");
    check(MPI_Wait(&rr, &st), "iread wait");
    MPI_Offset size;
    check(MPI_File_get_size(fh, &size), "get_size");
    /* a read that crosses the end of file */
    check(MPI_File_read_at(fh, size - 100, rbuf + 50000, 1000, MPI_BYTE, &st), "read at eof");
    int eofcount;
    MPI_Get_count(&st, MPI_BYTE, &eofcount);
    uint64_t h = sum_bytes(rbuf, 50000 + eofcount) ^ (uint64_t) count ^ ((uint64_t) eofcount << 20);
    uint64_t all[64];
    MPI_Gather(&h, 1, MPI_UINT64_T, all, 1, MPI_UINT64_T, 0, MPI_COMM_WORLD);
    check(MPI_File_close(&fh), "close");
    if (rank == 0) {
        printf("size %lld eofcount %d\n", (long long) size, eofcount);
        for (int i = 0; i < nprocs && i < 64; i++)
            printf("rank %d read checksum %016llx\n", i, (unsigned long long) all[i]);
    }
    free(buf);
    free(rbuf);
    MPI_Type_free(&vec);
    MPI_Finalize();
    return 0;
}
