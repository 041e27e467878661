/*
 * shim.c: the public delegate_* names of include/delegate.h, mapped onto the
 * Go exports of export.go. Including the header here lets the compiler
 * check every signature against the API. The fork guard lives here too, so
 * a forked child never enters the Go runtime (after fork() it would hang).
 */
#include <pthread.h>
#include "delegate.h"
#include "stage.h"
#include "_cgo_export.h"

static volatile int delegate_forked;

static void delegate_atfork_child(void)
{
    delegate_forked = 1;
}

__attribute__((constructor))
static void delegate_shim_init(void)
{
    pthread_atfork(NULL, NULL, delegate_atfork_child);
}

#define GUARD() do { if (delegate_forked) return DELEGATE_EFORK; } while (0)

/* HAND_OVER_STAGED hands over fh's staged writes (stage.c) before any other call on
 * fh, so that the call comes after them, and returns their failure. */
#define HAND_OVER_STAGED(fh) do { int rc_ = dlg_stage_hand_over(fh); if (rc_ != DELEGATE_OK) return rc_; } while (0)

/* SHARED_FENCE: while some path is open more than once in this process, a
 * read, stat or size query on one handle first makes the other handles'
 * writes visible (delegate_fence), as the same process sees its own writes
 * through any descriptor on a POSIX file system. */
#define SHARED_FENCE() do { if (dlg_shared()) (void) delegate_fence(); } while (0)

/* restage tells the stage what Go now allows for fh. */
static int restage(int fh, int rc)
{
    dlg_stage_policy(fh, dlgStagePolicy(fh));
    return rc;
}

int delegate_api_version(void)
{
    return DELEGATE_API_VERSION;
}

int delegate_init(void)
{
    GUARD();
    return dlgInit();
}

int delegate_finalize(void)
{
    int rc, rc2;
    GUARD();
    rc = dlg_stage_hand_over_all();
    dlg_stage_stop();           /* nothing is staged once the files close */
    rc2 = dlgFinalize();        /* closes the files still open */
    dlg_stage_drop_all();
    dlg_direct_drop_all();
    return rc != DELEGATE_OK ? rc : rc2;
}

int delegate_errmsg(int handle, char *buf, size_t buflen)
{
    GUARD();
    return dlgErrmsg(handle, buf, buflen);
}

const char *delegate_strerror(int code)
{
    if (delegate_forked)
        return "library used in a forked child";
    return dlgStrerror(code);
}

int delegate_open(const char *path, int flags, int perm, const delegate_hint *hints, int nhints,
                  int *fh)
{
    int rc;
    GUARD();
    rc = dlgOpen((char *) path, flags, perm, (delegate_hint *) hints, nhints, fh);
    if (rc == DELEGATE_OK) {
        dlg_stage_open(*fh, dlgStagePolicy(*fh));
        dlg_direct_open(*fh);
    }
    return rc;
}

int delegate_close(int fh)
{
    int rc, rc2;
    GUARD();
    rc = dlg_stage_hand_over(fh);
    rc2 = dlgClose(fh);         /* Go lets go of the direct path's words first */
    dlg_stage_close(fh);
    dlg_direct_close(fh);
    return rc != DELEGATE_OK ? rc : rc2;
}

int delegate_write(int fh, const delegate_iov *mem, int64_t nmem, const delegate_extent *ext,
                   int64_t next, const delegate_io_opts *opts, int64_t *nbytes)
{
    int rc;
    GUARD();
    /* A lease write first (direct.c), when nothing is staged: a far 4 KiB
     * piece would otherwise be staged; then after the hand-over. */
    if (dlg_direct_write(fh, mem, nmem, ext, next, opts, 1, nbytes, &rc))
        return rc;
    if (dlg_stage_write(fh, mem, nmem, ext, next, opts, nbytes, &rc))
        return rc;
    HAND_OVER_STAGED(fh);
    if (dlg_direct_write(fh, mem, nmem, ext, next, opts, 0, nbytes, &rc))
        return rc;
    return dlgIO(fh, 1, (delegate_iov *) mem, nmem, (delegate_extent *) ext, next,
                 (delegate_io_opts *) opts, nbytes);
}

int delegate_read(int fh, const delegate_iov *mem, int64_t nmem, const delegate_extent *ext,
                  int64_t next, const delegate_io_opts *opts, int64_t *nbytes)
{
    int rc;
    GUARD();
    HAND_OVER_STAGED(fh);
    SHARED_FENCE();
    if (dlg_direct_read(fh, mem, nmem, ext, next, opts, nbytes, &rc))
        return rc;
    return dlgIO(fh, 0, (delegate_iov *) mem, nmem, (delegate_extent *) ext, next,
                 (delegate_io_opts *) opts, nbytes);
}

