/* netbench: streaming throughput for tests/netbench.sh.
 *
 *   netbench w|r PATH TOTAL PIECE
 *
 * The ranks write (w) or read (r) TOTAL bytes of PATH together, each rank
 * its own contiguous segment of TOTAL/nprocs bytes, in MPI_File_write_at /
 * MPI_File_read_at calls of PIECE bytes. The time is the slowest rank's,
 * from the barrier before the open to the barrier after the close (for
 * writes: the data is on the backend). Every 4 KiB page carries its file
 * offset in its first 8 bytes (written per piece, checked on reads), so the
 * buffer is not refilled byte by byte and the figure is the data path's.
 * Prints one line on rank 0: "bytes=N secs=S MBps=M bad=B".
 */
#include <mpi.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "mpiclass.h"

static int rank, nprocs;

static long long parse(const char *s)
{
    char *end;
    long long n = strtoll(s, &end, 10);
    switch (*end) {
    case 'K': case 'k': n <<= 10; break;
    case 'M': case 'm': n <<= 20; break;
    case 'G': case 'g': n <<= 30; break;
    }
    return n;
}

static void stamp(unsigned char *b, MPI_Offset off, long n)
{
    for (long i = 0; i + 8 <= n; i += 4096) {
        uint64_t v = (uint64_t) (off + i) ^ 0x5a5a5a5a5a5a5a5aULL;
        memcpy(b + i, &v, 8);
    }
}

static long unstamp(const unsigned char *b, MPI_Offset off, long n)
{
    long bad = 0;
    for (long i = 0; i + 8 <= n; i += 4096) {
        uint64_t v;
        memcpy(&v, b + i, 8);
        if (v != ((uint64_t) (off + i) ^ 0x5a5a5a5a5a5a5a5aULL))
            bad++;
    }
    return bad;
}

int main(int argc, char **argv)
{
    MPI_Init(&argc, &argv);
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    MPI_Comm_size(MPI_COMM_WORLD, &nprocs);
    if (argc != 5 || (strcmp(argv[1], "w") && strcmp(argv[1], "r"))) {
        if (rank == 0)
            fprintf(stderr, "usage: netbench w|r PATH TOTAL PIECE\n");
        MPI_Abort(MPI_COMM_WORLD, 2);
    }
    int writing = !strcmp(argv[1], "w");
    long long total = parse(argv[3]), piece = parse(argv[4]);
    long long seg = total / nprocs / piece * piece;
    if (piece <= 0 || seg <= 0 || piece > (1 << 30)) {
        if (rank == 0)
            fprintf(stderr, "netbench: bad sizes\n");
        MPI_Abort(MPI_COMM_WORLD, 2);
    }
    MPI_File_set_errhandler(MPI_FILE_NULL, MPI_ERRORS_RETURN);
    unsigned char *b = malloc(piece);
    memset(b, 0xa5, piece);
    MPI_File fh;
    long bad = 0;
    MPI_Barrier(MPI_COMM_WORLD);
    double t0 = MPI_Wtime();
    check(MPI_File_open(MPI_COMM_WORLD, argv[2], writing ? MPI_MODE_CREATE | MPI_MODE_WRONLY : MPI_MODE_RDONLY,
                        MPI_INFO_NULL, &fh), "open");
    for (MPI_Offset off = rank * seg; off < (rank + 1) * seg; off += piece) {
        if (writing) {
            stamp(b, off, piece);
            check(MPI_File_write_at(fh, off, b, (int) piece, MPI_BYTE, MPI_STATUS_IGNORE), "write_at");
        } else {
            check(MPI_File_read_at(fh, off, b, (int) piece, MPI_BYTE, MPI_STATUS_IGNORE), "read_at");
            bad += unstamp(b, off, piece);
        }
    }
    check(MPI_File_close(&fh), "close");
    MPI_Barrier(MPI_COMM_WORLD);
    double secs = MPI_Wtime() - t0, smax;
    long badsum;
    MPI_Reduce(&secs, &smax, 1, MPI_DOUBLE, MPI_MAX, 0, MPI_COMM_WORLD);
    MPI_Reduce(&bad, &badsum, 1, MPI_LONG, MPI_SUM, 0, MPI_COMM_WORLD);
    if (rank == 0)
        printf("bytes=%lld secs=%.4f MBps=%.1f bad=%ld\n", seg * nprocs, smax, seg * nprocs / smax / 1e6, badsum);
    free(b);
    MPI_Finalize();
    return badsum != 0;
}
