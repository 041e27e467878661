/*
 * linktest: every rank writes 256 KiB pieces of one shared file, one every
 * 20 ms, for SECS seconds (offsets wrap within 16 pieces per rank, so the
 * file stays small), then closes it. For tests/cluster.sh, which takes a
 * server's host off the network meanwhile: the write (or close) that meets
 * the lost server must fail with a clear MPI error in bounded time.
 *
 *   mpiexec -n N linktest PATH SECS [FIFO]
 *
 * Prints "linktest: rank R: started" once writing, then either
 * "linktest: rank R: ok, N pieces" or
 * "linktest: rank R: <call> failed after S s (piece N): class=<c> <message>"
 * and aborts the job. With FIFO (a named pipe the caller holds open for
 * reading), each rank also writes "writing R" there once it has written
 * READY_PIECES pieces (its writes reach every server by then), and
 * "failed R <the line above>" before it aborts: the caller waits on the
 * pipe instead of polling the output and sleeping, and takes the error from
 * there, since MPI_Abort may end the job before hydra has forwarded the
 * rank's stdout.
 */
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <fcntl.h>

#define PIECE (256 << 10)
#define READY_PIECES 10

static int rank, nprocs;
static double t0;
static long pieces;

static const char *fifo;

/* One line to the caller's pipe; never blocks (no reader: dropped). A line
 * is shorter than PIPE_BUF (at least 4096 bytes; what follows the word is
 * cut to 3,000), so lines of several ranks do not mix. */
static void tell(const char *word, const char *rest)
{
    char line[3100];
    int fd, n;
    if (fifo == NULL)
        return;
    fd = open(fifo, O_WRONLY | O_NONBLOCK | O_CLOEXEC);
    if (fd < 0)
        return;
    n = snprintf(line, sizeof(line), "%s %d %.3000s\n", word, rank, rest);
    if (write(fd, line, n) != n)
        perror("linktest: fifo");
    close(fd);
}

static void check(int rc, const char *what)
{
    if (rc == MPI_SUCCESS)
        return;
    char msg[MPI_MAX_ERROR_STRING], line[MPI_MAX_ERROR_STRING + 200];
    int len, cls;
    MPI_Error_string(rc, msg, &len);
    MPI_Error_class(rc, &cls);
    /* The message can span lines; the pipe's line must not. */
    for (char *c = msg; *c; c++)
        if (*c == '\n')
            *c = ' ';
    snprintf(line, sizeof(line), "linktest: rank %d: %s failed after %.1f s (piece %ld): class=%s %s",
             rank, what, MPI_Wtime() - t0, pieces, cls == MPI_ERR_IO ? "MPI_ERR_IO" : "other", msg);
    printf("%s\n", line);
    fflush(stdout);
    tell("failed", line);
    MPI_Abort(MPI_COMM_WORLD, 1);
}

int main(int argc, char **argv)
{
    MPI_File fh;
    MPI_Init(&argc, &argv);
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    MPI_Comm_size(MPI_COMM_WORLD, &nprocs);
    if (argc < 3) {
        if (rank == 0)
            fprintf(stderr, "usage: linktest PATH SECS\n");
        MPI_Finalize();
        return 2;
    }
    double secs = atof(argv[2]);
    if (argc > 3)
        fifo = argv[3];
    char *buf = malloc(PIECE);
    memset(buf, 'a' + rank % 26, PIECE);
    MPI_File_set_errhandler(MPI_FILE_NULL, MPI_ERRORS_RETURN);
    check(MPI_File_open(MPI_COMM_WORLD, argv[1], MPI_MODE_CREATE | MPI_MODE_WRONLY, MPI_INFO_NULL,
                        &fh), "open");
    t0 = MPI_Wtime();
    printf("linktest: rank %d: started\n", rank);
    fflush(stdout);
    while (MPI_Wtime() - t0 < secs) {
        MPI_Offset off = ((MPI_Offset) (pieces % 16) * nprocs + rank) * PIECE;
        check(MPI_File_write_at(fh, off, buf, PIECE, MPI_BYTE, MPI_STATUS_IGNORE), "write");
        pieces++;
        if (pieces == READY_PIECES)
            tell("writing", "");
        usleep(20000);
    }
    check(MPI_File_close(&fh), "close");
    printf("linktest: rank %d: ok, %ld pieces\n", rank, pieces);
    free(buf);
    MPI_Finalize();
    return 0;
}
