/*
 * delegate_example: several ranks write a shared file three ways through
 * MPI-IO, read it back and check every byte. Run it on a delegate: path
 * beside delegate servers (or on ufs: to compare):
 *
 *   delegate-run --servers 2 -- mpiexec -n 4 delegate_example delegate:/tmp/demo [MiB]
 *
 * It writes PREFIX.contig (each rank one contiguous block, collective),
 * PREFIX.strided (64-byte records interleaved between ranks through a
 * vector file view, independent writes) and PREFIX.nonblocking (each rank
 * its block with MPI_File_iwrite_at, overlapped with computation), then
 * reads each file back with a different decomposition and compares it with
 * the pattern every byte must hold.
 */
#include <mpi.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int rank, nprocs;

/* The byte every file holds at offset off. */
static unsigned char pattern(MPI_Offset off)
{
    return (unsigned char) ((off * 131 + (off >> 12) * 7 + 11) & 0xff);
}

static void fill(unsigned char *buf, MPI_Offset off, size_t n)
{
    for (size_t i = 0; i < n; i++)
        buf[i] = pattern(off + (MPI_Offset) i);
}

static void check(int rc, const char *what)
{
    if (rc != MPI_SUCCESS) {
        char msg[MPI_MAX_ERROR_STRING];
        int len;
        MPI_Error_string(rc, msg, &len);
        fprintf(stderr, "rank %d: %s failed: %s\n", rank, what, msg);
        MPI_Abort(MPI_COMM_WORLD, 1);
    }
}

/* Reads the whole file back, each rank a different contiguous part than
 * it wrote (shifted by one rank), and counts bad bytes. */
static long verify(const char *path, MPI_Offset size)
{
    MPI_File fh;
    check(MPI_File_open(MPI_COMM_WORLD, path, MPI_MODE_RDONLY, MPI_INFO_NULL, &fh), "open for reading");
    MPI_Offset got_size;
    check(MPI_File_get_size(fh, &got_size), "get_size");
    long bad = got_size == size ? 0 : 1;
    MPI_Offset part = size / nprocs;
    int who = (rank + 1) % nprocs;
    MPI_Offset off = who * part;
    MPI_Offset n = who == nprocs - 1 ? size - off : part;
    unsigned char *buf = malloc(n ? n : 1), *want = malloc(n ? n : 1);
    MPI_Status st;
    check(MPI_File_read_at_all(fh, off, buf, (int) n, MPI_BYTE, &st), "read_at_all");
    int count;
    MPI_Get_count(&st, MPI_BYTE, &count);
    fill(want, off, n);
    if (count != n)
        bad++;
    for (MPI_Offset i = 0; i < n; i++)
        bad += buf[i] != want[i];
    free(buf);
    free(want);
    check(MPI_File_close(&fh), "close");
    long total;
    MPI_Allreduce(&bad, &total, 1, MPI_LONG, MPI_SUM, MPI_COMM_WORLD);
    return total;
}

static void report(const char *what, const char *path, MPI_Offset size, double secs, long bad)
{
    if (rank == 0)
        printf("%-12s %-40s %8.1f MiB  %8.1f MiB/s  %s\n", what, path, size / 1048576.0,
               size / 1048576.0 / (secs > 0 ? secs : 1e-9), bad ? "FAILED" : "ok");
}

int main(int argc, char **argv)
{
    MPI_Init(&argc, &argv);
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    MPI_Comm_size(MPI_COMM_WORLD, &nprocs);
    if (argc < 2) {
        if (rank == 0)
            fprintf(stderr, "usage: %s PATH_PREFIX [MiB per rank]\n", argv[0]);
        MPI_Abort(MPI_COMM_WORLD, 2);
    }
    MPI_Offset block = (argc > 2 ? atol(argv[2]) : 4) * 1048576;
    MPI_Offset size = block * nprocs;
    char path[4096];
    long failures = 0;
    MPI_File fh;
    double t;
    unsigned char *buf = malloc(block);

    MPI_File_set_errhandler(MPI_FILE_NULL, MPI_ERRORS_RETURN);
    if (rank == 0)
        printf("delegate_example: %d ranks, %.1f MiB per rank\n", nprocs, block / 1048576.0);

    /* 1. contiguous blocks, collective */
    snprintf(path, sizeof path, "%s.contig", argv[1]);
    MPI_File_delete(path, MPI_INFO_NULL);
    t = MPI_Wtime();
    check(MPI_File_open(MPI_COMM_WORLD, path, MPI_MODE_CREATE | MPI_MODE_WRONLY, MPI_INFO_NULL, &fh), "open");
    fill(buf, rank * block, block);
    check(MPI_File_write_at_all(fh, rank * block, buf, (int) block, MPI_BYTE, MPI_STATUS_IGNORE), "write_at_all");
    check(MPI_File_close(&fh), "close");
    t = MPI_Wtime() - t;
    long bad = verify(path, size);
    report("contiguous", path, size, t, bad);
    failures += bad;

    /* 2. 64-byte records interleaved between ranks: a vector file view */
    snprintf(path, sizeof path, "%s.strided", argv[1]);
    MPI_File_delete(path, MPI_INFO_NULL);
    const int rec = 64;
    int nrec = (int) (block / rec);
    MPI_Datatype ftype;
    MPI_Type_vector(nrec, rec, rec * nprocs, MPI_BYTE, &ftype);
    MPI_Type_commit(&ftype);
    t = MPI_Wtime();
    check(MPI_File_open(MPI_COMM_WORLD, path, MPI_MODE_CREATE | MPI_MODE_RDWR, MPI_INFO_NULL, &fh), "open");
    check(MPI_File_set_view(fh, (MPI_Offset) rank * rec, MPI_BYTE, ftype, "native", MPI_INFO_NULL), "set_view");
    for (int i = 0; i < nrec; i++)
        fill(buf + (size_t) i * rec, ((MPI_Offset) i * nprocs + rank) * rec, rec);
    check(MPI_File_write(fh, buf, (int) block, MPI_BYTE, MPI_STATUS_IGNORE), "write");
    check(MPI_File_close(&fh), "close");
    t = MPI_Wtime() - t;
    MPI_Type_free(&ftype);
    bad = verify(path, size);
    report("strided", path, size, t, bad);
    failures += bad;

    /* 3. nonblocking: post the write, compute, wait */
    snprintf(path, sizeof path, "%s.nonblocking", argv[1]);
    MPI_File_delete(path, MPI_INFO_NULL);
    t = MPI_Wtime();
    check(MPI_File_open(MPI_COMM_WORLD, path, MPI_MODE_CREATE | MPI_MODE_WRONLY, MPI_INFO_NULL, &fh), "open");
    fill(buf, rank * block, block);
    MPI_Request req;
    check(MPI_File_iwrite_at(fh, rank * block, buf, (int) block, MPI_BYTE, &req), "iwrite_at");
    volatile double x = 0;
    for (int i = 0; i < 2000000; i++)
        x += i * 1e-9;
    check(MPI_Wait(&req, MPI_STATUS_IGNORE), "wait");
    check(MPI_File_close(&fh), "close");
    t = MPI_Wtime() - t;
    bad = verify(path, size);
    report("nonblocking", path, size, t, bad);
    failures += bad;

    free(buf);
    if (rank == 0)
        printf("delegate_example: %s\n", failures ? "FAILED" : "all bytes correct");
    MPI_Finalize();
    return failures ? 1 : 0;
}
