/*
 * Copyright (C) by Argonne National Laboratory
 *     See COPYRIGHT in top-level directory
 */

#include "ad_delegate.h"

/* delegate has no byte-range locks: atomic mode is served by the servers
 * ordering atomic accesses (delegate_set_atomic). With ADIO_LOCKS = 0 and
 * the driver's own Strided routines, ROMIO locks only around the
 * contiguous *_shared calls in atomic mode (mpi-io/read_sh.c, write_sh.c,
 * iread_sh.c, iwrite_sh.c lock unless the file system is NFS), and the lock
 * macros ignore the result. So this must have no effect at all: it neither
 * locks nor aborts (ADIOI_GEN_SetLock calls MPI_Abort on failure); it
 * returns an error for any caller that looks. */
int ADIOI_DELEGATE_SetLock(ADIO_File fd, int cmd, int type, ADIO_Offset offset, int whence,
                           ADIO_Offset len)
{
    static char myname[] = "ADIOI_DELEGATE_SETLOCK";

    (void) fd;
    (void) cmd;
    (void) type;
    (void) offset;
    (void) whence;
    (void) len;
    return ADIOI_DELEGATE_Err_msg(MPI_SUCCESS, myname, __LINE__, MPI_ERR_UNSUPPORTED_OPERATION,
                                  "**fileopunsupported", "byte-range locks are not supported");
}