int delegate_iwrite(int fh, const delegate_iov *mem, int64_t nmem, const delegate_extent *ext,
                    int64_t next, const delegate_io_opts *opts, int *req)
{
    GUARD();
    HAND_OVER_STAGED(fh);
    return dlgIIO(fh, 1, (delegate_iov *) mem, nmem, (delegate_extent *) ext, next,
                  (delegate_io_opts *) opts, req);
}

int delegate_iread(int fh, const delegate_iov *mem, int64_t nmem, const delegate_extent *ext,
                   int64_t next, const delegate_io_opts *opts, int *req)
{
    GUARD();
    HAND_OVER_STAGED(fh);
    SHARED_FENCE();
    return dlgIIO(fh, 0, (delegate_iov *) mem, nmem, (delegate_extent *) ext, next,
                  (delegate_io_opts *) opts, req);
}

int delegate_test(int req, int *done, int64_t *nbytes)
{
    GUARD();
    return dlgTest(req, done, nbytes);
}

int delegate_wait(int req, int64_t *nbytes)
{
    GUARD();
    return dlgWait(req, nbytes);
}

int delegate_wait_for(int req, int64_t timeout_us, int *done, int64_t *nbytes)
{
    GUARD();
    return dlgWaitFor(req, timeout_us, done, nbytes);
}

int delegate_request_free(int req)
{
    GUARD();
    return dlgRequestFree(req);
}

int delegate_sync(int fh)
{
    GUARD();
    HAND_OVER_STAGED(fh);
    return dlgSync(fh);
}

int delegate_flush(int fh)
{
    GUARD();
    HAND_OVER_STAGED(fh);
    return dlgFlush(fh);
}

int delegate_get_size(int fh, int64_t *size)
{
    GUARD();
    HAND_OVER_STAGED(fh);
    SHARED_FENCE();
    return dlgGetSize(fh, size);
}

int delegate_set_size(int fh, int64_t size)
{
    GUARD();
    HAND_OVER_STAGED(fh);
    return dlgSetSize(fh, size, 0);
}

int delegate_preallocate(int fh, int64_t size)
{
    GUARD();
    HAND_OVER_STAGED(fh);
    return dlgSetSize(fh, size, 1);
}

int delegate_delete(const char *path)
{
    GUARD();
    return dlgDelete((char *) path);
}

int delegate_cork(int fh)
{
    GUARD();
    HAND_OVER_STAGED(fh);
    return restage(fh, dlgSetHint(fh, (char *) "delegate_cork", (char *) "true"));
}

int delegate_uncork(int fh)
{
    GUARD();
    HAND_OVER_STAGED(fh);
    return restage(fh, dlgSetHint(fh, (char *) "delegate_cork", (char *) "false"));
}

int delegate_set_hint(int fh, const char *key, const char *value)
{
    GUARD();
    HAND_OVER_STAGED(fh);
    return restage(fh, dlgSetHint(fh, (char *) key, (char *) value));
}

int delegate_get_hint(int fh, const char *key, char *buf, size_t buflen)
{
    GUARD();
    return dlgGetHint(fh, (char *) key, buf, buflen);
}

int delegate_hint_name(int i, char *buf, size_t buflen)
{
    GUARD();
    return dlgHintName(i, buf, buflen);
}

int delegate_set_atomic(int fh, int atomic)
{
    GUARD();
    HAND_OVER_STAGED(fh);
    return restage(fh, dlgSetAtomic(fh, atomic));
}

int delegate_counter(int fh, const char *key, int op, int64_t value, int64_t *old)
{
    GUARD();
    HAND_OVER_STAGED(fh);
    return dlgCounter(fh, (char *) key, op, value, old);
}

int delegate_set_log_fd(int fd)
{
    GUARD();
    return dlgSetLogFD(fd);
}

/* The file whose collective write this thread is ending
 * (delegate_fence_scope); DELEGATE_NOHANDLE outside one. Per thread: the
 * scope covers the messages of the thread that runs the collective. */
static __thread int fence_scope = DELEGATE_NOHANDLE;
/* whether the scope is a close's (delegate_fence_scope_close) */
static __thread int fence_close;

int delegate_fence_scope(int fh)
{
    fence_scope = fh;
    fence_close = 0;
    return DELEGATE_OK;
}

int delegate_fence_scope_close(int fh)
{
    fence_scope = fh;
    fence_close = fh != DELEGATE_NOHANDLE;
    return DELEGATE_OK;
}

int delegate_fence(void)
{
    GUARD();
    if (__atomic_load_n(dlg_fence_word(), __ATOMIC_ACQUIRE) == 0)
        return DELEGATE_OK;
    dlg_stage_hand_over_fence();
    if (fence_scope != DELEGATE_NOHANDLE)
        return fence_close ? dlgFenceClose(fence_scope) : dlgFenceScoped(fence_scope);
    return dlgFence();
}

const volatile long long *delegate_fence_word(void)
{
    return dlg_fence_word();
}
