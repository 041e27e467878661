/*
 * leasetest: lease writes (README, Semantics) seen from MPI, 2 ranks, one
 * case per run so that tests/visibility.sh can read the servers' counters
 * around it (a lease write never reaches a server: its bytes_in stay put).
 *
 *   mpiexec -n 2 leasetest PATH CASE
 *
 *   clean    each rank writes 4 MiB to its own segment, barrier, each
 *            reads the other's segment (leased: nothing else is buffered)
 *   beneath  rank 1 writes 64 B at 1000 (buffered on a server), barrier,
 *            rank 0 writes 4 MiB over it (through the server: not leased),
 *            barrier, rank 1 reads the 4 MiB: rank 0's bytes
 *   newer    rank 0 writes 4 MiB (leased), barrier, rank 1 writes 64 B at
 *            1000, barrier, rank 0 reads: the 64 B win; after close too
 *   iwrite   each rank MPI_File_iwrite_at 4 MiB + MPI_Wait, barrier, reads
 *            the other's (leased: the pwrite runs on the library's thread)
 *   atomic   MPI_File_set_atomicity(1), then as clean (never leased)
 *   sync     as clean, then MPI_File_sync (the rank fsyncs its own
 *            writes: the test counts the ranks' fsync calls with strace)
 *   far      as clean, in 4 KiB writes, each 2 MiB from the rank's
 *            previous one (on a local file system: all leased, from C)
 *   near     the same 8 MiB in 4 KiB pieces interleaved between the ranks
 *            (through the server, but for each rank's first)
 *   staged   delegate_cork: rank 0 writes 64 B at 1 MiB + 1000 and at
 *            3 MiB + 500 (held in the library's stage), then 4 KiB at
 *            1 MiB, far from the last: not leased past the staged bytes
 *            it covers, which it must overwrite (all three through the
 *            server, in order)
 *
 * After close, rank 0 reopens the file and checks every byte. Prints
 * "leasetest CASE ok" or "leasetest CASE BAD: ..." and exits non-zero.
 */
#include <mpi.h>
#include "mpiclass.h"
#include <stdlib.h>
#include <string.h>

#define BIG (4 << 20)
#define SMALL 64
#define SMALL_OFF 1000
#define PIECE 4096

static int rank;

static void fill(unsigned char *b, long n, long long off, int salt)
{
    for (long i = 0; i < n; i++)
        b[i] = (unsigned char) ((off + i) * 7 / 3 + salt);
}

static int same(const unsigned char *got, const unsigned char *want, long n, const char *what)
{
    if (memcmp(got, want, n) == 0)
        return 0;
    for (long i = 0; i < n; i++)
        if (got[i] != want[i]) {
            printf("rank %d: %s: byte %ld is %d, want %d\n", rank, what, i, got[i], want[i]);
            break;
        }
    return 1;
}

