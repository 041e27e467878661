/*
 * Copyright (C) by Argonne National Laboratory
 *     See COPYRIGHT in top-level directory
 */

#include "ad_delegate.h"

#include <pthread.h>

/* Nonblocking reads and writes. delegate_iread/delegate_iwrite start the
 * transfer and libdelegate progresses it on its own threads, so the
 * computation between MPI_File_iwrite and MPI_Wait really overlaps the I/O.
 * Each operation is an MPIX generalized request whose poll and wait
 * callbacks ask the library (delegate_wait_for, delegate_wait) and complete
 * the request on the calling MPI thread: libdelegate's threads never call
 * MPI.
 *
 * NB: MPICH runs the poll, wait, query and free callbacks outside its
 * critical section, so the pending lists (read by Close to drain what is
 * still in flight, since fd->async_count is never counted in 4.0.2) are
 * guarded by req_lock. A request never points at its ADIO_File: the
 * application may close the file and free the request in either order.
 * MPI_Request_free on a request still in flight runs free_fn at once (and
 * MPI_Grequest_complete stays valid until the request completes), so the
 * state is counted: the operation itself holds a reference until finish. */

struct ADIOI_DELEGATE_Req {
    MPI_Request greq;           /* the generalized request, for MPI_Grequest_complete */
    int req;                    /* libdelegate request handle */
    int error_code;             /* MPI error code of the operation, once completed */
    int64_t nbytes;             /* bytes transferred, once completed */
    /* guarded by req_lock */
    int completed;              /* MPI_Grequest_complete was called */
    int refs;                   /* 1 for MPI until free_fn, 1 for the operation until
                                 * finish, 1 while Close drains it */
    ADIOI_DELEGATE_File *owner; /* whose pending list holds it; NULL once off it */
    ADIOI_DELEGATE_Req *prev, *next;
};

static pthread_mutex_t req_lock = PTHREAD_MUTEX_INITIALIZER;
static MPIX_Grequest_class req_class;
static int req_class_created;

/* Takes r off its pending list. Called with req_lock held. */
static void unlink_req(ADIOI_DELEGATE_Req * r)
{
    if (r->owner == NULL)
        return;
    if (r->prev != NULL)
        r->prev->next = r->next;
    else
        r->owner->pending = r->next;
    if (r->next != NULL)
        r->next->prev = r->prev;
    r->prev = r->next = NULL;
    r->owner = NULL;
}

/* Drops one reference; the last one releases the library's request. */
static void put_req(ADIOI_DELEGATE_Req * r)
{
    int refs;

    pthread_mutex_lock(&req_lock);
    refs = --r->refs;
    pthread_mutex_unlock(&req_lock);
    if (refs == 0) {
        ADIOI_DLG.delegate_request_free(r->req);
        ADIOI_Free(r);
    }
}

/* Records the outcome of r and completes its generalized request, once. */
static void finish(ADIOI_DELEGATE_Req * r, int rc, int64_t nbytes)
{
    pthread_mutex_lock(&req_lock);
    if (r->completed) {
        pthread_mutex_unlock(&req_lock);
        return;
    }
    r->completed = 1;
    unlink_req(r);
    pthread_mutex_unlock(&req_lock);

    r->nbytes = nbytes;
    r->error_code = ADIOI_DELEGATE_err("ADIOI_DELEGATE_IO_DONE", NULL, __LINE__, rc, r->req);
    MPI_Grequest_complete(r->greq);
    /* the operation's reference: the caller holds another one */
    put_req(r);
}

static int is_completed(ADIOI_DELEGATE_Req * r)
{
    int completed;

    pthread_mutex_lock(&req_lock);
    completed = r->completed;
    pthread_mutex_unlock(&req_lock);
    return completed;
}

/* MPI_Test, and MPI_Wait in a loop: must not block for long. A short
 * bounded wait rather than delegate_test: MPI_Wait calls this in a tight
 * loop, and a spinning rank takes the CPU from the library's threads and
 * from servers that share its cores; a request that completes meanwhile is
 * seen at once. */
#define ADIOI_DELEGATE_POLL_US 100

static int poll_fn(void *extra_state, MPI_Status * status)
{
    ADIOI_DELEGATE_Req *r = extra_state;
    int64_t nbytes = 0;
    int done = 0, rc;

    (void) status;
    if (is_completed(r))
        return MPI_SUCCESS;
    rc = ADIOI_DLG.delegate_wait_for(r->req, ADIOI_DELEGATE_POLL_US, &done, &nbytes);
    if (done || rc != DELEGATE_OK)
        finish(r, rc, nbytes);
    return MPI_SUCCESS;
}

