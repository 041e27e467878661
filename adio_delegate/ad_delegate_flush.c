/*
 * Copyright (C) by Argonne National Laboratory
 *     See COPYRIGHT in top-level directory
 */

#include "ad_delegate.h"

/* MPI_File_sync: delegate_sync waits for this handle's acknowledgements and
 * has the servers write and fsync the file's buffered data. It is called
 * even when this process wrote nothing since the last sync (dirty_write ==
 * 0), unlike the ADIOI_GEN_Flush shortcut: in sync-barrier-sync the reading
 * process's sync is what drops whatever the library caches for the file, and
 * delegate_sync reports the deferred errors of earlier writes. */
void ADIOI_DELEGATE_Flush(ADIO_File fd, int *error_code)
{
    static char myname[] = "ADIOI_DELEGATE_FLUSH";
    ADIOI_DELEGATE_File *f = fd->fs_ptr;
    int rc;

    rc = ADIOI_DLG.delegate_sync(f->fh);
    if (rc == DELEGATE_OK)
        fd->dirty_write = 0;
    *error_code = ADIOI_DELEGATE_err(myname, fd->filename, __LINE__, rc, f->fh);
}
