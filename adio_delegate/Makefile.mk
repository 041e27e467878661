##
## Copyright (C) by Argonne National Laboratory
##     See COPYRIGHT in top-level directory
##
## The delegate driver: MPI-IO through delegate servers. libdelegate is
## loaded with dlopen on first use (ad_delegate_common.c), so nothing here
## links against it.

if BUILD_AD_DELEGATE

noinst_HEADERS += adio/ad_delegate/ad_delegate.h adio/ad_delegate/delegate.h

romio_other_sources +=                          \
    adio/ad_delegate/ad_delegate.c              \
    adio/ad_delegate/ad_delegate_close.c        \
    adio/ad_delegate/ad_delegate_coll.c         \
    adio/ad_delegate/ad_delegate_common.c       \
    adio/ad_delegate/ad_delegate_delete.c       \
    adio/ad_delegate/ad_delegate_fcntl.c        \
    adio/ad_delegate/ad_delegate_features.c     \
    adio/ad_delegate/ad_delegate_flatten.c      \
    adio/ad_delegate/ad_delegate_flush.c        \
    adio/ad_delegate/ad_delegate_hints.c        \
    adio/ad_delegate/ad_delegate_io.c           \
    adio/ad_delegate/ad_delegate_lock.c         \
    adio/ad_delegate/ad_delegate_nb.c           \
    adio/ad_delegate/ad_delegate_open.c         \
    adio/ad_delegate/ad_delegate_resize.c       \
    adio/ad_delegate/ad_delegate_shfp.c

endif BUILD_AD_DELEGATE
