/*
 * restarttest: a program whose delegate server is killed and started again
 * while it writes and reads, for tests/restart.sh.
 *
 *   mpiexec -n N restarttest delegate:PATH STEPFIFO GOFIFO
 *
 * Each rank goes round its own SLOTS blocks of 4 KiB: write a block (new
 * bytes each round), sync, read it back (a synced file is read straight
 * from the backend: libdelegate's direct read, which looks at the server's
 * control page in shared memory). After SIGNAL rounds rank 0 writes "ready"
 * to STEPFIFO and the ranks go on; meanwhile the script SIGKILLs the server
 * and, once told, starts it again on the same socket and writes a line to
 * GOFIFO.
 * The ranks go round until one of them sees an operation fail (they agree
 * on it after every round). While the server is down (the script starts it
 * only once rank 0 has written "down" to STEPFIFO) an open must fail fast
 * with MPI_ERR_IO and so must the old handle. Then the ranks wait for a
 * line on GOFIFO, open the file again (which reconnects), use the old
 * handle once more (a read: the direct-read path, now on a dead session
 * whose client has reconnected), close the old handle, check every block
 * through the new handle and go on with it.
 *
 * An operation on the old handle must fail with MPI_ERR_IO or succeed with
 * the right bytes; a block synced before the restart must hold what was
 * synced, one whose round failed either that or the round's new bytes;
 * anything else, a crash or a hang (the script's timeout) is a failure.
 * Each rank prints how the old handle ended; rank 0 prints "restarttest ok"
 * at the end, or the program exits 1.
 */
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define BLOCK 4096
#define SLOTS 64                /* blocks per rank */
#define SIGNAL 20               /* rounds before rank 0 says "ready" */
#define AFTER 40                /* rounds on the new handle */

static int rank, nprocs;
static int synced[SLOTS];       /* round whose bytes a block holds on the backend, -1: none */
static int pending[SLOTS];      /* round that failed on the block after its write, -1: none */

static const char *class_name(int c)
{
    switch (c) {
    case MPI_SUCCESS: return "MPI_SUCCESS";
    case MPI_ERR_IO: return "MPI_ERR_IO";
    case MPI_ERR_ACCESS: return "MPI_ERR_ACCESS";
    case MPI_ERR_NO_SUCH_FILE: return "MPI_ERR_NO_SUCH_FILE";
    case MPI_ERR_BAD_FILE: return "MPI_ERR_BAD_FILE";
    case MPI_ERR_FILE: return "MPI_ERR_FILE";
    case MPI_ERR_ARG: return "MPI_ERR_ARG";
    case MPI_ERR_OTHER: return "MPI_ERR_OTHER";
    }
    return "other";
}

/* message returns rc's error string on one line. */
static const char *message(int rc)
{
    static char msg[MPI_MAX_ERROR_STRING];
    int len = 0;
    MPI_Error_string(rc, msg, &len);
    for (char *p = msg; *p != '\0'; p++)
        if (*p == '\n')
            *p = ' ';
    return msg;
}

static int error_class(int rc)
{
    int cls;
    MPI_Error_class(rc, &cls);
    return cls;
}

static void fail(const char *what, int rc)
{
    printf("restarttest FAIL rank %d: %s: class=%s msg=%s\n", rank, what,
           class_name(error_class(rc)), message(rc));
    fflush(stdout);
    MPI_Abort(MPI_COMM_WORLD, 1);
}

/* fill makes the bytes of round r in block slot (round -1: a hole). */
static void fill(char *b, int slot, int r)
{
    for (int i = 0; i < BLOCK; i++)
        b[i] = r < 0 ? 0 : (char) (slot * 31 + r * 17 + i * 7 + 1);
}

static MPI_Offset offset_of(int slot)
{
    return (MPI_Offset) (slot * nprocs + rank) * BLOCK;
}

/* read_block reads block slot into b; what lies past the end of file reads
 * as zeros, as a hole does. */
static int read_block(MPI_File fh, int slot, char *b)
{
    MPI_Status st;
    int rc, n = 0;
    memset(b, 0, BLOCK);
    if ((rc = MPI_File_read_at(fh, offset_of(slot), b, BLOCK, MPI_BYTE, &st)))
        return rc;
    MPI_Get_count(&st, MPI_BYTE, &n);
    if (n < 0 || n > BLOCK)
        n = 0;
    memset(b + n, 0, BLOCK - n);
    return MPI_SUCCESS;
}

