/*
 * Copyright (C) by Argonne National Laboratory
 *     See COPYRIGHT in top-level directory
 */

#include "ad_delegate.h"

#include <sys/types.h>
#include <sys/stat.h>
#include <fcntl.h>
#include <time.h>
#include <unistd.h>

/* Opens fd->filename with access_mode on this process only and fills
 * fd->fs_ptr. Returns the delegate code (DELEGATE_OK on success) and the MPI
 * error in *error_code. Paths go to libdelegate as given: it resolves a
 * relative path against this process's working directory. */
static int open_file(ADIO_File fd, int access_mode, int *error_code)
{
    static char myname[] = "ADIOI_DELEGATE_OPEN";
    ADIOI_DELEGATE_File *f;
    delegate_hint *hints = NULL;
    int nhints = 0, flags = 0, perm, fh = 0, rc;
    int64_t size;
    mode_t mask;

    if (access_mode & ADIO_RDONLY)
        flags |= DELEGATE_O_RDONLY;
    else if (access_mode & ADIO_WRONLY)
        flags |= DELEGATE_O_WRONLY;
    else
        flags |= DELEGATE_O_RDWR;
    if (access_mode & ADIO_CREATE)
        flags |= DELEGATE_O_CREAT;
    if (access_mode & ADIO_EXCL)
        flags |= DELEGATE_O_EXCL;
    /* ADIO_APPEND is never sent: the individual pointer starts at the end
     * instead (below), as in ad_ufs_open.c */

    if (fd->perm == ADIO_PERM_NULL) {
        mask = umask(022);
        umask(mask);
        perm = 0666 & ~mask;
    } else
        perm = fd->perm;

    f = (ADIOI_DELEGATE_File *) ADIOI_Calloc(1, sizeof(*f));
    if (f == NULL || ADIOI_DELEGATE_Open_hints(fd, &hints, &nhints) != 0) {
        ADIOI_Free(f);
        *error_code = MPIO_Err_create_code(MPI_SUCCESS, MPIR_ERR_RECOVERABLE, myname, __LINE__,
                                           MPI_ERR_NO_MEM, "**nomem2", 0);
        return DELEGATE_ENOMEM;
    }

    rc = ADIOI_DLG.delegate_open(fd->filename, flags, perm, hints, nhints, &fh);
    if (rc == DELEGATE_EHINTKEY || rc == DELEGATE_EHINT) {
        /* a delegate_* hint is unknown (EHINTKEY) or has a bad value (EHINT) */
        *error_code = ADIOI_DELEGATE_Hint_err(myname, __LINE__, rc, DELEGATE_NOHANDLE, hints,
                                              nhints);
        goto fn_fail;
    }
    if (rc != DELEGATE_OK) {
        *error_code = ADIOI_DELEGATE_err(myname, fd->filename, __LINE__, rc, DELEGATE_NOHANDLE);
        goto fn_fail;
    }

    if (access_mode & ADIO_APPEND) {
        rc = ADIOI_DLG.delegate_get_size(fh, &size);
        if (rc != DELEGATE_OK) {
            *error_code = ADIOI_DELEGATE_err(myname, fd->filename, __LINE__, rc, fh);
            ADIOI_DLG.delegate_close(fh);
            goto fn_fail;
        }
        fd->fp_ind = size;
    }

    f->fh = fh;
    fd->fs_ptr = f;
    fd->fd_sys = -1;    /* a stray POSIX call fails with EBADF */
    fd->fd_direct = -1;
    fd->fp_sys_posn = -1;
    ADIOI_DELEGATE_Free_hints(hints, nhints);

    /* MPI_File_get_info reports the value of every hint the library knows */
    ADIOI_DELEGATE_Install_hints(fd);
    *error_code = MPI_SUCCESS;
    return DELEGATE_OK;

  fn_fail:
    ADIOI_DELEGATE_Free_hints(hints, nhints);
    ADIOI_Free(f);
    return rc;
}

/* Opens the file on this process alone (fd->comm may be MPI_COMM_SELF):
 * no collective calls here. */
void ADIOI_DELEGATE_Open(ADIO_File fd, int *error_code)
{
    ADIOI_DELEGATE_Init(error_code);
    if (*error_code != MPI_SUCCESS)
        return;
    open_file(fd, fd->access_mode, error_code);
}

/* A random, non-zero id for the ranks that open a file together: 8 bytes of
 * /dev/urandom, or else the clock, the process id and a counter mixed by the
 * splitmix64 finalizer, so that two opens of one file (by two jobs, or twice
 * by one) get different ids. */
static int64_t new_group_id(void)
{
    static uint64_t counter;
    struct timespec ts;
    uint64_t x = 0;
    int fdr;

    fdr = open("/dev/urandom", O_RDONLY | O_CLOEXEC);
    if (fdr >= 0) {
        if (read(fdr, &x, sizeof(x)) != (ssize_t) sizeof(x))
            x = 0;
        close(fdr);
    }
    if (x == 0) {
        clock_gettime(CLOCK_REALTIME, &ts);
        x = (uint64_t) ts.tv_sec * 1000000000 + (uint64_t) ts.tv_nsec;
        x ^= (uint64_t) getpid() << 40;
        x += ++counter * 0x9e3779b97f4a7c15ULL;
        x ^= x >> 30;
        x *= 0xbf58476d1ce4e5b9ULL;
        x ^= x >> 27;
        x *= 0x94d049bb133111ebULL;
        x ^= x >> 31;
    }
    if (x == 0)
        x = 1;
    return (int64_t) x;
}

