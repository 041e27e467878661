/*
 * vistest: a write that returned is seen by every read issued after an MPI
 * operation that orders the two processes, with default hints (no sync, no
 * write_ack). For each record size (64 B, 4 KiB, 64 KiB) and each way of
 * ordering, TRIALS times: every rank writes a record to its own slot, the
 * ranks are ordered, and every rank reads the slot its left neighbour just
 * wrote and compares it byte for byte. The ways of ordering:
 *
 *   barrier    MPI_File_write_at, MPI_Barrier
 *   sendrecv   MPI_File_write_at, then an MPI_Send to the right neighbour
 *              and an MPI_Recv from the left one (no collective at all)
 *   iwrite     MPI_File_iwrite_at + MPI_Wait, MPI_Barrier
 *   coll       MPI_File_write_at_all, MPI_Barrier (on ufs: the collective
 *              alone orders nothing: a rank returns before the aggregator
 *              wrote its bytes)
 *   collonly   MPI_File_write_at_all, nothing else: delegate only, where
 *              every rank's end marker orders the pieces
 *   win        MPI_File_write_at, MPI_Put of a flag into the neighbour's
 *              window, MPI_Win_fence
 *   third      every rank but the last: MPI_File_write_at_all and
 *              MPI_File_set_view on a handle of theirs, then all an
 *              MPI_Barrier; the last rank, which took no part in the
 *              collective, reads one of the records through a handle of
 *              its own (the servers hold only the collective's ranks'
 *              later requests until its end markers: the fences must
 *              cover the rest)
 *
 * Then the same process through two handles of one file: write through
 * the first, read through the second at once (TRIALS per size).
 *
 * Slots are 1 MiB apart, so with several servers neighbouring slots belong
 * to different servers; a slot is reused every 16 trials with new bytes, so
 * an old record is caught. Prints one line per case with the stale count
 * and exits non-zero if any read was stale.
 *
 *   mpiexec -n N vistest PATH [TRIALS] [--ack] [--modes LIST]
 *
 * --ack sets delegate_write_ack=sync (an extra: writes acknowledged before
 * they return), for comparison only. --modes runs only the ways of
 * ordering listed (comma-separated names, "handles" for the two handles);
 * the default is all of them (collonly only on a delegate: path).
 */
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define SLOT (1 << 20)

/* every I/O call is checked: an error is not a stale read */
#define CHECK(call) check((call), #call, __LINE__)

static void check(int rc, const char *what, int line)
{
    char msg[MPI_MAX_ERROR_STRING];
    int len = 0;
    if (rc == MPI_SUCCESS)
        return;
    MPI_Error_string(rc, msg, &len);
    printf("vistest: error at line %d: %s: %s\n", line, what, msg);
    fflush(stdout);
    MPI_Abort(MPI_COMM_WORLD, 3);
}

static int rank, nranks, trials = 200;

static void fill(char *b, int size, int k, int r, int salt)
{
    for (int i = 0; i < size; i++)
        b[i] = (char) (k * 131 + r * 31 + salt * 7 + i * 13 + 1);
}

static MPI_Offset slot(int k, int r, int size)
{
    return ((MPI_Offset) (k % 16) * nranks + r) * SLOT + (MPI_Offset) (k % 8) * size;
}

enum { BARRIER, SENDRECV, IWRITE, COLL, COLLONLY, WIN, THIRD, NMODES };
static const char *names[NMODES] = { "barrier", "sendrecv", "iwrite", "coll", "collonly", "win",
    "third"
};

/* for the third mode: the handle of every rank but the last (opened on
 * their communicator) or the last rank's own (MPI_COMM_SELF) */
static MPI_File third_fh = MPI_FILE_NULL;

/* wanted reports whether mode name runs: listed in modes (all when NULL);
 * a delegate-only mode runs only on a delegate: path */
static int wanted(const char *modes, const char *name, const char *path, int delegate_only)
{
    size_t n = strlen(name);
    if (delegate_only && strncmp(path, "delegate:", 9) != 0)
        return 0;
    if (modes == NULL)
        return 1;
    for (const char *p = modes; (p = strstr(p, name)) != NULL; p += n)
        if ((p == modes || p[-1] == ',') && (p[n] == '\0' || p[n] == ','))
            return 1;
    return 0;
}

