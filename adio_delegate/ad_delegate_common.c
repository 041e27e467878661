/*
 * Copyright (C) by Argonne National Laboratory
 *     See COPYRIGHT in top-level directory
 */

#include "ad_delegate.h"

#include <dlfcn.h>
#include <stdlib.h>
#include <string.h>

#ifndef ROMIO_DELEGATE_LIBRARY
#define ROMIO_DELEGATE_LIBRARY "libdelegate.so.0"
#endif

/* Longest library message carried into an MPI error; MPICH keeps 256
 * characters of each error-stack line anyway. */
#define ADIOI_DELEGATE_MSG_LEN 512

struct ADIOI_DELEGATE_Lib ADIOI_DLG;

/* NB: libdelegate starts a Go runtime when it is loaded. It is loaded here,
 * from the first Open or Delete, that is after MPI_Init: loaded earlier, the
 * SIGPIPE handler that ch3:nemesis installs in MPI_Init (without SA_ONSTACK)
 * turns a write to a dead server into an abort of the rank. It is never
 * unloaded: a Go runtime cannot be unloaded from a process. */
static void *lib_handle;
static int lib_loaded;          /* ADIOI_DLG is filled and the API version checked */
static int lib_initialized;     /* delegate_init succeeded, finalize is registered */
static int finalize_keyval = MPI_KEYVAL_INVALID;

/* The visibility fence (delegate.h, delegate_fence): the patched MPICH calls
 * it before any message leaves this process, when libdelegate's word says a
 * write may be unacknowledged (mpir_ext.h, MPIR_EXT_IO_FENCE). So a write
 * that returned before a barrier, a send or any collective is seen by every
 * read issued after it, with default hints. A failed write is reported by
 * the next call on its file, not here: a send cannot fail for it. */
static void fence_cb(void)
{
    (void) ADIOI_DLG.delegate_fence();
}

static void fence_register(int on)
{
#ifdef ROMIO_INSIDE_MPICH
    const char *env = getenv("DELEGATE_FENCE");
    /* DELEGATE_FENCE=0 is for measuring what the fence costs (and for the
     * test that shows stale reads without it), never for production */
    if (on && env != NULL && strcmp(env, "0") == 0)
        return;
    if (on)
        MPIR_Ext_io_fence_register(fence_cb, ADIOI_DLG.delegate_fence_word());
    else
        MPIR_Ext_io_fence_register(NULL, NULL);
#else
    (void) on;
#endif
}

/* Runs inside MPI_Finalize, when MPI_COMM_SELF loses its attributes. */
static int finalize_cb(MPI_Comm comm, int keyval, void *attribute_val, void *extra_state)
{
    int rc;

    (void) comm;
    (void) attribute_val;
    (void) extra_state;

    rc = ADIOI_DLG.delegate_finalize();
    fence_register(0);
    lib_initialized = 0;
    MPI_Comm_free_keyval(&keyval);
    finalize_keyval = MPI_KEYVAL_INVALID;
    /* files still open at MPI_Finalize were closed (and flushed) by
     * delegate_finalize: a failure here is a lost write, so say it */
    return ADIOI_DELEGATE_err("ADIOI_DELEGATE_FINALIZE", NULL, __LINE__, rc, DELEGATE_NOHANDLE);
}

static void *resolve(const char *name, int *error_code)
{
    static char myname[] = "ADIOI_DELEGATE_INIT";
    char msg[128];
    void *sym;

    sym = dlsym(lib_handle, name);
    if (sym == NULL) {
        MPL_snprintf(msg, sizeof(msg), "libdelegate has no %s (library too old?)", name);
        *error_code = ADIOI_DELEGATE_Err_msg(MPI_SUCCESS, myname, __LINE__, MPI_ERR_IO, NULL, msg);
    }
    return sym;
}

/* Loads the library and resolves every function of delegate.h. A failure
 * is not remembered: the next open tries again. */
