/*
 * Copyright (C) by Argonne National Laboratory
 *     See COPYRIGHT in top-level directory
 */

/* The delegate driver: MPI-IO through delegate servers.
 *
 * Every operation is handed to libdelegate (delegate.h), which ships the
 * description of the I/O (offset/length lists) to the servers and moves the
 * data apart from it. libdelegate is a Go c-shared library: it is loaded with
 * dlopen on the first open or delete (after MPI_Init, see
 * ad_delegate_common.c) and never unloaded, so programs that never open a
 * delegate: file never start a Go runtime.
 *
 * What the driver does not do: data sieving, read-modify-write, byte-range
 * locks and two-phase collective buffering. Strided accesses become one list
 * I/O call per MPI call; collective calls send each rank's own pieces with a
 * collective tag and the servers coalesce them. */

#ifndef AD_DELEGATE_H_INCLUDED
#define AD_DELEGATE_H_INCLUDED

#include "adio.h"
#include "delegate.h"

/* The functions of libdelegate, resolved with dlsym. The __typeof__ of each
 * prototype in delegate.h makes the compiler check every call against the
 * header, exactly as if the library were linked. Valid once
 * ADIOI_DELEGATE_Init succeeded. */
#define ADIOI_DELEGATE_FUNCS(X) \
    X(delegate_api_version)     \
    X(delegate_init)            \
    X(delegate_finalize)        \
    X(delegate_errmsg)          \
    X(delegate_strerror)        \
    X(delegate_open)            \
    X(delegate_close)           \
    X(delegate_write)           \
    X(delegate_read)            \
    X(delegate_iwrite)          \
    X(delegate_iread)           \
    X(delegate_wait_for)        \
    X(delegate_test)            \
    X(delegate_wait)            \
    X(delegate_request_free)    \
    X(delegate_sync)            \
    X(delegate_flush)           \
    X(delegate_get_size)        \
    X(delegate_set_size)        \
    X(delegate_preallocate)     \
    X(delegate_delete)          \
    X(delegate_cork)            \
    X(delegate_uncork)          \
    X(delegate_set_hint)        \
    X(delegate_get_hint)        \
    X(delegate_hint_name)       \
    X(delegate_set_atomic)      \
    X(delegate_counter)         \
    X(delegate_set_log_fd)      \
    X(delegate_fence)           \
    X(delegate_fence_scope)     \
    X(delegate_fence_scope_close) \
    X(delegate_fence_word)

/* *INDENT-OFF* */
#define ADIOI_DELEGATE_FUNC_PTR(name) __typeof__(name) *name;
struct ADIOI_DELEGATE_Lib {
    ADIOI_DELEGATE_FUNCS(ADIOI_DELEGATE_FUNC_PTR)
};
#undef ADIOI_DELEGATE_FUNC_PTR
/* *INDENT-ON* */

extern struct ADIOI_DELEGATE_Lib ADIOI_DLG;

/* A nonblocking operation in flight (ad_delegate_nb.c). */
typedef struct ADIOI_DELEGATE_Req ADIOI_DELEGATE_Req;

/* Per-file state, in fd->fs_ptr from Open to Close. */
typedef struct ADIOI_DELEGATE_File {
    int fh;                     /* libdelegate file handle */
    int64_t coll_group;         /* id of the ranks that opened the file together, made by
                                 * ranklist[0] in OpenColl (never 0 there): tags every
                                 * collective with coll_seq */
    int64_t coll_seq;           /* sequence number of the next collective call on this
                                 * handle: identical on every rank, because collective calls
                                 * on one file are ordered */
    ADIOI_DELEGATE_Req *pending;        /* nonblocking operations not yet completed,
                                         * drained by Close; guarded by the lock in
                                         * ad_delegate_nb.c */
    int shfp_used;              /* this process used the shared file pointer since the
                                 * last reset (ADIOI_DELEGATE_Reset_shared_fp) */
    int async_close_all;        /* every rank of the collective open had
                                 * delegate_async_close=true then (agreed in OpenColl):
                                 * Close sends no end markers */
} ADIOI_DELEGATE_File;