/* one case: returns the number of stale reads of this rank */
static int run(MPI_File fh, int mode, int size, int salt, MPI_Win win, int *flag)
{
    if (size <= 0)              /* (sizes[] are positive; tells gcc's -Wstringop-overflow) */
        return 0;
    char *rec = malloc(size), *want = malloc(size), *got = malloc(size);
    int left = (rank + nranks - 1) % nranks, right = (rank + 1) % nranks, stale = 0;
    for (int k = 0; k < trials; k++) {
        MPI_Request req;
        int token = k, one = 1;
        fill(rec, size, k, rank, salt);
        switch (mode) {
        case BARRIER:
            CHECK(MPI_File_write_at(fh, slot(k, rank, size), rec, size, MPI_BYTE, MPI_STATUS_IGNORE));
            MPI_Barrier(MPI_COMM_WORLD);
            break;
        case SENDRECV:
            CHECK(MPI_File_write_at(fh, slot(k, rank, size), rec, size, MPI_BYTE, MPI_STATUS_IGNORE));
            if (rank % 2 == 0) {
                MPI_Send(&token, 1, MPI_INT, right, 7, MPI_COMM_WORLD);
                MPI_Recv(&token, 1, MPI_INT, left, 7, MPI_COMM_WORLD, MPI_STATUS_IGNORE);
            } else {
                MPI_Recv(&token, 1, MPI_INT, left, 7, MPI_COMM_WORLD, MPI_STATUS_IGNORE);
                MPI_Send(&token, 1, MPI_INT, right, 7, MPI_COMM_WORLD);
            }
            break;
        case IWRITE:
            CHECK(MPI_File_iwrite_at(fh, slot(k, rank, size), rec, size, MPI_BYTE, &req));
            MPI_Wait(&req, MPI_STATUS_IGNORE);
            MPI_Barrier(MPI_COMM_WORLD);
            break;
        case COLL:
        case COLLONLY:
            CHECK(MPI_File_write_at_all(fh, slot(k, rank, size), rec, size, MPI_BYTE,
                                  MPI_STATUS_IGNORE));
            if (mode == COLL)
                MPI_Barrier(MPI_COMM_WORLD);
            break;
        case THIRD:
            if (rank < nranks - 1) {
                CHECK(MPI_File_write_at_all(third_fh, slot(k, rank, size), rec, size, MPI_BYTE,
                                      MPI_STATUS_IGNORE));
                CHECK(MPI_File_set_view(third_fh, 0, MPI_BYTE, MPI_BYTE, "native",
                                        MPI_INFO_NULL));
            }
            MPI_Barrier(MPI_COMM_WORLD);
            if (rank == nranks - 1) {
                int w = k % (nranks - 1);
                fill(want, size, k, w, salt);
                memset(got, 0, size);
                CHECK(MPI_File_read_at(third_fh, slot(k, w, size), got, size, MPI_BYTE,
                                       MPI_STATUS_IGNORE));
                if (memcmp(want, got, size) != 0)
                    stale++;
            }
            /* the next round writes other slots (slot() cycles over 16) */
            continue;
        case WIN:
            CHECK(MPI_File_write_at(fh, slot(k, rank, size), rec, size, MPI_BYTE, MPI_STATUS_IGNORE));
            MPI_Put(&one, 1, MPI_INT, right, 0, 1, MPI_INT, win);
            MPI_Win_fence(0, win);
            if (*flag != 1) {
                printf("vistest: rank %d: window flag not set\n", rank);
                stale++;
            }
            *flag = 0;
            MPI_Win_fence(0, win);
            break;
        }
        fill(want, size, k, left, salt);
        memset(got, 0, size);
        CHECK(MPI_File_read_at(fh, slot(k, left, size), got, size, MPI_BYTE, MPI_STATUS_IGNORE));
        if (memcmp(want, got, size) != 0)
            stale++;
        /* A slot is written again 16 rounds later; every way of ordering
         * keeps neighbours within a few rounds of each other, and this
         * barrier every 8 rounds bounds the rest: nobody rewrites a slot
         * before its reader read it. */
        if (k % 8 == 7)
            MPI_Barrier(MPI_COMM_WORLD);
    }
    /* the next case writes the same slots: nobody starts it before every
     * read of this one is done */
    MPI_Barrier(MPI_COMM_WORLD);
    free(rec);
    free(want);
    free(got);
    return stale;
}