/* round_trip writes, syncs and reads back block r % SLOTS with round r's
 * bytes; it returns the first failure (and what failed), or MPI_SUCCESS. */
static int round_trip(MPI_File fh, int r, const char **what)
{
    char want[BLOCK], got[BLOCK];
    int rc, slot = r % SLOTS;
    fill(want, slot, r);
    pending[slot] = r;          /* from here the block may hold either */
    *what = "write";
    if ((rc = MPI_File_write_at(fh, offset_of(slot), want, BLOCK, MPI_BYTE, MPI_STATUS_IGNORE)))
        return rc;
    *what = "sync";
    if ((rc = MPI_File_sync(fh)))
        return rc;
    synced[slot] = r;
    pending[slot] = -1;
    *what = "read";
    if ((rc = read_block(fh, slot, got)))
        return rc;
    if (memcmp(want, got, BLOCK)) {
        printf("restarttest FAIL rank %d: round %d read other bytes than written\n", rank, r);
        fflush(stdout);
        MPI_Abort(MPI_COMM_WORLD, 1);
    }
    return MPI_SUCCESS;
}

/* block_ok says whether b is what block slot may hold: its synced bytes,
 * or those of the round that failed on it. */
static int block_ok(int slot, const char *b)
{
    char want[BLOCK];
    fill(want, slot, synced[slot]);
    if (!memcmp(want, b, BLOCK))
        return 1;
    if (pending[slot] >= 0) {
        fill(want, slot, pending[slot]);
        return !memcmp(want, b, BLOCK);
    }
    return 0;
}

static void say(const char *path, const char *line)
{
    FILE *f;
    if ((f = fopen(path, "w")) == NULL || fprintf(f, "%s\n", line) < 0 || fclose(f) != 0) {
        perror(path);
        MPI_Abort(MPI_COMM_WORLD, 1);
    }
}

static void hear(const char *path)
{
    char line[64];
    FILE *f;
    if ((f = fopen(path, "r")) == NULL || fgets(line, sizeof line, f) == NULL) {
        perror(path);
        MPI_Abort(MPI_COMM_WORLD, 1);
    }
    fclose(f);
}

