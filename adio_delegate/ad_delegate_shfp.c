/*
 * Copyright (C) by Argonne National Laboratory
 *     See COPYRIGHT in top-level directory
 */

#include "ad_delegate.h"

/* The shared file pointer is an atomic counter on the server that owns the
 * file's first region: one round trip per access, no hidden file, no locks.
 * Its key is fd->shared_fp_fname, which MPI_File_open makes unique per open
 * (ADIOI_Shfp_fname) and the same on every rank; a new counter starts at 0,
 * and it lives while any process has the file open. As ROMIO keeps it, the
 * value counts etypes relative to the current view. */

static int shared_fp_key(ADIO_File fd, const char *myname, int *error_code)
{
    if (fd->fs_ptr != NULL && fd->shared_fp_fname != NULL)
        return 0;
    *error_code = ADIOI_DELEGATE_Err_msg(MPI_SUCCESS, myname, __LINE__, MPI_ERR_INTERN,
                                         "**intern", "no shared file pointer for this file");
    return -1;
}

/* Returns the shared file pointer in *shared_fp and advances it by incr. */
void ADIOI_DELEGATE_Get_shared_fp(ADIO_File fd, ADIO_Offset incr, ADIO_Offset * shared_fp,
                                  int *error_code)
{
    static char myname[] = "ADIOI_DELEGATE_GET_SHARED_FP";
    ADIOI_DELEGATE_File *f = fd->fs_ptr;
    int64_t old = 0;
    int rc;

    if (shared_fp_key(fd, myname, error_code) != 0)
        return;
    f->shfp_used = 1;
    if (incr == 0)
        rc = ADIOI_DLG.delegate_counter(f->fh, fd->shared_fp_fname, DELEGATE_COUNTER_GET, 0, &old);
    else
        rc = ADIOI_DLG.delegate_counter(f->fh, fd->shared_fp_fname, DELEGATE_COUNTER_FETCH_ADD,
                                        incr, &old);
    if (rc == DELEGATE_OK)
        *shared_fp = old;
    *error_code = ADIOI_DELEGATE_err(myname, fd->filename, __LINE__, rc, f->fh);
}

void ADIOI_DELEGATE_Set_shared_fp(ADIO_File fd, ADIO_Offset offset, int *error_code)
{
    static char myname[] = "ADIOI_DELEGATE_SET_SHARED_FP";
    ADIOI_DELEGATE_File *f = fd->fs_ptr;
    int64_t old;
    int rc;

    if (shared_fp_key(fd, myname, error_code) != 0)
        return;
    f->shfp_used = 1;
    rc = ADIOI_DLG.delegate_counter(f->fh, fd->shared_fp_fname, DELEGATE_COUNTER_SET, offset, &old);
    *error_code = ADIOI_DELEGATE_err(myname, fd->filename, __LINE__, rc, f->fh);
}

/* MPI_File_set_view resets the shared file pointer to zero. It is zero
 * already unless some rank used it since the open or the last reset (a new
 * counter starts at 0), so the ranks agree on that first and only then
 * does rank 0 reset it: in the common case a set_view costs no round trip
 * to a server, which would wait behind this rank's writes still queued
 * there (measured: 3-5 ms per set_view in an IOR-like loop). After a reset
 * the ranks wait for each other (ROMIO's barrier, which set_view skips for
 * delegate files), so the reset comes before any later use; without one
 * the MPI_Allreduce has synchronized them already.
 *
 * The fence MPICH runs before these messages is the full one: it waits for
 * the end markers of the file's last collective write, blocked in the
 * library. Scoped as in the collective's own MPI_Allreduce (tried in the
 * fourteenth session), the wait moved into the next collective, where the
 * ranks spin in MPI while the server works on the same two cores: ior took
 * 61 ms instead of 53 (medians of 15, README, Performance). */
void ADIOI_DELEGATE_Reset_shared_fp(ADIO_File fd, int *error_code)
{
    ADIOI_DELEGATE_File *f = fd->fs_ptr;
    int used = f != NULL && f->shfp_used, any = 0, rank;

    *error_code = MPI_SUCCESS;
    MPI_Allreduce(&used, &any, 1, MPI_INT, MPI_LOR, fd->comm);
    if (any) {
        MPI_Comm_rank(fd->comm, &rank);
        if (rank == 0)
            ADIOI_DELEGATE_Set_shared_fp(fd, 0, error_code);
        MPI_Barrier(fd->comm);
    }
    if (f != NULL)
        f->shfp_used = 0;
}
