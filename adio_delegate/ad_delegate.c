/*
 * Copyright (C) by Argonne National Laboratory
 *     See COPYRIGHT in top-level directory
 */

#include "ad_delegate.h"

/* adioi.h has the ADIOI_Fns_struct define */
#include "adioi.h"

/* Designated initializers: a slot missing from a positional table shifts
 * every slot after it without a word from the compiler. No generic slot
 * that touches fd->fd_sys is used (fd_sys is -1 for delegate files). */
struct ADIOI_Fns_struct ADIO_DELEGATE_operations = {
    .ADIOI_xxx_Open = ADIOI_DELEGATE_Open,      /* this process only */
    .ADIOI_xxx_OpenColl = ADIOI_DELEGATE_OpenColl,      /* ranklist[0] first, bcast code + group */
    .ADIOI_xxx_ReadContig = ADIOI_DELEGATE_ReadContig,  /* one list read */
    .ADIOI_xxx_WriteContig = ADIOI_DELEGATE_WriteContig,        /* one list write */
    .ADIOI_xxx_ReadStridedColl = ADIOI_DELEGATE_ReadStridedColl,        /* no two-phase */
    .ADIOI_xxx_WriteStridedColl = ADIOI_DELEGATE_WriteStridedColl,      /* no two-phase */
    .ADIOI_xxx_SeekIndividual = ADIOI_GEN_SeekIndividual,       /* arithmetic only */
    .ADIOI_xxx_Fcntl = ADIOI_DELEGATE_Fcntl,    /* size, preallocate, atomicity */
    .ADIOI_xxx_SetInfo = ADIOI_DELEGATE_SetInfo,        /* GEN plus delegate_* hints */
    .ADIOI_xxx_ReadStrided = ADIOI_DELEGATE_ReadStrided,        /* one list read */
    .ADIOI_xxx_WriteStrided = ADIOI_DELEGATE_WriteStrided,      /* one list write, no sieving */
    .ADIOI_xxx_Close = ADIOI_DELEGATE_Close,    /* drain requests, delegate_close */
    .ADIOI_xxx_IreadContig = ADIOI_DELEGATE_IreadContig,        /* generalized request */
    .ADIOI_xxx_IwriteContig = ADIOI_DELEGATE_IwriteContig,      /* generalized request */
    .ADIOI_xxx_ReadDone = ADIOI_FAKE_IODone,    /* dead with HAVE_MPI_GREQUEST */
    .ADIOI_xxx_WriteDone = ADIOI_FAKE_IODone,   /* dead with HAVE_MPI_GREQUEST */
    .ADIOI_xxx_ReadComplete = ADIOI_FAKE_IOComplete,    /* dead with HAVE_MPI_GREQUEST */
    .ADIOI_xxx_WriteComplete = ADIOI_FAKE_IOComplete,   /* dead with HAVE_MPI_GREQUEST */
    .ADIOI_xxx_IreadStrided = ADIOI_DELEGATE_IreadStrided,      /* generalized request */
    .ADIOI_xxx_IwriteStrided = ADIOI_DELEGATE_IwriteStrided,    /* generalized request */
    .ADIOI_xxx_Flush = ADIOI_DELEGATE_Flush,    /* delegate_sync, always */
    .ADIOI_xxx_Resize = ADIOI_DELEGATE_Resize,  /* ranklist[0] resizes, bcast code */
    .ADIOI_xxx_Delete = ADIOI_DELEGATE_Delete,  /* initializes the library if needed */
    .ADIOI_xxx_Feature = ADIOI_DELEGATE_Feature,        /* no two-phase, no locks */
    .fsname = "DELEGATE: I/O delegation servers",
    .ADIOI_xxx_IreadStridedColl = ADIOI_DELEGATE_IreadStridedColl,      /* blocking + done req */
    .ADIOI_xxx_IwriteStridedColl = ADIOI_DELEGATE_IwriteStridedColl,    /* blocking + done req */
    .ADIOI_xxx_SetLock = ADIOI_DELEGATE_SetLock,        /* no locks: returns an error */
};
