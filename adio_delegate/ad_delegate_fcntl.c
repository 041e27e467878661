/*
 * Copyright (C) by Argonne National Laboratory
 *     See COPYRIGHT in top-level directory
 */

#include "ad_delegate.h"

void ADIOI_DELEGATE_Fcntl(ADIO_File fd, int flag, ADIO_Fcntl_t * fcntl_struct, int *error_code)
{
    static char myname[] = "ADIOI_DELEGATE_FCNTL";
    ADIOI_DELEGATE_File *f = fd->fs_ptr;
    int64_t size;
    int rc;

    switch (flag) {
        case ADIO_FCNTL_GET_FSIZE:
            /* the logical size: the backend's plus what the servers buffer */
            rc = ADIOI_DLG.delegate_get_size(f->fh, &size);
            if (rc == DELEGATE_OK)
                fcntl_struct->fsize = size;
            *error_code = ADIOI_DELEGATE_err(myname, fd->filename, __LINE__, rc, f->fh);
            break;

        case ADIO_FCNTL_SET_DISKSPACE:
            /* MPI_File_preallocate calls this on rank 0 only. The servers
             * extend and allocate; nothing is read back and rewritten, as
             * ADIOI_GEN_Prealloc would */
            rc = ADIOI_DLG.delegate_preallocate(f->fh, fcntl_struct->diskspace);
            if (rc == DELEGATE_OK)
                fd->dirty_write = 1;
            *error_code = ADIOI_DELEGATE_err(myname, fd->filename, __LINE__, rc, f->fh);
            break;

        case ADIO_FCNTL_SET_ATOMICITY:
            /* served by the servers ordering atomic accesses, not by locks;
             * get_atomicity reads fd->atomicity */
            rc = ADIOI_DLG.delegate_set_atomic(f->fh, fcntl_struct->atomicity ? 1 : 0);
            if (rc == DELEGATE_OK)
                fd->atomicity = fcntl_struct->atomicity ? 1 : 0;
            *error_code = ADIOI_DELEGATE_err(myname, fd->filename, __LINE__, rc, f->fh);
            break;

        default:
            *error_code = MPIO_Err_create_code(MPI_SUCCESS, MPIR_ERR_RECOVERABLE, myname,
                                               __LINE__, MPI_ERR_ARG, "**flag", "**flag %d", flag);
            break;
    }
}
