/*
 * errtest: prints how MPI-IO calls on PATH fail, for tests/integration.sh.
 *
 *   errtest MODE PATH
 *
 * MODE is open-rdonly (open an existing-or-not file read-only), create-excl
 * (exclusive create) or create (create and write). It prints one line:
 *   class=<MPI error class name> secs=<time the call took> msg=<error string>
 * or "class=MPI_SUCCESS".
 */
#include <mpi.h>
#include "mpiclass.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>


int main(int argc, char **argv)
{
    MPI_Init(&argc, &argv);
    if (argc != 3) {
        fprintf(stderr, "usage: errtest MODE PATH\n");
        MPI_Abort(MPI_COMM_WORLD, 2);
    }
    MPI_File_set_errhandler(MPI_FILE_NULL, MPI_ERRORS_RETURN);
    const char *mode = argv[1];
    int amode = MPI_MODE_RDONLY;
    if (!strcmp(mode, "create-excl"))
        amode = MPI_MODE_CREATE | MPI_MODE_EXCL | MPI_MODE_WRONLY;
    else if (!strcmp(mode, "create"))
        amode = MPI_MODE_CREATE | MPI_MODE_WRONLY;
    MPI_File fh;
    double t = MPI_Wtime();
    int rc = MPI_File_open(MPI_COMM_WORLD, argv[2], amode, MPI_INFO_NULL, &fh);
    if (rc == MPI_SUCCESS && amode & MPI_MODE_WRONLY) {
        rc = MPI_File_write_at(fh, 0, "x", 1, MPI_BYTE, MPI_STATUS_IGNORE);
        int rc2 = MPI_File_close(&fh);
        if (rc == MPI_SUCCESS)
            rc = rc2;
    } else if (rc == MPI_SUCCESS) {
        rc = MPI_File_close(&fh);
    }
    t = MPI_Wtime() - t;
    int cls = MPI_SUCCESS, len = 0, rank;
    char msg[MPI_MAX_ERROR_STRING] = "";
    if (rc != MPI_SUCCESS) {
        MPI_Error_class(rc, &cls);
        MPI_Error_string(rc, msg, &len);
        for (char *p = msg; *p; p++)
            if (*p == '\n')
                *p = ' ';
    }
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    /* ERRTEST_ALL_RANKS set: every rank prints its line (which rank a
     * server refuses is a race). */
    if (rank == 0 || getenv("ERRTEST_ALL_RANKS"))
        printf("class=%s secs=%.1f msg=%s\n", mpi_class_name(cls), t, msg);
    MPI_Finalize();
    return 0;
}
