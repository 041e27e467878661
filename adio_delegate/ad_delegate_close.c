/*
 * Copyright (C) by Argonne National Laboratory
 *     See COPYRIGHT in top-level directory
 */

#include "ad_delegate.h"

/* Whether this rank's close sends the collective end markers (below):
 * the file is open for writing by more than one rank, and not every rank
 * opened it with delegate_async_close=true (f->async_close_all, agreed at
 * open). */
static int close_sends_markers(ADIO_File fd, ADIOI_DELEGATE_File * f)
{
    int nprocs;

    if (!(fd->access_mode & (ADIO_WRONLY | ADIO_RDWR)) || fd->comm == MPI_COMM_NULL ||
        f->async_close_all)
        return 0;
    MPI_Comm_size(fd->comm, &nprocs);
    return nprocs > 1;
}

/* Waits for the nonblocking operations still in flight, then closes the
 * library handle: delegate_close sends what is corked, waits for every
 * acknowledgement and (unless delegate_async_close is set) for the servers
 * to write the file's data to the backend, so a deferred write error shows
 * up here at the latest. */
void ADIOI_DELEGATE_Close(ADIO_File fd, int *error_code)
{
    static char myname[] = "ADIOI_DELEGATE_CLOSE";
    ADIOI_DELEGATE_File *f = fd->fs_ptr;
    int rc;

    *error_code = MPI_SUCCESS;
    if (f == NULL)
        return;

    ADIOI_DELEGATE_Drain(f);
    /* Close is collective. An empty collective write first: it sends only
     * the collective end markers, which a server answers once every rank's
     * marker arrived, and it serves this rank's close after that. The first
     * close a server handles then finds every rank's data there and writes
     * it out as large ordered runs, instead of flushing one rank's pieces
     * before the others' fill the gaps between them; and no rank waits for a
     * barrier or an acknowledgement here. Not when every rank opened with
     * delegate_async_close=true (f->async_close_all, agreed at open): the
     * servers then write the file once its last handle goes, when every
     * rank's data is there anyway, and the markers only made each rank's
     * close wait for the last rank's (README, Performance). */
    if (close_sends_markers(fd, f)) {
        delegate_io_opts opts;
        ADIOI_DELEGATE_Coll_opts(fd, &opts);
        rc = ADIOI_DLG.delegate_write(f->fh, NULL, 0, NULL, 0, &opts, NULL);
        if (rc != DELEGATE_OK)
            *error_code = ADIOI_DELEGATE_err(myname, fd->filename, __LINE__, rc, f->fh);
    }
    /* the handle is released even when this fails: the message is then
     * kept under DELEGATE_NOHANDLE */
    rc = ADIOI_DLG.delegate_close(f->fh);
    if (rc != DELEGATE_OK && *error_code == MPI_SUCCESS)
        *error_code = ADIOI_DELEGATE_err(myname, fd->filename, __LINE__, rc, DELEGATE_NOHANDLE);

    ADIOI_Free(f);
    fd->fs_ptr = NULL;
    fd->dirty_write = 0;
}

/* MPI_File_close's barrier (ROMIO's, for its shared file pointer file),
 * which comes before the driver's close. When that close sends end markers
 * its fence does not wait on the file's servers
 * (delegate_fence_scope_close): each rank's close is answered only once
 * every rank's markers came, after everything each rank sent those servers
 * before them, so no rank's close returns before every rank's writes there
 * are applied; the fence would only have waited a round trip for them
 * first (README, Performance, fourteenth session). Otherwise (one rank, a
 * read-only handle, delegate_async_close on every rank) the barrier fences
 * as any other message. */
void ADIOI_DELEGATE_Close_barrier(ADIO_File fd)
{
    ADIOI_DELEGATE_File *f = fd->fs_ptr;
    int scoped = f != NULL && close_sends_markers(fd, f);

    if (scoped)
        (void) ADIOI_DLG.delegate_fence_scope_close(f->fh);
    MPI_Barrier(fd->comm);
    if (scoped)
        (void) ADIOI_DLG.delegate_fence_scope(DELEGATE_NOHANDLE);
}