/* The two lists of one request: memory pieces in typemap order and file
 * pieces in view order, each describing the same nbytes bytes. The one-piece
 * case (contiguous memory or file) uses the inline entries, so the common
 * contiguous access allocates nothing. */
typedef struct ADIOI_DELEGATE_Lists {
    delegate_iov *mem;
    int64_t nmem;
    delegate_extent *ext;
    int64_t next;
    int64_t nbytes;             /* bytes described by each list */
    int64_t data_off;           /* view: data offset (bytes of data, holes not counted) of
                                 * the first byte; bytes: absolute offset of the first byte */
    int view;                   /* 1: ext comes from the file view, 0: contiguous bytes */
    delegate_iov mem1;
    delegate_extent ext1;
} ADIOI_DELEGATE_Lists;

/* How the offset argument of a read or write is to be read. */
enum {
    ADIOI_DELEGATE_FILE_BYTES,  /* Contig slots: offset is an absolute byte offset */
    ADIOI_DELEGATE_FILE_VIEW    /* Strided and collective slots: offset counts etypes of
                                 * data in the view */
};

enum {
    ADIOI_DELEGATE_READ,
    ADIOI_DELEGATE_WRITE
};

/* ad_delegate_common.c */
void ADIOI_DELEGATE_Init(int *error_code);
int ADIOI_DELEGATE_err(const char *myname, const char *filename, int line, int code, int handle);
int ADIOI_DELEGATE_Err_msg(int lastcode, const char *myname, int line, int cls,
                           const char *generic, const char *msg);
int ADIOI_DELEGATE_err_remote(const char *myname, const char *filename, int line, int code,
                              int root);
int ADIOI_DELEGATE_Coll_error(MPI_Comm comm, int error_code, const char *myname,
                              const char *filename, int line);
void ADIOI_DELEGATE_Coll_opts(ADIO_File fd, delegate_io_opts * opts);

/* ad_delegate_flatten.c */
int ADIOI_DELEGATE_Build_lists(ADIO_File fd, const void *buf, int count, MPI_Datatype datatype,
                               int file_ptr_type, ADIO_Offset offset, int file_mode,
                               ADIOI_DELEGATE_Lists * l, const char *myname);
ADIO_Offset ADIOI_DELEGATE_Position_after(ADIO_File fd, const ADIOI_DELEGATE_Lists * l,
                                          int64_t nbytes);
void ADIOI_DELEGATE_Free_lists(ADIOI_DELEGATE_Lists * l);

/* ad_delegate_hints.c */
int ADIOI_DELEGATE_Open_hints(ADIO_File fd, delegate_hint ** hints, int *nhints);
void ADIOI_DELEGATE_Free_hints(delegate_hint * hints, int nhints);
void ADIOI_DELEGATE_Install_hints(ADIO_File fd);
int ADIOI_DELEGATE_Hint_err(const char *myname, int line, int code, int handle,
                            const delegate_hint * hints, int nhints);

/* ad_delegate_nb.c */
void ADIOI_DELEGATE_Post(ADIO_File fd, int rw, ADIOI_DELEGATE_Lists * l,
                         const delegate_io_opts * opts, MPI_Request * request, int *error_code);
void ADIOI_DELEGATE_Drain(ADIOI_DELEGATE_File * f);

/* The ADIO slots (ad_delegate.c) */
void ADIOI_DELEGATE_Open(ADIO_File fd, int *error_code);
void ADIOI_DELEGATE_OpenColl(ADIO_File fd, int rank, int access_mode, int *error_code);
void ADIOI_DELEGATE_Close(ADIO_File fd, int *error_code);
void ADIOI_DELEGATE_ReadContig(ADIO_File fd, void *buf, int count, MPI_Datatype datatype,
                               int file_ptr_type, ADIO_Offset offset, ADIO_Status * status,
                               int *error_code);
void ADIOI_DELEGATE_WriteContig(ADIO_File fd, const void *buf, int count, MPI_Datatype datatype,
                                int file_ptr_type, ADIO_Offset offset, ADIO_Status * status,
                                int *error_code);