/* The error, on the other ranks, of the open that failed on ranklist[0]
 * with delegate code and MPI error class cls. A refused delegate_* hint is
 * reported with ranklist[0]'s class (MPI_ERR_INFO_KEY or _VALUE): every
 * rank has the same hints. */
static int remote_error(ADIO_File fd, int code, int cls, int root, const char *myname, int line)
{
    char msg[256];

    if (cls != MPI_ERR_INFO_KEY && cls != MPI_ERR_INFO_VALUE)
        return ADIOI_DELEGATE_err_remote(myname, fd->filename, line, code, root);
    MPL_snprintf(msg, sizeof(msg), "%s: %s delegate_* hint (on rank %d)", fd->filename,
                 cls == MPI_ERR_INFO_KEY ? "unknown" : "bad value of a", root);
    return ADIOI_DELEGATE_Err_msg(MPI_SUCCESS, myname, line, cls, NULL, msg);
}

/* Whether this rank's open file has delegate_async_close=true (its hints
 * or the library's default). */
static int async_close_set(ADIO_File fd)
{
    ADIOI_DELEGATE_File *f = fd->fs_ptr;
    char value[16];

    return f != NULL && ADIOI_DLG.delegate_get_hint(f->fh, "delegate_async_close", value,
                                                    sizeof(value)) == DELEGATE_OK
        && strcmp(value, "true") == 0;
}

/* Collective open. Without MPI_MODE_EXCL every rank opens at once (a
 * create without EXCL is idempotent on the servers). With it, ranklist[0]
 * creates first, so that exactly one rank can win, and broadcasts the
 * outcome; the others then open what it created. Either way the ranks end
 * with one MPI_Allreduce that agrees on success, on the collective group
 * id (the largest of the ids the ranks drew) and on whether every rank
 * closes asynchronously: if any rank failed, those that
 * succeeded close again and fail too, so ADIO_Open never closes the file on
 * only some ranks, and Close may be collective. */
void ADIOI_DELEGATE_OpenColl(ADIO_File fd, int rank, int access_mode, int *error_code)
{
    static char myname[] = "ADIOI_DELEGATE_OPENCOLL";
    ADIOI_DELEGATE_File *f;
    int root = fd->hints->ranklist[0];
    int init_error, cls;
    int excl = (access_mode & ADIO_CREATE) && (access_mode & ADIO_EXCL);
    /* what ranklist[0] broadcasts with EXCL: its delegate code and error class */
    int64_t result[2] = { DELEGATE_OK, MPI_SUCCESS };
    /* what the ranks agree on: whether one failed, the group id, and
     * whether one does not close asynchronously */
    int64_t mine[3], agreed[3];

    /* every rank needs the library; a rank that cannot load it fails alone
     * and the agreement below makes the others fail with it */
    ADIOI_DELEGATE_Init(&init_error);
    *error_code = init_error;
    fd->access_mode = access_mode;

    if (!excl) {
        if (init_error == MPI_SUCCESS)
            open_file(fd, access_mode, error_code);
    } else {
        if (rank == root) {
            if (init_error == MPI_SUCCESS)
                result[0] = open_file(fd, access_mode, error_code);
            else
                result[0] = DELEGATE_EIO;
            if (*error_code != MPI_SUCCESS) {
                MPI_Error_class(*error_code, &cls);
                result[1] = cls;
            }
        }
        MPI_Bcast(result, 2, MPI_INT64_T, root, fd->comm);
        if (result[0] != DELEGATE_OK) {
            /* everyone knows the root failed: all fail, with its class */
            if (rank != root && init_error == MPI_SUCCESS)
                *error_code = remote_error(fd, (int) result[0], (int) result[1], root, myname,
                                           __LINE__);
            return;
        }
        if (rank != root && init_error == MPI_SUCCESS)
            open_file(fd, access_mode & ~(ADIO_CREATE | ADIO_EXCL), error_code);
    }

    mine[0] = *error_code != MPI_SUCCESS;
    mine[1] = new_group_id();
    mine[2] = mine[0] || !async_close_set(fd);
    MPI_Allreduce(mine, agreed, 3, MPI_INT64_T, MPI_MAX, fd->comm);
    if (agreed[0]) {
        if (*error_code == MPI_SUCCESS) {
            f = fd->fs_ptr;
            ADIOI_DLG.delegate_close(f->fh);
            ADIOI_Free(f);
            fd->fs_ptr = NULL;
            *error_code = ADIOI_DELEGATE_Err_msg(MPI_SUCCESS, myname, __LINE__, MPI_ERR_IO, NULL,
                                                 "the open failed on another rank");
        }
        return;
    }

    f = fd->fs_ptr;
    f->coll_group = agreed[1];
    /* decided here, the same on every rank, never from a later
     * MPI_File_set_info: one rank's end marker would wait for the others' */
    f->async_close_all = agreed[2] == 0;
    /* what ADIOI_GEN_OpenColl leaves behind: a sane block size for code
     * that reads it, an open file, no writes yet */
    fd->blksize = 4 * 1024 * 1024;
    fd->is_open = 1;
    fd->dirty_write = 0;
}