/* two handles of one file in one process: write through a, read through b */
static int two_handles(const char *path, MPI_Info info, int size)
{
    MPI_File a, b;
    char *rec = malloc(size), *got = malloc(size);
    int stale = 0;
    CHECK(MPI_File_open(MPI_COMM_SELF, path, MPI_MODE_CREATE | MPI_MODE_RDWR, info, &a));
    CHECK(MPI_File_open(MPI_COMM_SELF, path, MPI_MODE_RDWR, info, &b));
    for (int k = 0; k < trials; k++) {
        MPI_Offset off = (MPI_Offset) (k % 16) * SLOT + (MPI_Offset) (k % 8) * size;
        fill(rec, size, k, rank, 99);
        CHECK(MPI_File_write_at(a, off, rec, size, MPI_BYTE, MPI_STATUS_IGNORE));
        memset(got, 0, size);
        CHECK(MPI_File_read_at(b, off, got, size, MPI_BYTE, MPI_STATUS_IGNORE));
        if (memcmp(rec, got, size) != 0)
            stale++;
    }
    CHECK(MPI_File_close(&a));
    CHECK(MPI_File_close(&b));
    free(rec);
    free(got);
    return stale;
}

int main(int argc, char **argv)
{
    static const int sizes[] = { 64, 4096, 65536 };
    int total = 0, salt = 0, *flag, cases = 0;
    const char *modes = NULL;
    char path2[4096];
    MPI_File fh;
    MPI_Info info;
    MPI_Win win;
    MPI_Init(&argc, &argv);
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    MPI_Comm_size(MPI_COMM_WORLD, &nranks);
    if (argc < 2) {
        if (rank == 0)
            fprintf(stderr, "usage: vistest PATH [TRIALS] [--ack]\n");
        MPI_Abort(MPI_COMM_WORLD, 2);
    }
    MPI_Info_create(&info);
    for (int i = 2; i < argc; i++) {
        if (strcmp(argv[i], "--ack") == 0)
            MPI_Info_set(info, "delegate_write_ack", "sync");
        else if (strcmp(argv[i], "--modes") == 0 && i + 1 < argc)
            modes = argv[++i];
        else
            trials = atoi(argv[i]);
    }
    MPI_Win_allocate(sizeof(int), sizeof(int), MPI_INFO_NULL, MPI_COMM_WORLD, &flag, &win);
    *flag = 0;
    MPI_Win_fence(0, win);
    CHECK(MPI_File_open(MPI_COMM_WORLD, argv[1], MPI_MODE_CREATE | MPI_MODE_RDWR, info, &fh));
    if (nranks > 1 && wanted(modes, names[THIRD], argv[1], 0)) {
        MPI_Comm sub;
        MPI_Comm_split(MPI_COMM_WORLD, rank == nranks - 1, rank, &sub);
        CHECK(MPI_File_open(sub, argv[1], MPI_MODE_RDWR, info, &third_fh));
        MPI_Comm_free(&sub);
    }
    for (int m = 0; m < NMODES; m++)
        for (int s = 0; s < 3; s++) {
            if (!wanted(modes, names[m], argv[1], m == COLLONLY) || (m == THIRD && nranks < 2))
                continue;
            cases++;
            int stale = run(fh, m, sizes[s], ++salt, win, flag), all;
            MPI_Reduce(&stale, &all, 1, MPI_INT, MPI_SUM, 0, MPI_COMM_WORLD);
            if (rank == 0)
                printf("vistest: %d ranks, %-8s %6d-byte records: %d of %d reads stale\n", nranks,
                       names[m], sizes[s], all, m == THIRD ? trials : trials * nranks);
            total += stale;
        }
    CHECK(MPI_File_close(&fh));
    if (third_fh != MPI_FILE_NULL)
        CHECK(MPI_File_close(&third_fh));
    snprintf(path2, sizeof path2, "%s.%d", argv[1], rank);
    for (int s = 0; s < 3 && wanted(modes, "handles", argv[1], 0); s++) {
        int stale = two_handles(path2, info, sizes[s]), all;
        cases++;
        MPI_Reduce(&stale, &all, 1, MPI_INT, MPI_SUM, 0, MPI_COMM_WORLD);
        if (rank == 0)
            printf("vistest: two handles in one process, %6d-byte records: %d of %d reads stale\n",
                   sizes[s], all, trials * nranks);
        total += stale;
    }
    MPI_Allreduce(MPI_IN_PLACE, &total, 1, MPI_INT, MPI_SUM, MPI_COMM_WORLD);
    if (rank == 0)
    {
        if (total == 0)
            printf("vistest ok: %d cases, 0 stale reads\n", cases);
        else
            printf("vistest FAILED: %d cases, %d stale reads\n", cases, total);
    }
    MPI_Win_free(&win);
    MPI_Info_free(&info);
    MPI_Finalize();
    return total != 0;
}
