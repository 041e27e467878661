/*
 * restarttest: a program whose delegate server is killed and started again
 * under it, for tests/restart.sh.
 *
 *   mpiexec -n N restarttest delegate:PATH STEPFIFO GOFIFO
 *
 * Each rank writes its own 4 KiB blocks, syncs and reads each back (a
 * synced file is read straight from the backend: libdelegate's direct read,
 * which looks at the server's control page in shared memory). After ROUNDS
 * rounds rank 0 writes "ready" to STEPFIFO and waits for a line on GOFIFO,
 * meanwhile the script SIGKILLs the server and starts it again on the same
 * socket. Then every rank opens the file again (which reconnects), uses the
 * old handle once more (a read: the direct-read path again, now on a dead
 * session), closes the old handle, checks every block written before the
 * restart through the new handle, and goes on writing and reading with it.
 *
 * An operation on the old handle must either succeed with the right bytes
 * or fail with MPI_ERR_IO; anything else, a wrong byte, a crash or a hang
 * (the script's timeout) is a failure. Each rank prints what the old handle
 * did; rank 0 prints "restarttest ok" at the end, or the program exits 1.
 */
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define BLOCK 4096
#define ROUNDS 20               /* before the restart */
#define AFTER 20                /* after it, on the new handle */

static int rank, nprocs;

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

static void fill(char *b, int blk)
{
    for (int i = 0; i < BLOCK; i++)
        b[i] = (char) (blk * 31 + i * 7 + 1);
}

static MPI_Offset offset_of(int round)
{
    return (MPI_Offset) (round * nprocs + rank) * BLOCK;
}

/* round writes, syncs and reads back this rank's block of round r on fh;
 * it returns the first failure (and what failed), or MPI_SUCCESS. */
static int round_trip(MPI_File fh, int r, const char **what)
{
    char want[BLOCK], got[BLOCK];
    int rc;
    fill(want, r * nprocs + rank);
    *what = "write";
    if ((rc = MPI_File_write_at(fh, offset_of(r), want, BLOCK, MPI_BYTE, MPI_STATUS_IGNORE)))
        return rc;
    *what = "sync";
    if ((rc = MPI_File_sync(fh)))
        return rc;
    *what = "read";
    memset(got, 0, sizeof got);
    if ((rc = MPI_File_read_at(fh, offset_of(r), got, BLOCK, MPI_BYTE, MPI_STATUS_IGNORE)))
        return rc;
    if (memcmp(want, got, BLOCK)) {
        printf("restarttest FAIL rank %d: round %d read other bytes than written\n", rank, r);
        fflush(stdout);
        MPI_Abort(MPI_COMM_WORLD, 1);
    }
    return MPI_SUCCESS;
}

/* handshake tells the script that the rounds are done and waits for it to
 * have restarted the server. */
static void handshake(const char *step, const char *go)
{
    char line[64];
    FILE *s, *g;
    MPI_Barrier(MPI_COMM_WORLD);        /* every rank is done with the rounds */
    if (rank == 0) {
        if ((s = fopen(step, "w")) == NULL || fprintf(s, "ready\n") < 0 || fclose(s) != 0) {
            perror(step);
            MPI_Abort(MPI_COMM_WORLD, 1);
        }
        if ((g = fopen(go, "r")) == NULL || fgets(line, sizeof line, g) == NULL) {
            perror(go);
            MPI_Abort(MPI_COMM_WORLD, 1);
        }
        fclose(g);
    }
    MPI_Barrier(MPI_COMM_WORLD);
}

int main(int argc, char **argv)
{
    MPI_File fh, nfh;
    const char *what;
    char buf[BLOCK], want[BLOCK];
    int rc, attempts, bad = 0, anybad;

    MPI_Init(&argc, &argv);
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    MPI_Comm_size(MPI_COMM_WORLD, &nprocs);
    if (argc != 4) {
        if (rank == 0)
            fprintf(stderr, "usage: restarttest delegate:PATH STEPFIFO GOFIFO\n");
        MPI_Abort(MPI_COMM_WORLD, 2);
    }
    MPI_File_set_errhandler(MPI_FILE_NULL, MPI_ERRORS_RETURN);
    if ((rc = MPI_File_open(MPI_COMM_WORLD, argv[1], MPI_MODE_CREATE | MPI_MODE_RDWR,
                            MPI_INFO_NULL, &fh)))
        fail("open", rc);
    for (int r = 0; r < ROUNDS; r++)
        if ((rc = round_trip(fh, r, &what)))
            fail(what, rc);

    handshake(argv[2], argv[3]);        /* the server is killed and restarted here */

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

    /* The old handle: a direct-read attempt on a dead session. */
    rc = MPI_File_read_at(fh, offset_of(0), buf, BLOCK, MPI_BYTE, MPI_STATUS_IGNORE);
    fill(want, rank);
    if (rc == MPI_SUCCESS) {
        if (memcmp(buf, want, BLOCK)) {
            printf("restarttest FAIL rank %d: the old handle read other bytes than written\n",
                   rank);
            bad = 1;
        } else {
            printf("restarttest rank %d: old handle after the restart: read succeeded, "
                   "bytes right\n", rank);
        }
    } else {
        printf("restarttest rank %d: old handle after the restart: read class=%s msg=%s\n", rank,
               class_name(error_class(rc)), message(rc));
        if (error_class(rc) != MPI_ERR_IO)
            bad = 1;
    }
    rc = MPI_File_close(&fh);
    if (rc != MPI_SUCCESS && error_class(rc) != MPI_ERR_IO) {
        printf("restarttest FAIL rank %d: close of the old handle: class=%s msg=%s\n", rank,
               class_name(error_class(rc)), message(rc));
        bad = 1;
    }

    /* What was synced before the restart, through the new handle. */
    MPI_Barrier(MPI_COMM_WORLD);
    for (int b = 0; b < ROUNDS * nprocs; b++) {
        if (b % nprocs != rank)
            continue;
        fill(want, b);
        if ((rc = MPI_File_read_at(nfh, (MPI_Offset) b * BLOCK, buf, BLOCK, MPI_BYTE,
                                   MPI_STATUS_IGNORE)))
            fail("read back after the restart", rc);
        if (memcmp(buf, want, BLOCK)) {
            printf("restarttest FAIL rank %d: block %d synced before the restart differs\n",
                   rank, b);
            bad = 1;
            break;
        }
    }
    for (int r = ROUNDS; r < ROUNDS + AFTER; r++)
        if ((rc = round_trip(nfh, r, &what)))
            fail(what, rc);
    if ((rc = MPI_File_close(&nfh)))
        fail("close of the new handle", rc);

    MPI_Allreduce(&bad, &anybad, 1, MPI_INT, MPI_MAX, MPI_COMM_WORLD);
    if (rank == 0 && !anybad)
        printf("restarttest ok: %d ranks, %d rounds before and %d after the restart, "
               "reopened in %d attempt(s)\n", nprocs, ROUNDS, AFTER, attempts);
    fflush(stdout);
    MPI_Finalize();
    return anybad;
}