void ADIOI_DELEGATE_ReadStrided(ADIO_File fd, void *buf, int count, MPI_Datatype datatype,
                                int file_ptr_type, ADIO_Offset offset, ADIO_Status * status,
                                int *error_code);
void ADIOI_DELEGATE_WriteStrided(ADIO_File fd, const void *buf, int count,
                                 MPI_Datatype datatype, int file_ptr_type, ADIO_Offset offset,
                                 ADIO_Status * status, int *error_code);
void ADIOI_DELEGATE_IreadContig(ADIO_File fd, void *buf, int count, MPI_Datatype datatype,
                                int file_ptr_type, ADIO_Offset offset, MPI_Request * request,
                                int *error_code);
void ADIOI_DELEGATE_IwriteContig(ADIO_File fd, const void *buf, int count,
                                 MPI_Datatype datatype, int file_ptr_type, ADIO_Offset offset,
                                 MPI_Request * request, int *error_code);
void ADIOI_DELEGATE_IreadStrided(ADIO_File fd, void *buf, int count, MPI_Datatype datatype,
                                 int file_ptr_type, ADIO_Offset offset, MPI_Request * request,
                                 int *error_code);
void ADIOI_DELEGATE_IwriteStrided(ADIO_File fd, const void *buf, int count,
                                  MPI_Datatype datatype, int file_ptr_type, ADIO_Offset offset,
                                  MPI_Request * request, int *error_code);
void ADIOI_DELEGATE_ReadStridedColl(ADIO_File fd, void *buf, int count, MPI_Datatype datatype,
                                    int file_ptr_type, ADIO_Offset offset, ADIO_Status * status,
                                    int *error_code);
void ADIOI_DELEGATE_WriteStridedColl(ADIO_File fd, const void *buf, int count,
                                     MPI_Datatype datatype, int file_ptr_type,
                                     ADIO_Offset offset, ADIO_Status * status, int *error_code);
void ADIOI_DELEGATE_IreadStridedColl(ADIO_File fd, void *buf, int count, MPI_Datatype datatype,
                                     int file_ptr_type, ADIO_Offset offset,
                                     MPI_Request * request, int *error_code);
void ADIOI_DELEGATE_IwriteStridedColl(ADIO_File fd, const void *buf, int count,
                                      MPI_Datatype datatype, int file_ptr_type,
                                      ADIO_Offset offset, MPI_Request * request, int *error_code);
void ADIOI_DELEGATE_Fcntl(ADIO_File fd, int flag, ADIO_Fcntl_t * fcntl_struct, int *error_code);
void ADIOI_DELEGATE_SetInfo(ADIO_File fd, MPI_Info users_info, int *error_code);
void ADIOI_DELEGATE_Flush(ADIO_File fd, int *error_code);
void ADIOI_DELEGATE_Resize(ADIO_File fd, ADIO_Offset size, int *error_code);
void ADIOI_DELEGATE_Delete(const char *filename, int *error_code);
int ADIOI_DELEGATE_Feature(ADIO_File fd, int flag);
int ADIOI_DELEGATE_SetLock(ADIO_File fd, int cmd, int type, ADIO_Offset offset, int whence,
                           ADIO_Offset len);

/* Called by ADIO_Get_shared_fp and ADIO_Set_shared_fp (the ROMIO patch). */
void ADIOI_DELEGATE_Get_shared_fp(ADIO_File fd, ADIO_Offset incr, ADIO_Offset * shared_fp,
                                  int *error_code);
void ADIOI_DELEGATE_Set_shared_fp(ADIO_File fd, ADIO_Offset offset, int *error_code);
/* Called by every rank from MPI_File_set_view (the ROMIO patch). */
void ADIOI_DELEGATE_Reset_shared_fp(ADIO_File fd, int *error_code);
/* Called by every rank from MPI_File_close in place of its MPI_Barrier (the
 * ROMIO patch). */
void ADIOI_DELEGATE_Close_barrier(ADIO_File fd);

#endif /* AD_DELEGATE_H_INCLUDED */
