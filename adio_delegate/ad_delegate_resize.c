/*
 * Copyright (C) by Argonne National Laboratory
 *     See COPYRIGHT in top-level directory
 */

#include "ad_delegate.h"

/* MPI_File_set_size, collective; size is the same on every rank. One
 * process resizes for all (delegate_set_size acts on every server) and
 * broadcasts the delegate code; every rank builds its own error from it.
 *
 * NB: writes return before the servers have them. A write another rank
 * issued before set_size, still on its way, could land after a truncate and
 * extend the file again; so every rank that wrote since its last
 * MPI_File_sync first waits until the servers acknowledged its writes
 * (delegate_flush: nothing is forced to the backend), and the resize starts
 * once all ranks are done. */
void ADIOI_DELEGATE_Resize(ADIO_File fd, ADIO_Offset size, int *error_code)
{
    static char myname[] = "ADIOI_DELEGATE_RESIZE";
    ADIOI_DELEGATE_File *f = fd->fs_ptr;
    int rank, root = fd->hints->ranklist[0], code = DELEGATE_OK, flush_code = DELEGATE_OK;
    int flush_error = MPI_SUCCESS, ignored;

    MPI_Comm_rank(fd->comm, &rank);

    /* dirty_write stays set: the data is acknowledged, not yet durable, and
     * Flush (MPI_File_sync) is what clears it */
    if (fd->dirty_write) {
        flush_code = ADIOI_DLG.delegate_flush(f->fh);
        if (flush_code != DELEGATE_OK)
            flush_error = ADIOI_DELEGATE_err(myname, fd->filename, __LINE__, flush_code, f->fh);
    }
    /* a barrier that also tells ranklist[0] nothing is in flight */
    MPI_Allreduce(&flush_code, &ignored, 1, MPI_INT, MPI_MAX, fd->comm);

    if (rank == root) {
        code = ADIOI_DLG.delegate_set_size(f->fh, size);
        *error_code = ADIOI_DELEGATE_err(myname, fd->filename, __LINE__, code, f->fh);
    }
    MPI_Bcast(&code, 1, MPI_INT, root, fd->comm);
    if (rank != root)
        *error_code = ADIOI_DELEGATE_err_remote(myname, fd->filename, __LINE__, code, root);

    /* the resize is everyone's result; a failed flush is this rank's own */
    if (*error_code == MPI_SUCCESS)
        *error_code = flush_error;
}
