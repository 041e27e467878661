/* mpiclass.h: the name of an MPI error class, for the test programs that
 * print how a call failed (errtest, faulttest, restarttest), and check(),
 * for those that stop at the first failure (bench, iotest, netbench,
 * stripetest). */
#ifndef MPICLASS_H
#define MPICLASS_H
#include <mpi.h>
#include <stdio.h>

static inline const char *mpi_class_name(int c)
{
    switch (c) {
    case MPI_SUCCESS: return "MPI_SUCCESS";
    case MPI_ERR_IO: return "MPI_ERR_IO";
    case MPI_ERR_ACCESS: return "MPI_ERR_ACCESS";
    case MPI_ERR_NO_SUCH_FILE: return "MPI_ERR_NO_SUCH_FILE";
    case MPI_ERR_FILE_EXISTS: return "MPI_ERR_FILE_EXISTS";
    case MPI_ERR_BAD_FILE: return "MPI_ERR_BAD_FILE";
    case MPI_ERR_FILE: return "MPI_ERR_FILE";
    case MPI_ERR_READ_ONLY: return "MPI_ERR_READ_ONLY";
    case MPI_ERR_NO_SPACE: return "MPI_ERR_NO_SPACE";
    case MPI_ERR_QUOTA: return "MPI_ERR_QUOTA";
    case MPI_ERR_ARG: return "MPI_ERR_ARG";
    case MPI_ERR_INFO_VALUE: return "MPI_ERR_INFO_VALUE";
    case MPI_ERR_UNSUPPORTED_OPERATION: return "MPI_ERR_UNSUPPORTED_OPERATION";
    case MPI_ERR_OTHER: return "MPI_ERR_OTHER";
    }
    return "other";
}

/* check aborts the job, naming the rank, the call and MPI's message, when
 * rc is not MPI_SUCCESS. */
static inline void check(int rc, const char *what)
{
    if (rc != MPI_SUCCESS) {
        char msg[MPI_MAX_ERROR_STRING];
        int len, r = -1;
        MPI_Comm_rank(MPI_COMM_WORLD, &r);
        MPI_Error_string(rc, msg, &len);
        fprintf(stderr, "rank %d: %s: %s\n", r, what, msg);
        MPI_Abort(MPI_COMM_WORLD, 1);
    }
}
#endif
