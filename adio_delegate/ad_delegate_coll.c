/*
 * Copyright (C) by Argonne National Laboratory
 *     See COPYRIGHT in top-level directory
 */

#include "ad_delegate.h"

/* Collective reads and writes without two-phase I/O: no data moves between
 * ranks. Each rank sends its own pieces straight to the servers, tagged with
 * its rank, the communicator size, the sequence number of the collective on
 * this file handle and the group id made at open (ad_delegate_open.c), so
 * the servers can coalesce the pieces of one call.
 * Every rank takes part even with nothing to transfer (an empty description),
 * or the servers would wait for it. The call ends with one MPI_Allreduce of
 * the error class, so that all ranks fail together.
 *
 * Collective writes do not wait for the servers' acknowledgement. After its
 * pieces, the library sends each server an end marker of the collective; a
 * server answers it only once it holds every rank's marker, and serves a
 * rank's later requests after that. So every rank's data is visible to
 * every rank once the call has returned, as programs that write_all and then
 * read_all without a sync expect, and no rank waits a round trip.
 *
 * The markers also stand in for the visibility fence in the MPI_Allreduce
 * that ends a collective write (delegate_fence_scope): the fence MPICH runs
 * before the Allreduce's messages does not wait for this collective's
 * pieces, which no rank can read before its own marker is answered, and
 * which the rank's next fence outside the collective covers by waiting for
 * its markers. Writes issued before the collective are still waited for. */

static void coll_worker(ADIO_File fd, const void *buf, int count, MPI_Datatype datatype,
                        int file_ptr_type, ADIO_Offset offset, int rw, ADIO_Status * status,
                        int64_t * transferred, int *error_code)
{
    static char myname[] = "ADIOI_DELEGATE_COLL";
    ADIOI_DELEGATE_File *f = fd->fs_ptr;
    ADIOI_DELEGATE_Lists l;
    delegate_io_opts opts;
    int64_t nbytes = 0;
    int rc;

    ADIOI_DELEGATE_Coll_opts(fd, &opts);

    /* a rank that cannot describe its part still sends an empty one */
    *error_code = ADIOI_DELEGATE_Build_lists(fd, buf, count, datatype, file_ptr_type, offset,
                                             ADIOI_DELEGATE_FILE_VIEW, &l, myname);

    if (rw == ADIOI_DELEGATE_WRITE)
        rc = ADIOI_DLG.delegate_write(f->fh, l.mem, l.nmem, l.ext, l.next, &opts, &nbytes);
    else
        rc = ADIOI_DLG.delegate_read(f->fh, l.mem, l.nmem, l.ext, l.next, &opts, &nbytes);
    if (rc != DELEGATE_OK && *error_code == MPI_SUCCESS)
        *error_code = ADIOI_DELEGATE_err(myname, fd->filename, __LINE__, rc, f->fh);

    if (rw == ADIOI_DELEGATE_WRITE)
        fd->dirty_write = 1;
    fd->fp_sys_posn = -1;

    if (rw == ADIOI_DELEGATE_WRITE)
        (void) ADIOI_DLG.delegate_fence_scope(f->fh);
    *error_code = ADIOI_DELEGATE_Coll_error(fd->comm, *error_code, myname, fd->filename, __LINE__);
    if (rw == ADIOI_DELEGATE_WRITE)
        (void) ADIOI_DLG.delegate_fence_scope(DELEGATE_NOHANDLE);
    if (*error_code == MPI_SUCCESS) {
        if (file_ptr_type == ADIO_INDIVIDUAL && l.nbytes > 0)
            fd->fp_ind = ADIOI_DELEGATE_Position_after(fd, &l, nbytes);
#ifdef HAVE_STATUS_SET_BYTES
        if (status != NULL)
            MPIR_Status_set_bytes(status, datatype, nbytes);
#endif
    }
    *transferred = nbytes;
    ADIOI_DELEGATE_Free_lists(&l);
}

void ADIOI_DELEGATE_ReadStridedColl(ADIO_File fd, void *buf, int count, MPI_Datatype datatype,
                                    int file_ptr_type, ADIO_Offset offset, ADIO_Status * status,
                                    int *error_code)
{
    int64_t nbytes;

    coll_worker(fd, buf, count, datatype, file_ptr_type, offset, ADIOI_DELEGATE_READ, status,
                &nbytes, error_code);
}

void ADIOI_DELEGATE_WriteStridedColl(ADIO_File fd, const void *buf, int count,
                                     MPI_Datatype datatype, int file_ptr_type,
                                     ADIO_Offset offset, ADIO_Status * status, int *error_code)
{
    int64_t nbytes;

    coll_worker(fd, buf, count, datatype, file_ptr_type, offset, ADIOI_DELEGATE_WRITE,
                status, &nbytes, error_code);
}

/* The nonblocking collectives run the blocking one and return a completed
 * request. The MPI layer (iread_all.c, iwrite_all.c) passes *error_code to
 * the file's error handler itself, so the request is created with
 * MPI_SUCCESS: created with the error, the handler would run twice. */
static void icoll(ADIO_File fd, const void *buf, int count, MPI_Datatype datatype,
                  int file_ptr_type, ADIO_Offset offset, int rw, MPI_Request * request,
                  int *error_code)
{
    int64_t nbytes = 0;
    int request_error = MPI_SUCCESS;

    coll_worker(fd, buf, count, datatype, file_ptr_type, offset, rw, NULL, &nbytes, error_code);
    if (*error_code != MPI_SUCCESS)
        nbytes = 0;
    MPIO_Completed_request_create(&fd, nbytes, &request_error, request);
}

void ADIOI_DELEGATE_IreadStridedColl(ADIO_File fd, void *buf, int count, MPI_Datatype datatype,
                                     int file_ptr_type, ADIO_Offset offset,
                                     MPI_Request * request, int *error_code)
{
    icoll(fd, buf, count, datatype, file_ptr_type, offset, ADIOI_DELEGATE_READ, request,
          error_code);
}

void ADIOI_DELEGATE_IwriteStridedColl(ADIO_File fd, const void *buf, int count,
                                      MPI_Datatype datatype, int file_ptr_type,
                                      ADIO_Offset offset, MPI_Request * request, int *error_code)
{
    icoll(fd, buf, count, datatype, file_ptr_type, offset, ADIOI_DELEGATE_WRITE,
          request, error_code);
}
