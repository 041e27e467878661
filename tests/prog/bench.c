/*
 * bench: one I/O workload, timed, for tests/bench.sh, which runs each
 * workload on ufs: and on delegate: back to back and prints the ratios.
 *
 *   mpiexec -n 2 bench WORKLOAD PATH [SCALE]
 *
 * The timed region starts after a barrier before MPI_File_open and ends
 * after a barrier after MPI_File_close, so it includes the work close does
 * (delegate writes its buffers to the backend there). Rank 0 prints one
 * line: "WORKLOAD secs=<s> io=<s> bytes=<total bytes moved> init=<s> [visible=<s>]",
 * where io is the slowest rank's time from open to its last I/O call
 * (before close), and rankcpu= the ranks' CPU seconds (user + system, all
 * their threads, summed over the ranks) in the timed region: what a rank
 * spends spinning in MPI's progress loop shows there.
 * Every workload checks what it reads; a wrong byte makes it exit non-zero.
 *
 * Before the timed region each rank opens and closes PATH.warmup once, so
 * one-time costs (for delegate: loading libdelegate and connecting to the
 * servers) are not charged to the workload; init= reports that time.
 *
 *   1 records      64-byte records interleaved between ranks, one MPI_File_write_at each
 *   2 corked       the same with the delegate_cork hint
 *   3 view         the same pattern as one strided file view, independent MPI_File_write
 *   4 view-all     the same view, collective MPI_File_write_all
 *   5 ior          4 KiB pieces strided across ranks, collective (IOR-like)
 *   6 ior-hard     47,008-byte pieces interleaved across ranks, one write_at each
 *   7w contig-w    4 MiB contiguous writes, each rank its own segment
 *   7r contig-r    4 MiB contiguous reads of that segment (file from 7w)
 *   8 read-records 64-byte reads interleaved, one read_at each (file from 1)
 *   9 checkpoint   nonblocking 4 MiB writes, computation, wait, close
 *                  (delegate_async_close); prints the visible I/O time
 *  10 random-w     4 KiB writes at random 4 KiB-aligned offsets (each once)
 *                  within the rank's own 128 MiB block of a shared file
 *     random-r     the same offsets read back, in the same order (file from 10w)
 *  11 strided-1k   1 KiB pieces strided across ranks, one write_at each
 *     strided-4k   the same with 4 KiB pieces
 *  12 view-4k-all  a strided file view of 4 KiB blocks, collective write_all
 *                  of 4 MiB per call
 */
#include <mpi.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include "mpiclass.h"

static int rank, nprocs;

static unsigned char pat(MPI_Offset off)
{
    return (unsigned char) (off * 29 + (off >> 9));
}

static void fill(unsigned char *b, MPI_Offset off, long n)
{
    for (long i = 0; i < n; i++)
        b[i] = pat(off + i);
}

static int verify(const unsigned char *b, MPI_Offset off, long n)
{
    for (long i = 0; i < n; i++)
        if (b[i] != pat(off + i)) {
            fprintf(stderr, "rank %d: bad byte at %lld\n", rank, (long long) (off + i));
            return 1;
        }
    return 0;
}

static MPI_File fh;
static double t0, cpu0;

static double cpu_now(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return ru.ru_utime.tv_sec + ru.ru_stime.tv_sec + (ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) * 1e-6;
}

static void start(const char *path, int amode, MPI_Info info)
{
    MPI_Barrier(MPI_COMM_WORLD);
    t0 = MPI_Wtime();
    cpu0 = cpu_now();
    check(MPI_File_open(MPI_COMM_WORLD, path, amode, info, &fh), "open");
}

static double io_secs; /* slowest rank's time from open to its last I/O call */
static double rank_cpu; /* the ranks' CPU seconds in the timed region, summed */

static double stop(void)
{
    double t[2] = {MPI_Wtime() - t0, 0}, tmax[2];
    check(MPI_File_close(&fh), "close");
    MPI_Barrier(MPI_COMM_WORLD);
    t[1] = MPI_Wtime() - t0;
    double cpu = cpu_now() - cpu0;
    MPI_Reduce(t, tmax, 2, MPI_DOUBLE, MPI_MAX, 0, MPI_COMM_WORLD);
    MPI_Reduce(&cpu, &rank_cpu, 1, MPI_DOUBLE, MPI_SUM, 0, MPI_COMM_WORLD);
    io_secs = tmax[0];
    return tmax[1];
}