int main(int argc, char **argv)
{
    MPI_File fh, nfh;
    const char *what = "";
    char buf[BLOCK];
    double t;
    int rc, r, mine, any, attempts, bad = 0, anybad, failed_round = -1;

    MPI_Init(&argc, &argv);
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    MPI_Comm_size(MPI_COMM_WORLD, &nprocs);
    if (argc != 4) {
        if (rank == 0)
            fprintf(stderr, "usage: restarttest delegate:PATH STEPFIFO GOFIFO\n");
        MPI_Abort(MPI_COMM_WORLD, 2);
    }
    for (int s = 0; s < SLOTS; s++)
        synced[s] = pending[s] = -1;
    MPI_File_set_errhandler(MPI_FILE_NULL, MPI_ERRORS_RETURN);
    if ((rc = MPI_File_open(MPI_COMM_WORLD, argv[1], MPI_MODE_CREATE | MPI_MODE_RDWR,
                            MPI_INFO_NULL, &fh)))
        fail("open", rc);

    /* Rounds until an operation fails on some rank: the server was killed. */
    for (r = 0;; r++) {
        rc = round_trip(fh, r, &what);
        mine = rc != MPI_SUCCESS;
        if (mine) {
            failed_round = r;
            printf("restarttest rank %d: old handle failed in round %d: %s class=%s msg=%s\n",
                   rank, r, what, class_name(error_class(rc)), message(rc));
            if (error_class(rc) != MPI_ERR_IO || r <= SIGNAL)
                bad = 1;        /* a wrong class, or a failure before the kill */
        }
        MPI_Allreduce(&mine, &any, 1, MPI_INT, MPI_LOR, MPI_COMM_WORLD);
        if (any)
            break;
        if (r == SIGNAL && rank == 0)
            say(argv[2], "ready");      /* the server dies during the next rounds */
    }
    if (failed_round < 0)
        printf("restarttest rank %d: old handle: round %d succeeded here, failed elsewhere\n",
               rank, r);

    /* The server is down until we say so: an open fails fast, and so does
     * the old handle (or it reads the right bytes). */
    t = MPI_Wtime();
    rc = MPI_File_open(MPI_COMM_WORLD, argv[1], MPI_MODE_RDWR, MPI_INFO_NULL, &nfh);
    t = MPI_Wtime() - t;
    if (rc == MPI_SUCCESS) {
        printf("restarttest FAIL rank %d: open succeeded while the server was down\n", rank);
        MPI_File_close(&nfh);
        bad = 1;
    } else {
        printf("restarttest rank %d: open while the server is down: class=%s secs=%.2f msg=%s\n",
               rank, class_name(error_class(rc)), t, message(rc));
        bad |= error_class(rc) != MPI_ERR_IO || t > 10;
    }
    rc = read_block(fh, 0, buf);
    if (rc == MPI_SUCCESS) {
        printf("restarttest rank %d: old handle while the server is down: read succeeded, "
               "bytes %s\n", rank, block_ok(0, buf) ? "right" : "WRONG");
        bad |= !block_ok(0, buf);
    } else {
        printf("restarttest rank %d: old handle while the server is down: read class=%s msg=%s\n",
               rank, class_name(error_class(rc)), message(rc));
        bad |= error_class(rc) != MPI_ERR_IO;
    }

    MPI_Barrier(MPI_COMM_WORLD);
    if (rank == 0) {
        say(argv[2], "down");
        hear(argv[3]);          /* the server runs again */
    }
    MPI_Barrier(MPI_COMM_WORLD);

    /* A new open reconnects. Should the client not have seen the old
     * connection end yet, the open fails with MPI_ERR_IO and the next one
     * reconnects; more than that is a failure. */
    for (attempts = 1;; attempts++) {
        rc = MPI_File_open(MPI_COMM_WORLD, argv[1], MPI_MODE_RDWR, MPI_INFO_NULL, &nfh);
        if (rc == MPI_SUCCESS)
            break;
        if (attempts == 3 || error_class(rc) != MPI_ERR_IO)
            fail("open after the restart", rc);
    }

    /* The old handle once more: a direct-read attempt on a dead session. */
    rc = read_block(fh, 0, buf);
    if (rc == MPI_SUCCESS) {
        printf("restarttest rank %d: old handle after the restart: read succeeded, bytes %s\n",
               rank, block_ok(0, buf) ? "right" : "WRONG");
        bad |= !block_ok(0, buf);
    } else {
        printf("restarttest rank %d: old handle after the restart: read class=%s msg=%s\n", rank,
               class_name(error_class(rc)), message(rc));
        bad |= error_class(rc) != MPI_ERR_IO;
    }
    rc = MPI_File_close(&fh);
    if (rc != MPI_SUCCESS && error_class(rc) != MPI_ERR_IO) {
        printf("restarttest FAIL rank %d: close of the old handle: class=%s msg=%s\n", rank,
               class_name(error_class(rc)), message(rc));
        bad = 1;
    }

    /* Every block, through the new handle. */
    MPI_Barrier(MPI_COMM_WORLD);
    for (int s = 0; s < SLOTS; s++) {
        if ((rc = read_block(nfh, s, buf)))
            fail("read back after the restart", rc);
        if (!block_ok(s, buf)) {
            printf("restarttest FAIL rank %d: block %d holds neither round %d's bytes (synced) "
                   "nor round %d's\n", rank, s, synced[s], pending[s]);
            bad = 1;
        }
    }
    for (int k = 1; k <= AFTER; k++)
        if ((rc = round_trip(nfh, r + k, &what)))
            fail(what, rc);
    if ((rc = MPI_File_close(&nfh)))
        fail("close of the new handle", rc);

    MPI_Allreduce(&bad, &anybad, 1, MPI_INT, MPI_MAX, MPI_COMM_WORLD);
    if (rank == 0 && !anybad)
        printf("restarttest ok: %d ranks, the old handle failed in round %d (the kill came "
               "after round %d), reopened in %d attempt(s), %d rounds on the new handle\n",
               nprocs, r, SIGNAL, attempts, AFTER);
    fflush(stdout);
    MPI_Finalize();
    return anybad;
}
