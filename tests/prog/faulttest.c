/*
 * faulttest: one rank's side of a fault case (tests/faults.sh).
 *
 *   faulttest PATH MIB STEP [GO]
 *
 * Writes MIB MiB of a known pattern to PATH in 1 MiB pieces, each
 * acknowledged before the call returns (delegate_write_ack=sync, so that
 * "acknowledged" is exact), prints "acknowledged MIB", then waits for a
 * line in the fifo GO (the test has set up its fault; no GO: at once), and
 * runs STEP:
 *   sync     MPI_File_sync
 *   more     MIB MiB more at the end (default hints), then MPI_File_sync
 *   die      1 MiB more with default hints, then SIGKILL to itself
 *   read     read the MIB MiB back and compare (no GO wait)
 * and prints "class=<MPI error class> secs=<time of STEP>", then closes
 * (printing "close class=..."). The test reads these lines; the exit code
 * is 0 whatever STEP gave.
 */
#include <mpi.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define PIECE (1 << 20)

static const char *class_name(int rc)
{
    int c = MPI_SUCCESS;
    if (rc != MPI_SUCCESS)
        MPI_Error_class(rc, &c);
    switch (c) {
    case MPI_SUCCESS: return "MPI_SUCCESS";
    case MPI_ERR_IO: return "MPI_ERR_IO";
    case MPI_ERR_NO_SPACE: return "MPI_ERR_NO_SPACE";
    case MPI_ERR_QUOTA: return "MPI_ERR_QUOTA";
    case MPI_ERR_ACCESS: return "MPI_ERR_ACCESS";
    case MPI_ERR_NO_SUCH_FILE: return "MPI_ERR_NO_SUCH_FILE";
    }
    return "other";
}

static void fill(unsigned char *b, long long off)
{
    for (long i = 0; i < PIECE; i++)
        b[i] = (unsigned char) ((off + i) * 7 / 3 + 1);
}

int main(int argc, char **argv)
{
    MPI_File fh;
    MPI_Info info;
    unsigned char *b = malloc(PIECE), *got = malloc(PIECE);
    int rc = MPI_SUCCESS, mib;
    const char *step;
    char msg[MPI_MAX_ERROR_STRING] = "";
    int len = 0;
    double t0;
    MPI_Init(&argc, &argv);
    if (argc < 4) {
        fprintf(stderr, "usage: faulttest PATH MIB STEP [GO]\n");
        MPI_Abort(MPI_COMM_WORLD, 2);
    }
    mib = atoi(argv[2]);
    step = argv[3];
    MPI_Info_create(&info);
    if (strcmp(step, "read") != 0)
        MPI_Info_set(info, "delegate_write_ack", "sync");
    rc = MPI_File_open(MPI_COMM_SELF, argv[1], MPI_MODE_CREATE | MPI_MODE_RDWR, info, &fh);
    if (rc != MPI_SUCCESS) {
        MPI_Error_string(rc, msg, &len);
        printf("open class=%s msg=%s\n", class_name(rc), msg);
        MPI_Finalize();
        return 0;
    }
    MPI_File_set_errhandler(fh, MPI_ERRORS_RETURN);
    if (strcmp(step, "read") == 0) {
        long bad = 0;
        t0 = MPI_Wtime();
        for (int i = 0; i < mib && rc == MPI_SUCCESS; i++) {
            fill(b, (long long) i * PIECE);
            rc = MPI_File_read_at(fh, (MPI_Offset) i * PIECE, got, PIECE, MPI_BYTE, MPI_STATUS_IGNORE);
            if (rc == MPI_SUCCESS && memcmp(b, got, PIECE) != 0)
                bad++;
        }
        printf("read %d MiB: %ld MiB differ\n", mib, bad);
    } else {
        for (int i = 0; i < mib && rc == MPI_SUCCESS; i++) {
            fill(b, (long long) i * PIECE);
            rc = MPI_File_write_at(fh, (MPI_Offset) i * PIECE, b, PIECE, MPI_BYTE, MPI_STATUS_IGNORE);
        }
        if (rc != MPI_SUCCESS) {
            MPI_Error_string(rc, msg, &len);
            printf("write class=%s msg=%s\n", class_name(rc), msg);
        }
        printf("acknowledged %d\n", mib);
        fflush(stdout);
        if (argc > 4) {         /* the test's signal: a line in a fifo */
            FILE *go = fopen(argv[4], "r");
            if (go != NULL) {
                (void) fgetc(go);
                fclose(go);
            }
        }
        MPI_Info_set(info, "delegate_write_ack", "async");
        MPI_File_set_info(fh, info);
        t0 = MPI_Wtime();
        if (strcmp(step, "more") == 0 || strcmp(step, "die") == 0) {
            int n = strcmp(step, "die") == 0 ? 1 : mib;
            for (int i = 0; i < n && rc == MPI_SUCCESS; i++) {
                fill(b, (long long) (mib + i) * PIECE);
                rc = MPI_File_write_at(fh, (MPI_Offset) (mib + i) * PIECE, b, PIECE, MPI_BYTE,
                                       MPI_STATUS_IGNORE);
            }
            if (strcmp(step, "die") == 0) {
                fflush(stdout);
                raise(SIGKILL);
            }
        }
        if (rc == MPI_SUCCESS)
            rc = MPI_File_sync(fh);
    }
    msg[0] = '\0';
    if (rc != MPI_SUCCESS)
        MPI_Error_string(rc, msg, &len);
    printf("class=%s secs=%.2f msg=%s\n", class_name(rc), MPI_Wtime() - t0, msg);
    fflush(stdout);
    t0 = MPI_Wtime();
    rc = MPI_File_close(&fh);
    msg[0] = '\0';
    if (rc != MPI_SUCCESS)
        MPI_Error_string(rc, msg, &len);
    printf("close class=%s secs=%.2f msg=%s\n", class_name(rc), MPI_Wtime() - t0, msg);
    MPI_Info_free(&info);
    free(b);
    free(got);
    MPI_Finalize();
    return 0;
}