static int load_library(int *error_code)
{
    static char myname[] = "ADIOI_DELEGATE_INIT";
    struct ADIOI_DELEGATE_Lib lib;
    const char *path;
    const char *dlerr;
    char msg[ADIOI_DELEGATE_MSG_LEN];
    void *sym;
    int version;

    path = getenv("DELEGATE_LIBRARY");
    if (path == NULL || path[0] == '\0')
        path = ROMIO_DELEGATE_LIBRARY;

    if (lib_handle == NULL) {
        lib_handle = dlopen(path, RTLD_NOW | RTLD_LOCAL);
        if (lib_handle == NULL) {
            dlerr = dlerror();
            MPL_snprintf(msg, sizeof(msg), "cannot load libdelegate: %s (DELEGATE_LIBRARY "
                         "may name the library's path)", dlerr ? dlerr : path);
            *error_code = ADIOI_DELEGATE_Err_msg(MPI_SUCCESS, myname, __LINE__, MPI_ERR_IO, NULL,
                                                 msg);
            return -1;
        }
    }

    /* *INDENT-OFF* */
#define ADIOI_DELEGATE_RESOLVE(name)                    \
    if ((sym = resolve(#name, error_code)) == NULL)     \
        return -1;                                      \
    lib.name = (__typeof__(lib.name)) sym;
    ADIOI_DELEGATE_FUNCS(ADIOI_DELEGATE_RESOLVE)
#undef ADIOI_DELEGATE_RESOLVE
    /* *INDENT-ON* */

    version = lib.delegate_api_version();
    if (version != DELEGATE_API_VERSION) {
        MPL_snprintf(msg, sizeof(msg), "libdelegate has API version %d, the driver needs %d",
                     version, DELEGATE_API_VERSION);
        *error_code = ADIOI_DELEGATE_Err_msg(MPI_SUCCESS, myname, __LINE__, MPI_ERR_IO, NULL, msg);
        return -1;
    }
    ADIOI_DLG = lib;
    lib_loaded = 1;
    return 0;
}

/* Lazy and idempotent: loads libdelegate, calls delegate_init (which reads
 * the DELEGATE_* environment and connects to the servers) and registers
 * delegate_finalize to run in MPI_Finalize. Called from Open and Delete
 * only, under ROMIO's critical section. */
void ADIOI_DELEGATE_Init(int *error_code)
{
    static char myname[] = "ADIOI_DELEGATE_INIT";
    int rc;

    *error_code = MPI_SUCCESS;
    if (lib_initialized)
        return;

    if (!lib_loaded && load_library(error_code) != 0)
        return;

    rc = ADIOI_DLG.delegate_init();
    if (rc != DELEGATE_OK) {
        *error_code = ADIOI_DELEGATE_err(myname, NULL, __LINE__, rc, DELEGATE_NOHANDLE);
        return;
    }

    /* MPI_COMM_SELF is the first communicator freed by MPI_Finalize: its
     * attributes are deleted while MPI is still fully usable */
    MPI_Comm_create_keyval(MPI_COMM_NULL_COPY_FN, finalize_cb, &finalize_keyval, NULL);
    MPI_Comm_set_attr(MPI_COMM_SELF, finalize_keyval, NULL);
    fence_register(1);
    lib_initialized = 1;
}

/* The MPI error class of each delegate code, and the generic message that
 * goes with it (keys of MPICH's errnames.txt). */
static int err_class(int code, const char **generic)
{
    switch (code) {
        case DELEGATE_EACCES:
        case DELEGATE_EPATH:
            *generic = "**fileaccess";
            return MPI_ERR_ACCESS;
        case DELEGATE_ENOENT:
            *generic = "**filenoexist";
            return MPI_ERR_NO_SUCH_FILE;
        case DELEGATE_EEXIST:
            *generic = "**fileexist";
            return MPI_ERR_FILE_EXISTS;
        case DELEGATE_ENOSPC:
            *generic = "**filenospace";
            return MPI_ERR_NO_SPACE;
        case DELEGATE_EDQUOT:
            *generic = "**filequota";
            return MPI_ERR_QUOTA;
        case DELEGATE_EROFS:
            *generic = "**filerdonly";
            return MPI_ERR_READ_ONLY;
        case DELEGATE_EISDIR:
        case DELEGATE_ENOTDIR:
        case DELEGATE_ENAMETOOLONG:
        case DELEGATE_ELOOP:
            *generic = "**filename";
            return MPI_ERR_BAD_FILE;
        case DELEGATE_EINVAL:
            *generic = "**arg";
            return MPI_ERR_ARG;
        case DELEGATE_EHINT:
            *generic = "**infoval";
            return MPI_ERR_INFO_VALUE;
        case DELEGATE_EHINTKEY:
            *generic = "**infokey";
            return MPI_ERR_INFO_KEY;
        case DELEGATE_EBUSY:
            *generic = "**fileinuse";
            return MPI_ERR_FILE_IN_USE;
        case DELEGATE_ENOSYS:
            *generic = "**fileopunsupported";
            return MPI_ERR_UNSUPPORTED_OPERATION;
        case DELEGATE_ENOMEM:
            *generic = "**nomem";
            return MPI_ERR_NO_MEM;
        default:
            /* EUNREACHABLE, ECONNLOST, EPROTO, ETIMEDOUT, EIO, ENOTOWNER, ... */
            *generic = "**io";
            return MPI_ERR_IO;
    }
}

/* The generic message of an MPI error class, for errors that only know the
 * class (ADIOI_DELEGATE_Coll_error). */
static const char *class_generic(int cls)
{
    switch (cls) {
        case MPI_ERR_ACCESS:
            return "**fileaccess";
        case MPI_ERR_NO_SUCH_FILE:
            return "**filenoexist";
        case MPI_ERR_FILE_EXISTS:
            return "**fileexist";
        case MPI_ERR_NO_SPACE:
            return "**filenospace";
        case MPI_ERR_QUOTA:
            return "**filequota";
        case MPI_ERR_READ_ONLY:
            return "**filerdonly";
        case MPI_ERR_BAD_FILE:
            return "**filename";
        case MPI_ERR_ARG:
            return "**arg";
        case MPI_ERR_UNSUPPORTED_OPERATION:
            return "**fileopunsupported";
        case MPI_ERR_NO_MEM:
            return "**nomem";
        case MPI_ERR_INFO_VALUE:
            return "**infoval";
        case MPI_ERR_INFO_KEY:
            return "**infokey";
        case MPI_ERR_IO:
            return "**io";
        default:
            return "**io";
    }
}

/* Creates an MPI error code of class cls that carries msg. MPICH 4.0.2
 * compiles in only the specific messages its own sources use, and the only
 * key that carries free text under any class is ROMIO's "**io %s", which
 * prints as "Other I/O error %s": a missing file read "File does not exist,
 * error stack: ...: Other I/O error open /x: no such file". A specific
 * format that is not in MPICH's table is used as the format itself
 * (MPIR_Err_create_code_valist in src/mpi/errhan/errutil.c), so "%s" puts
 * the library's message on the stack as it is, under the class's own
 * generic message ("File does not exist, error stack: ...: open /x: no
 * such file or directory (delegate server ...)"). Argument errors keep
 * "**arg %s" ("Invalid argument ..."), which is true of them. */
#define ADIOI_DELEGATE_VERBATIM "%s"

int ADIOI_DELEGATE_Err_msg(int lastcode, const char *myname, int line, int cls,
                           const char *generic, const char *msg)
{
    if (generic == NULL)
        generic = class_generic(cls);
    if (cls == MPI_ERR_ARG)
        return MPIO_Err_create_code(lastcode, MPIR_ERR_RECOVERABLE, myname, line, cls, generic,
                                    "**arg %s", msg);
    return MPIO_Err_create_code(lastcode, MPIR_ERR_RECOVERABLE, myname, line, cls, generic,
                                ADIOI_DELEGATE_VERBATIM, msg);
}

/* Maps a delegate code to an MPI error code. The specific message is the
 * library's own (from delegate_errmsg on handle: it names the operation, the
 * file and the server), or else the code's name and the file name. A
 * negative handle means the library has no message for this failure. */
int ADIOI_DELEGATE_err(const char *myname, const char *filename, int line, int code, int handle)
{
    char msg[ADIOI_DELEGATE_MSG_LEN];
    const char *generic;
    int cls, rc = DELEGATE_EBADF;

    if (code == DELEGATE_OK)
        return MPI_SUCCESS;

    cls = err_class(code, &generic);
    msg[0] = '\0';
    if (lib_loaded && handle >= 0)
        rc = ADIOI_DLG.delegate_errmsg(handle, msg, sizeof(msg));
    if ((rc != DELEGATE_OK && rc != DELEGATE_ERANGE) || msg[0] == '\0')
        MPL_snprintf(msg, sizeof(msg), "%s%s%s", filename ? filename : "",
                     filename ? ": " : "",
                     lib_loaded ? ADIOI_DLG.delegate_strerror(code) : "delegate error");
    return ADIOI_DELEGATE_Err_msg(MPI_SUCCESS, myname, line, cls, generic, msg);
}

/* Builds, on a rank that did not run the failed call, the error of a call
 * that failed with code on rank root (collective open and resize broadcast
 * the delegate code, never an MPI code: MPI codes do not travel between
 * processes). */
int ADIOI_DELEGATE_err_remote(const char *myname, const char *filename, int line, int code,
                              int root)
{
    char msg[ADIOI_DELEGATE_MSG_LEN];
    const char *generic;
    int cls;

    if (code == DELEGATE_OK)
        return MPI_SUCCESS;
    cls = err_class(code, &generic);
    MPL_snprintf(msg, sizeof(msg), "%s%s%s (on rank %d)", filename ? filename : "",
                 filename ? ": " : "",
                 lib_loaded ? ADIOI_DLG.delegate_strerror(code) : "delegate error", root);
    return ADIOI_DELEGATE_Err_msg(MPI_SUCCESS, myname, line, cls, generic, msg);
}

/* Ends a collective call: every rank of comm fails together, with one error
 * class (the largest class among the failed ranks). A rank whose own error
 * has that class returns it unchanged; every other rank returns an error of
 * that class whose stack holds its own error, if it had one. */
int ADIOI_DELEGATE_Coll_error(MPI_Comm comm, int error_code, const char *myname,
                              const char *filename, int line)
{
    char msg[ADIOI_DELEGATE_MSG_LEN];
    int cls = MPI_SUCCESS, agreed;

    if (error_code != MPI_SUCCESS)
        MPI_Error_class(error_code, &cls);
    MPI_Allreduce(&cls, &agreed, 1, MPI_INT, MPI_MAX, comm);
    if (agreed == MPI_SUCCESS || cls == agreed)
        return error_code;

    MPL_snprintf(msg, sizeof(msg), "%s%scollective call failed on another process",
                 filename ? filename : "", filename ? ": " : "");
    return ADIOI_DELEGATE_Err_msg(error_code, myname, line, agreed, NULL, msg);
}

/* The options of this rank's part of the next collective call on fd: its
 * rank and the communicator size, the call's sequence number (the same on
 * every rank, since collective calls on one file are ordered) and the
 * group id made at open, so that servers can tell the pieces of one call
 * apart. Used by the collective reads and writes and by close's end
 * markers. */
void ADIOI_DELEGATE_Coll_opts(ADIO_File fd, delegate_io_opts * opts)
{
    ADIOI_DELEGATE_File *f = fd->fs_ptr;
    int rank, nprocs;

    MPI_Comm_rank(fd->comm, &rank);
    MPI_Comm_size(fd->comm, &nprocs);
    memset(opts, 0, sizeof(*opts));
    opts->flags = DELEGATE_IO_COLL;
    opts->coll_rank = rank;
    opts->coll_size = nprocs;
    opts->coll_seq = f->coll_seq++;
    opts->coll_group = f->coll_group;
}
