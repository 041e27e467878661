/*
 * Copyright (C) by Argonne National Laboratory
 *     See COPYRIGHT in top-level directory
 */

#include "ad_delegate.h"

int ADIOI_DELEGATE_Feature(ADIO_File fd, int flag)
{
    (void) fd;

    switch (flag) {
        case ADIO_SHARED_FP:   /* a counter on the server (ad_delegate_shfp.c) */
        case ADIO_ATOMIC_MODE: /* the servers order atomic accesses */
        case ADIO_SCALABLE_RESIZE:     /* one process resizes for all */
        case ADIO_UNLINK_AFTER_CLOSE:
            return 1;
        case ADIO_TWO_PHASE:   /* own collectives, no aggregators, no deferred open */
        case ADIO_LOCKS:       /* no byte-range locks: ROMIO must not lock */
        case ADIO_DATA_SIEVING_WRITES: /* never read-modify-write on the client */
        case ADIO_SCALABLE_OPEN:
        default:
            return 0;
    }
}