int main(int argc, char **argv)
{
    MPI_Init(&argc, &argv);
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    MPI_Comm_size(MPI_COMM_WORLD, &nprocs);
    if (argc < 3) {
        if (rank == 0)
            fprintf(stderr, "usage: bench WORKLOAD PATH [SCALE]\n");
        MPI_Abort(MPI_COMM_WORLD, 2);
    }
    const char *w = argv[1], *path = argv[2];
    double scale = argc > 3 ? atof(argv[3]) : 1.0;
    MPI_File_set_errhandler(MPI_FILE_NULL, MPI_ERRORS_RETURN);
    int wr = MPI_MODE_CREATE | MPI_MODE_WRONLY, rd = MPI_MODE_RDONLY;
    char warm[4096];
    snprintf(warm, sizeof warm, "%s.warmup", path);
    MPI_Barrier(MPI_COMM_WORLD);
    double init = MPI_Wtime();
    check(MPI_File_open(MPI_COMM_WORLD, warm, wr | MPI_MODE_DELETE_ON_CLOSE, MPI_INFO_NULL, &fh), "warm-up open");
    check(MPI_File_close(&fh), "warm-up close");
    init = MPI_Wtime() - init;
    double secs = 0, extra = -1;
    long long bytes = 0;
    int bad = 0;
    const int rec = 64;
    long nrec = (long) (65536 * scale);

    if (!strcmp(w, "records") || !strcmp(w, "corked")) {
        MPI_Info info = MPI_INFO_NULL;
        if (!strcmp(w, "corked")) {
            MPI_Info_create(&info);
            MPI_Info_set(info, "delegate_cork", "true");
        }
        unsigned char *b = malloc(nrec * rec);
        for (long i = 0; i < nrec; i++)
            fill(b + i * rec, (i * nprocs + rank) * rec, rec);
        start(path, wr, info);
        for (long i = 0; i < nrec; i++)
            check(MPI_File_write_at(fh, (i * nprocs + rank) * rec, b + i * rec, rec, MPI_BYTE,
                                    MPI_STATUS_IGNORE), "write_at");
        secs = stop();
        bytes = (long long) nrec * rec * nprocs;
        free(b);
        if (info != MPI_INFO_NULL)
            MPI_Info_free(&info);
    } else if (!strcmp(w, "view") || !strcmp(w, "view-all")) {
        MPI_Datatype ft;
        MPI_Type_vector((int) nrec, rec, rec * nprocs, MPI_BYTE, &ft);
        MPI_Type_commit(&ft);
        unsigned char *b = malloc(nrec * rec);
        for (long i = 0; i < nrec; i++)
            fill(b + i * rec, (i * nprocs + rank) * rec, rec);
        start(path, wr, MPI_INFO_NULL);
        check(MPI_File_set_view(fh, (MPI_Offset) rank * rec, MPI_BYTE, ft, "native", MPI_INFO_NULL), "view");
        if (!strcmp(w, "view"))
            check(MPI_File_write(fh, b, (int) (nrec * rec), MPI_BYTE, MPI_STATUS_IGNORE), "write");
        else
            check(MPI_File_write_all(fh, b, (int) (nrec * rec), MPI_BYTE, MPI_STATUS_IGNORE), "write_all");
        secs = stop();
        bytes = (long long) nrec * rec * nprocs;
        MPI_Type_free(&ft);
        free(b);
    } else if (!strcmp(w, "ior")) {
        /* 4 KiB transfers, strided across ranks, 16 collective calls of
         * 256 pieces each (an IOR-like segment loop). */
        const int piece = 4096, per_call = 256, calls = (int) (16 * scale);
        MPI_Datatype ft;
        MPI_Type_vector(per_call, piece, piece * nprocs, MPI_BYTE, &ft);
        MPI_Type_commit(&ft);
        unsigned char *b = malloc((long) piece * per_call);
        start(path, wr, MPI_INFO_NULL);
        for (int c = 0; c < calls; c++) {
            MPI_Offset base = (MPI_Offset) c * per_call * piece * nprocs;
            for (int i = 0; i < per_call; i++)
                fill(b + (long) i * piece, base + ((MPI_Offset) i * nprocs + rank) * piece, piece);
            check(MPI_File_set_view(fh, base + (MPI_Offset) rank * piece, MPI_BYTE, ft, "native",
                                    MPI_INFO_NULL), "view");
            check(MPI_File_write_all(fh, b, piece * per_call, MPI_BYTE, MPI_STATUS_IGNORE), "write_all");
        }
        secs = stop();
        bytes = (long long) piece * per_call * calls * nprocs;
        MPI_Type_free(&ft);
        free(b);
    } else if (!strcmp(w, "ior-hard")) {
        const long piece = 47008, n = (long) (512 * scale);
        unsigned char *b = malloc(piece);
        start(path, wr, MPI_INFO_NULL);
        for (long i = 0; i < n; i++) {
            MPI_Offset off = (i * nprocs + rank) * piece;
            fill(b, off, piece);
            check(MPI_File_write_at(fh, off, b, (int) piece, MPI_BYTE, MPI_STATUS_IGNORE), "write_at");
        }
        secs = stop();
        bytes = (long long) piece * n * nprocs;
        free(b);
    } else if (!strcmp(w, "contig-w") || !strcmp(w, "contig-r")) {
        const long piece = 4 << 20, n = 16 * scale >= 1 ? (long) (16 * scale) : 1;
        MPI_Offset seg = (MPI_Offset) rank * piece * n;
        unsigned char *b = malloc(piece);
        int writing = !strcmp(w, "contig-w");
        start(path, writing ? wr : rd, MPI_INFO_NULL);
        for (long i = 0; i < n; i++) {
            MPI_Offset off = seg + i * piece;
            if (writing) {
                fill(b, off, piece);
                check(MPI_File_write_at(fh, off, b, (int) piece, MPI_BYTE, MPI_STATUS_IGNORE), "write_at");
            } else {
                check(MPI_File_read_at(fh, off, b, (int) piece, MPI_BYTE, MPI_STATUS_IGNORE), "read_at");
                bad |= verify(b, off, piece);
            }
        }
        secs = stop();
        bytes = (long long) piece * n * nprocs;
        free(b);
    } else if (!strcmp(w, "read-records")) {
        unsigned char b[64];
        start(path, rd, MPI_INFO_NULL);
        for (long i = 0; i < nrec; i++) {
            MPI_Offset off = (i * nprocs + rank) * rec;
            check(MPI_File_read_at(fh, off, b, rec, MPI_BYTE, MPI_STATUS_IGNORE), "read_at");
            bad |= verify(b, off, rec);
        }
        secs = stop();
        bytes = (long long) nrec * rec * nprocs;
    } else if (!strcmp(w, "random-w") || !strcmp(w, "random-r")) {
        /* 8,192 x 4 KiB per rank (32 MiB) at distinct random slots of its
         * 128 MiB block: slot i is (a*i + c) mod 32768 with a odd, a
         * permutation, so every byte written is read back exactly once. */
        const long piece = 4096, slots = 32768, n = (long) (8192 * scale);
        const MPI_Offset block = (MPI_Offset) slots * piece, base = (MPI_Offset) rank * block;
        int writing = !strcmp(w, "random-w");
        unsigned char *b = malloc(piece), *g = malloc(piece);
        start(path, writing ? wr : rd, MPI_INFO_NULL);
        for (long i = 0; i < n; i++) {
            MPI_Offset off = base + (MPI_Offset) ((40503L * i + 12345L) % slots) * piece;
            if (writing) {
                fill(b, off, piece);
                check(MPI_File_write_at(fh, off, b, (int) piece, MPI_BYTE, MPI_STATUS_IGNORE), "write_at");
            } else {
                check(MPI_File_read_at(fh, off, g, (int) piece, MPI_BYTE, MPI_STATUS_IGNORE), "read_at");
                bad |= verify(g, off, piece);
            }
        }
        secs = stop();
        bytes = (long long) piece * n * nprocs;
        free(b);
        free(g);
    } else if (!strcmp(w, "strided-1k") || !strcmp(w, "strided-4k")) {
        /* 32 MiB per rank, pieces strided across ranks, one independent
         * MPI_File_write_at each */
        const long piece = !strcmp(w, "strided-1k") ? 1024 : 4096;
        const long n = (long) ((32L << 20) / piece * scale);
        unsigned char *b = malloc(piece * n);
        for (long i = 0; i < n; i++)
            fill(b + i * piece, ((MPI_Offset) i * nprocs + rank) * piece, piece);
        start(path, wr, MPI_INFO_NULL);
        for (long i = 0; i < n; i++)
            check(MPI_File_write_at(fh, ((MPI_Offset) i * nprocs + rank) * piece, b + i * piece,
                                    (int) piece, MPI_BYTE, MPI_STATUS_IGNORE), "write_at");
        secs = stop();
        bytes = (long long) piece * n * nprocs;
        free(b);
    } else if (!strcmp(w, "view-4k-all")) {
        /* a strided file view of 4 KiB blocks interleaved between ranks,
         * set once; 8 collective calls of 4 MiB each per rank */
        const int piece = 4096, per_call = 1024, calls = (int) (8 * scale);
        MPI_Datatype ft;
        MPI_Type_vector(1, piece, piece * nprocs, MPI_BYTE, &ft);
        MPI_Datatype rt;
        MPI_Type_create_resized(ft, 0, (MPI_Aint) piece * nprocs, &rt);
        MPI_Type_commit(&rt);
        unsigned char *b = malloc((long) piece * per_call);
        start(path, wr, MPI_INFO_NULL);
        check(MPI_File_set_view(fh, (MPI_Offset) rank * piece, MPI_BYTE, rt, "native", MPI_INFO_NULL),
              "view");
        for (int c = 0; c < calls; c++) {
            for (int i = 0; i < per_call; i++)
                fill(b + (long) i * piece, (((MPI_Offset) c * per_call + i) * nprocs + rank) * piece, piece);
            check(MPI_File_write_all(fh, b, piece * per_call, MPI_BYTE, MPI_STATUS_IGNORE), "write_all");
        }
        secs = stop();
        bytes = (long long) piece * per_call * calls * nprocs;
        MPI_Type_free(&rt);
        MPI_Type_free(&ft);
        free(b);
    } else if (!strcmp(w, "checkpoint")) {
        /* Each rank posts its checkpoint (16 x 4 MiB) with MPI_File_iwrite_at,
         * computes for COMPUTE seconds, waits, and closes. The visible I/O
         * time is the total minus the computation. */
        const long piece = 4 << 20, n = 16 * scale >= 1 ? (long) (16 * scale) : 1;
        double compute = 0.5;
        MPI_Info info;
        MPI_Info_create(&info);
        MPI_Info_set(info, "delegate_async_close", "true");
        unsigned char *b = malloc(piece * n);
        MPI_Request *req = malloc(n * sizeof *req);
        MPI_Offset seg = (MPI_Offset) rank * piece * n;
        fill(b, seg, piece * n);
        start(path, wr, info);
        for (long i = 0; i < n; i++)
            check(MPI_File_iwrite_at(fh, seg + i * piece, b + i * piece, (int) piece, MPI_BYTE, &req[i]),
                  "iwrite_at");
        double c0 = MPI_Wtime();
        volatile double x = 0;
        while (MPI_Wtime() - c0 < compute)
            for (int k = 0; k < 1000; k++)
                x += k * 1e-9;
        /* statuses kept, not MPI_STATUSES_IGNORE: GCC 12 takes that null
         * pointer for an array of size 0 (-Wstringop-overflow) */
        MPI_Status *st = malloc(n * sizeof *st);
        check(MPI_Waitall((int) n, req, st), "waitall");
        free(st);
        secs = stop();
        extra = secs - compute;
        bytes = (long long) piece * n * nprocs;
        MPI_Info_free(&info);
        free(req);
        free(b);
    } else {
        if (rank == 0)
            fprintf(stderr, "unknown workload %s\n", w);
        MPI_Abort(MPI_COMM_WORLD, 2);
    }
    int anybad;
    MPI_Allreduce(&bad, &anybad, 1, MPI_INT, MPI_LOR, MPI_COMM_WORLD);
    if (rank == 0) {
        printf("%s secs=%.6f io=%.6f bytes=%lld init=%.6f rankcpu=%.6f", w, secs, io_secs, bytes, init, rank_cpu);
        if (extra >= 0)
            printf(" visible=%.6f", extra);
        printf("%s\n", anybad ? " BAD-DATA" : "");
    }
    MPI_Finalize();
    return anybad;
}
