/*
 * Copyright (C) by Argonne National Laboratory
 *     See COPYRIGHT in top-level directory
 */

#include "ad_delegate.h"

/* Independent reads and writes, contiguous or strided, blocking or not:
 * eight thin entry points over one worker. Every request becomes one
 * delegate_read/delegate_write (or iread/iwrite) call with one memory list
 * and one file list: no data sieving, no read-modify-write, no locks. */

static void io_worker(ADIO_File fd, const void *buf, int count, MPI_Datatype datatype,
                      int file_ptr_type, ADIO_Offset offset, int file_mode, int rw,
                      ADIO_Status * status, MPI_Request * request, int *error_code)
{
    static char myname[] = "ADIOI_DELEGATE_IO";
    ADIOI_DELEGATE_File *f = fd->fs_ptr;
    ADIOI_DELEGATE_Lists l;
    delegate_io_opts opts;
    int64_t nbytes = 0;
    int rc;

    *error_code = ADIOI_DELEGATE_Build_lists(fd, buf, count, datatype, file_ptr_type, offset,
                                             file_mode, &l, myname);
    if (*error_code != MPI_SUCCESS || l.nbytes == 0) {
        if (request != NULL) {
            /* mpi-io/iread.c and iwrite.c neither report this error nor
             * expect *request to be unset */
            MPIO_Completed_request_create(&fd, 0, error_code, request);
        }
#ifdef HAVE_STATUS_SET_BYTES
        else if (*error_code == MPI_SUCCESS && status != NULL)
            MPIR_Status_set_bytes(status, datatype, 0);
#endif
        return;
    }

    memset(&opts, 0, sizeof(opts));
    /* in atomic mode a write is visible to the other processes when the
     * call returns, so it waits for the servers' acknowledgement */
    if (rw == ADIOI_DELEGATE_WRITE && fd->atomicity)
        opts.flags |= DELEGATE_IO_ACK;

    if (request != NULL) {
        ADIOI_DELEGATE_Post(fd, rw, &l, &opts, request, error_code);
        if (*error_code == MPI_SUCCESS && file_ptr_type == ADIO_INDIVIDUAL)
            fd->fp_ind = ADIOI_DELEGATE_Position_after(fd, &l, l.nbytes);
    } else {
        if (rw == ADIOI_DELEGATE_WRITE)
            rc = ADIOI_DLG.delegate_write(f->fh, l.mem, l.nmem, l.ext, l.next, &opts, &nbytes);
        else
            rc = ADIOI_DLG.delegate_read(f->fh, l.mem, l.nmem, l.ext, l.next, &opts, &nbytes);
        if (rc != DELEGATE_OK)
            *error_code = ADIOI_DELEGATE_err(myname, fd->filename, __LINE__, rc, f->fh);
        else {
            if (file_ptr_type == ADIO_INDIVIDUAL)
                fd->fp_ind = ADIOI_DELEGATE_Position_after(fd, &l, nbytes);
#ifdef HAVE_STATUS_SET_BYTES
            if (status != NULL)
                MPIR_Status_set_bytes(status, datatype, nbytes);
#endif
        }
    }
    if (rw == ADIOI_DELEGATE_WRITE)
        fd->dirty_write = 1;
    fd->fp_sys_posn = -1;       /* no POSIX file offset to track */
    ADIOI_DELEGATE_Free_lists(&l);
}

void ADIOI_DELEGATE_ReadContig(ADIO_File fd, void *buf, int count, MPI_Datatype datatype,
                               int file_ptr_type, ADIO_Offset offset, ADIO_Status * status,
                               int *error_code)
{
    io_worker(fd, buf, count, datatype, file_ptr_type, offset, ADIOI_DELEGATE_FILE_BYTES,
              ADIOI_DELEGATE_READ, status, NULL, error_code);
}

void ADIOI_DELEGATE_WriteContig(ADIO_File fd, const void *buf, int count, MPI_Datatype datatype,
                                int file_ptr_type, ADIO_Offset offset, ADIO_Status * status,
                                int *error_code)
{
    io_worker(fd, buf, count, datatype, file_ptr_type, offset,
              ADIOI_DELEGATE_FILE_BYTES, ADIOI_DELEGATE_WRITE, status, NULL, error_code);
}

void ADIOI_DELEGATE_ReadStrided(ADIO_File fd, void *buf, int count, MPI_Datatype datatype,
                                int file_ptr_type, ADIO_Offset offset, ADIO_Status * status,
                                int *error_code)
{
    io_worker(fd, buf, count, datatype, file_ptr_type, offset, ADIOI_DELEGATE_FILE_VIEW,
              ADIOI_DELEGATE_READ, status, NULL, error_code);
}

void ADIOI_DELEGATE_WriteStrided(ADIO_File fd, const void *buf, int count,
                                 MPI_Datatype datatype, int file_ptr_type, ADIO_Offset offset,
                                 ADIO_Status * status, int *error_code)
{
    io_worker(fd, buf, count, datatype, file_ptr_type, offset,
              ADIOI_DELEGATE_FILE_VIEW, ADIOI_DELEGATE_WRITE, status, NULL, error_code);
}

void ADIOI_DELEGATE_IreadContig(ADIO_File fd, void *buf, int count, MPI_Datatype datatype,
                                int file_ptr_type, ADIO_Offset offset, MPI_Request * request,
                                int *error_code)
{
    io_worker(fd, buf, count, datatype, file_ptr_type, offset, ADIOI_DELEGATE_FILE_BYTES,
              ADIOI_DELEGATE_READ, NULL, request, error_code);
}

void ADIOI_DELEGATE_IwriteContig(ADIO_File fd, const void *buf, int count,
                                 MPI_Datatype datatype, int file_ptr_type, ADIO_Offset offset,
                                 MPI_Request * request, int *error_code)
{
    io_worker(fd, buf, count, datatype, file_ptr_type, offset,
              ADIOI_DELEGATE_FILE_BYTES, ADIOI_DELEGATE_WRITE, NULL, request, error_code);
}

void ADIOI_DELEGATE_IreadStrided(ADIO_File fd, void *buf, int count, MPI_Datatype datatype,
                                 int file_ptr_type, ADIO_Offset offset, MPI_Request * request,
                                 int *error_code)
{
    io_worker(fd, buf, count, datatype, file_ptr_type, offset, ADIOI_DELEGATE_FILE_VIEW,
              ADIOI_DELEGATE_READ, NULL, request, error_code);
}

void ADIOI_DELEGATE_IwriteStrided(ADIO_File fd, const void *buf, int count,
                                  MPI_Datatype datatype, int file_ptr_type, ADIO_Offset offset,
                                  MPI_Request * request, int *error_code)
{
    io_worker(fd, buf, count, datatype, file_ptr_type, offset,
              ADIOI_DELEGATE_FILE_VIEW, ADIOI_DELEGATE_WRITE, NULL, request, error_code);
}