int main(int argc, char **argv)
{
    MPI_File fh;
    MPI_Request req;
    int bad = 0, all = 0, nranks;
    MPI_Init(&argc, &argv);
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    MPI_Comm_size(MPI_COMM_WORLD, &nranks);
    if (argc < 3 || nranks != 2) {
        if (rank == 0)
            fprintf(stderr, "usage: mpiexec -n 2 leasetest PATH CASE\n");
        MPI_Abort(MPI_COMM_WORLD, 2);
    }
    const char *path = argv[1], *c = argv[2];
    /* the file as it must be: segment r holds rank r's 4 MiB (salt r+1) */
    unsigned char *want = malloc(2 * BIG), *got = malloc(2 * BIG), small[SMALL];
    long long size = 2 * BIG;
    fill(want, BIG, 0, 1);
    fill(want + BIG, BIG, BIG, 2);
    fill(small, SMALL, SMALL_OFF, 9);
    MPI_Info info;
    MPI_Info_create(&info);
    if (!strcmp(c, "staged"))
        MPI_Info_set(info, "delegate_cork", "true");
    check(MPI_File_open(MPI_COMM_WORLD, path, MPI_MODE_CREATE | MPI_MODE_RDWR, info, &fh), "open");
    MPI_Info_free(&info);
    MPI_File_set_errhandler(fh, MPI_ERRORS_RETURN);
    if (!strcmp(c, "atomic"))
        check(MPI_File_set_atomicity(fh, 1), "set_atomicity");
    MPI_Offset mine = (MPI_Offset) rank * BIG, other = (MPI_Offset) (1 - rank) * BIG;
    if (!strcmp(c, "clean") || !strcmp(c, "atomic") || !strcmp(c, "sync") || !strcmp(c, "iwrite")) {
        if (!strcmp(c, "iwrite")) {
            check(MPI_File_iwrite_at(fh, mine, want + mine, BIG, MPI_BYTE, &req), "iwrite_at");
            check(MPI_Wait(&req, MPI_STATUS_IGNORE), "wait");
        } else {
            check(MPI_File_write_at(fh, mine, want + mine, BIG, MPI_BYTE, MPI_STATUS_IGNORE), "write_at");
        }
        if (!strcmp(c, "sync"))
            check(MPI_File_sync(fh), "sync");
        MPI_Barrier(MPI_COMM_WORLD);
        check(MPI_File_read_at(fh, other, got, BIG, MPI_BYTE, MPI_STATUS_IGNORE), "read_at");
        bad |= same(got, want + other, BIG, "the other rank's segment");
    } else if (!strcmp(c, "far") || !strcmp(c, "near")) {
        /* far: pieces 0, 512, 1, 513, ... of the rank's segment: every
         * write starts 2 MiB from where its previous one ended; near:
         * piece 2i + rank of the file, 4 KiB from it (and a rank's pieces
         * never touch, so Go cannot merge them into a long extent) */
        const long n = BIG / PIECE;
        for (long i = 0; i < n; i++) {
            MPI_Offset off = !strcmp(c, "near") ? (MPI_Offset) (2 * i + rank) * PIECE
                : mine + (MPI_Offset) (i % 2 == 0 ? i / 2 : n / 2 + i / 2) * PIECE;
            check(MPI_File_write_at(fh, off, want + off, PIECE, MPI_BYTE, MPI_STATUS_IGNORE), "write_at");
        }
        MPI_Barrier(MPI_COMM_WORLD);
        check(MPI_File_read_at(fh, other, got, BIG, MPI_BYTE, MPI_STATUS_IGNORE), "read_at");
        bad |= same(got, want + other, BIG, "the other rank's segment");
    } else if (!strcmp(c, "staged")) {
        const MPI_Offset a = (1 << 20) + 1000, b = (3 << 20) + 500, far = 1 << 20;
        size = b + SMALL;
        memset(want, 0, size);
        fill(want + far, PIECE, far, 1);
        fill(want + b, SMALL, b, 9);
        if (rank == 0) {
            unsigned char old[SMALL];
            fill(old, SMALL, a, 9);
            check(MPI_File_write_at(fh, a, old, SMALL, MPI_BYTE, MPI_STATUS_IGNORE), "small write");
            check(MPI_File_write_at(fh, b, want + b, SMALL, MPI_BYTE, MPI_STATUS_IGNORE), "small write");
            check(MPI_File_write_at(fh, far, want + far, PIECE, MPI_BYTE, MPI_STATUS_IGNORE), "write_at");
        }
        MPI_Barrier(MPI_COMM_WORLD);
        check(MPI_File_read_at(fh, 0, got, (int) size, MPI_BYTE, MPI_STATUS_IGNORE), "read_at");
        bad |= same(got, want, size, "after the barrier");
    } else if (!strcmp(c, "beneath") || !strcmp(c, "newer")) {
        int beneath = !strcmp(c, "beneath");
        size = BIG;
        if (beneath && rank == 1)
            check(MPI_File_write_at(fh, SMALL_OFF, small, SMALL, MPI_BYTE, MPI_STATUS_IGNORE), "small write");
        if (beneath)
            MPI_Barrier(MPI_COMM_WORLD);
        if (rank == 0)
            check(MPI_File_write_at(fh, 0, want, BIG, MPI_BYTE, MPI_STATUS_IGNORE), "write_at");
        MPI_Barrier(MPI_COMM_WORLD);
        if (!beneath) {
            if (rank == 1)
                check(MPI_File_write_at(fh, SMALL_OFF, small, SMALL, MPI_BYTE, MPI_STATUS_IGNORE), "small write");
            memcpy(want + SMALL_OFF, small, SMALL);
            MPI_Barrier(MPI_COMM_WORLD);
        }
        check(MPI_File_read_at(fh, 0, got, BIG, MPI_BYTE, MPI_STATUS_IGNORE), "read_at");
        bad |= same(got, want, BIG, "after the barrier");
    } else {
        if (rank == 0)
            fprintf(stderr, "leasetest: unknown case %s\n", c);
        MPI_Abort(MPI_COMM_WORLD, 2);
    }
    check(MPI_File_close(&fh), "close");
    if (rank == 0) {
        MPI_Offset n;
        check(MPI_File_open(MPI_COMM_SELF, path, MPI_MODE_RDONLY, MPI_INFO_NULL, &fh), "reopen");
        check(MPI_File_get_size(fh, &n), "get_size");
        if (n != size) {
            printf("rank 0: size %lld after close, want %lld\n", (long long) n, size);
            bad = 1;
        }
        check(MPI_File_read_at(fh, 0, got, (int) size, MPI_BYTE, MPI_STATUS_IGNORE), "read back");
        bad |= same(got, want, size, "after close");
        check(MPI_File_close(&fh), "close");
    }
    MPI_Allreduce(&bad, &all, 1, MPI_INT, MPI_MAX, MPI_COMM_WORLD);
    if (rank == 0) {
        if (all)
            printf("leasetest %s BAD: wrong bytes\n", c);
        else
            printf("leasetest %s ok\n", c);
    }
    free(want);
    free(got);
    MPI_Finalize();
    return all;
}
