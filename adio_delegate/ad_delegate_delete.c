/*
 * Copyright (C) by Argonne National Laboratory
 *     See COPYRIGHT in top-level directory
 */

#include "ad_delegate.h"

/* MPI_File_delete (one process, possibly before any open) and
 * MPI_MODE_DELETE_ON_CLOSE (ranklist[0] after everyone closed). The servers
 * drop what they buffer for the file. */
void ADIOI_DELEGATE_Delete(const char *filename, int *error_code)
{
    static char myname[] = "ADIOI_DELEGATE_DELETE";
    int rc;

    ADIOI_DELEGATE_Init(error_code);
    if (*error_code != MPI_SUCCESS)
        return;
    rc = ADIOI_DLG.delegate_delete(filename);
    *error_code = ADIOI_DELEGATE_err(myname, filename, __LINE__, rc, DELEGATE_NOHANDLE);
}