/* MPI_Waitall and friends. delegate_wait is bounded: a dead server ends it
 * with an error, never a hang. */
static int wait_fn(int count, void **array_of_states, double timeout, MPI_Status * status)
{
    int64_t nbytes;
    int i, rc;

    (void) timeout;
    (void) status;
    for (i = 0; i < count; i++) {
        ADIOI_DELEGATE_Req *r = array_of_states[i];
        if (is_completed(r))
            continue;
        nbytes = 0;
        rc = ADIOI_DLG.delegate_wait(r->req, &nbytes);
        finish(r, rc, nbytes);
    }
    return MPI_SUCCESS;
}

/* Its return value becomes the error of MPI_Wait/MPI_Test. */
static int query_fn(void *extra_state, MPI_Status * status)
{
    ADIOI_DELEGATE_Req *r = extra_state;

    MPI_Status_set_elements_x(status, MPI_BYTE, (MPI_Count) r->nbytes);
    MPI_Status_set_cancelled(status, 0);
    return r->error_code;
}

static int free_fn(void *extra_state)
{
    put_req(extra_state);
    return MPI_SUCCESS;
}

static int cancel_fn(void *extra_state, int complete)
{
    /* a transfer handed to the servers cannot be taken back */
    (void) extra_state;
    (void) complete;
    return MPI_SUCCESS;
}

/* Starts the transfer described by l and returns its request. A failure to
 * start is returned in a completed request (and through *error_code, already
 * passed to the file's error handler), as mpi-io/iread.c expects. The lists
 * can be freed on return: libdelegate copies them. */
void ADIOI_DELEGATE_Post(ADIO_File fd, int rw, ADIOI_DELEGATE_Lists * l,
                         const delegate_io_opts * opts, MPI_Request * request, int *error_code)
{
    static char myname[] = "ADIOI_DELEGATE_POST";
    ADIOI_DELEGATE_File *f = fd->fs_ptr;
    ADIOI_DELEGATE_Req *r;
    int rc, req = 0;

    if (!req_class_created) {
        /* under ROMIO's critical section, like every Post */
        MPIX_Grequest_class_create(query_fn, free_fn, cancel_fn, poll_fn, wait_fn, &req_class);
        req_class_created = 1;
    }

    r = (ADIOI_DELEGATE_Req *) ADIOI_Calloc(1, sizeof(*r));
    if (r == NULL) {
        *error_code = MPIO_Err_create_code(MPI_SUCCESS, MPIR_ERR_RECOVERABLE, myname, __LINE__,
                                           MPI_ERR_NO_MEM, "**nomem2", 0);
        MPIO_Completed_request_create(&fd, 0, error_code, request);
        return;
    }

    if (rw == ADIOI_DELEGATE_WRITE)
        rc = ADIOI_DLG.delegate_iwrite(f->fh, l->mem, l->nmem, l->ext, l->next, opts, &req);
    else
        rc = ADIOI_DLG.delegate_iread(f->fh, l->mem, l->nmem, l->ext, l->next, opts, &req);
    if (rc != DELEGATE_OK) {
        ADIOI_Free(r);
        *error_code = ADIOI_DELEGATE_err(myname, fd->filename, __LINE__, rc, f->fh);
        MPIO_Completed_request_create(&fd, 0, error_code, request);
        return;
    }

    r->req = req;
    r->refs = 2;
    MPIX_Grequest_class_allocate(req_class, r, request);
    r->greq = *request;

    pthread_mutex_lock(&req_lock);
    r->owner = f;
    r->next = f->pending;
    if (f->pending != NULL)
        f->pending->prev = r;
    f->pending = r;
    pthread_mutex_unlock(&req_lock);
    *error_code = MPI_SUCCESS;
}

/* Waits for every operation of f still in flight and completes its request,
 * so Close can release the file handle. Their errors stay with the requests. */
void ADIOI_DELEGATE_Drain(ADIOI_DELEGATE_File * f)
{
    ADIOI_DELEGATE_Req *r;
    int64_t nbytes;
    int rc;

    for (;;) {
        pthread_mutex_lock(&req_lock);
        r = f->pending;
        if (r != NULL) {
            unlink_req(r);
            r->refs++;
        }
        pthread_mutex_unlock(&req_lock);
        if (r == NULL)
            break;

        nbytes = 0;
        rc = ADIOI_DLG.delegate_wait(r->req, &nbytes);
        finish(r, rc, nbytes);
        put_req(r);
    }
}
