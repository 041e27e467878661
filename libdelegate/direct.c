/*
 * direct.c: reads straight from the backend file, in C.
 *
 * When Go's exported word says this client has no write or collective of
 * the file in flight (and nothing else forbids it) and every server's
 * control page word says it holds no dirty data, the backend file holds
 * every acknowledged write, and a read is a pread from C
 * (client.File.ExportDirect has the rule). Measured: the C->Go call, Go's
 * syscall bookkeeping and locks cost 0.5 us per 64-byte read, more than the
 * pread itself.
 *
 * Lease writes too (dlg_direct_write): a blocking, independent write whose
 * every extent is at least the file's lease threshold is a pwrite from C
 * when the same words say so and no path is open twice with a write in
 * flight (client.File.ExportLease has the rule; leaseCheck is Go's copy of
 * it). Measured: the Go path cost 2-4 us more than ufs:'s pwrite for a
 * 47,008-byte write (lw, one rank). A shorter one-extent write (from 4 KiB,
 * ExportLease's far threshold) is leased when it lies far from where the
 * handle's previous write ended (FAR_BYTES), and nothing is staged or
 * unacknowledged in the process: random pieces, which a server would
 * hold, scattered, until a close-time flush (random 4 KiB writes: 0.34 of
 * ufs:'s speed through a server, 0.78-0.88 leased), while sequential and
 * interleaved pieces, which a server gathers into long runs, still go to
 * it (interleaved 4 KiB: 2-3x ufs: through a server, 1.0 leased).
 *
 * Each open file has an entry in a table of its own (write combining, in
 * stage.c, has another): set up by the first read or long write (calls
 * into Go, made without the entry's lock), dropped after the file's close.
 */
#include <errno.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/syscall.h>
#include <unistd.h>
#include "delegate.h"
#include "stage.h"
#include "_cgo_export.h"

#define DIRECT_SLOTS 1024       /* open files with a direct path at once */
#define DIRECT_WORDS 64         /* more servers than this: reads go to Go */
/* A write that starts more than this from where the handle's previous one
 * ended is far: the window a server gathers in (its chunks are 1 MiB), and
 * wider than 4 KiB pieces interleaved by 256 ranks. */
#define FAR_BYTES (1 << 20)

struct direct {
    pthread_mutex_t mu;
    int fh;
    /* 0 not set up yet, 1 ready, -1 impossible, 2 being set up */
    int state;
    int fd;                     /* the backend file, Go's until close */
    int nwords;
    int64_t mirror;             /* kept by Go (ExportDirect) */
    /* The servers' control page words of the file: shared memory that Go
     * keeps mapped until dlgClose returns, also after the session died
     * (internal/client/mapping.go); delegate_close drops the entry next. */
    uint64_t *words[DIRECT_WORDS];
    /* Lease writes: wstate 0 unknown, 1 ready, -1 impossible, 2 being set
     * up, 3 threshold known (wmin), descriptor not asked for yet. */
    int wstate;
    int wfd;                    /* the backend file opened for writing, Go's until close */
    int64_t wmin;               /* the file's lease threshold */
    int64_t wfar;               /* that of a far one-extent write; 0: none */
    /* Where this process's previous write of the file ended (-1: none
     * yet): a hint, read and set without a lock. */
    int64_t wend;
    /* Read and reset by Go (ExportLease): a write since the last sync,
     * writes, bytes. */
    int64_t wcount[3];
};

/* The table is changed under table_mu (open, close) and read without it:
 * a file is not read and closed at once (MPI forbids it). Lock order:
 * table_mu, then an entry's mu; neither is held across a call into Go. */
static struct direct *table[DIRECT_SLOTS];
static pthread_mutex_t table_mu = PTHREAD_MUTEX_INITIALIZER;

static struct direct *find(int fh)
{
    struct direct *d = __atomic_load_n(&table[(unsigned) fh % DIRECT_SLOTS], __ATOMIC_ACQUIRE);
    return (d != NULL && d->fh == fh) ? d : NULL;
}

void dlg_direct_open(int fh)
{
    struct direct *d;
    unsigned i = (unsigned) fh % DIRECT_SLOTS;
    pthread_mutex_lock(&table_mu);
    if (table[i] == NULL && (d = calloc(1, sizeof(*d))) != NULL) {
        pthread_mutex_init(&d->mu, NULL);
        d->fh = fh;
        d->fd = -1;
        d->wfd = -1;
        d->wend = -1;
        __atomic_store_n(&table[i], d, __ATOMIC_RELEASE);
    }
    /* else: another open file holds the slot; this one reads through Go */
    pthread_mutex_unlock(&table_mu);
}

static void drop(unsigned i)
{
    struct direct *d = table[i];
    __atomic_store_n(&table[i], NULL, __ATOMIC_RELEASE);
    pthread_mutex_destroy(&d->mu);
    free(d);
}

void dlg_direct_close(int fh)
{
    pthread_mutex_lock(&table_mu);
    if (find(fh) != NULL)
        drop((unsigned) fh % DIRECT_SLOTS);
    pthread_mutex_unlock(&table_mu);
}

void dlg_direct_drop_all(void)
{
    pthread_mutex_lock(&table_mu);
    for (unsigned i = 0; i < DIRECT_SLOTS; i++)
        if (table[i] != NULL)
            drop(i);
    pthread_mutex_unlock(&table_mu);
}

/* ready sets up direct reads of d once: a call into Go, made without
 * d->mu; a read that comes meanwhile goes to Go. */
static int ready(struct direct *d)
{
    int st = __atomic_load_n(&d->state, __ATOMIC_ACQUIRE), fd = -1, n;
    if (st != 0)
        return st == 1;
    pthread_mutex_lock(&d->mu);
    st = d->state;
    if (st == 0)
        __atomic_store_n(&d->state, 2, __ATOMIC_RELEASE);   /* this thread sets it up */
    pthread_mutex_unlock(&d->mu);
    if (st != 0)
        return st == 1;
    n = dlgDirectSetup(d->fh, &d->mirror, d->words, DIRECT_WORDS, &fd);
    pthread_mutex_lock(&d->mu);
    d->fd = fd;
    d->nwords = n;
    __atomic_store_n(&d->state, n >= 0 && fd >= 0 ? 1 : -1, __ATOMIC_RELEASE);
    pthread_mutex_unlock(&d->mu);
    return __atomic_load_n(&d->state, __ATOMIC_ACQUIRE) == 1;
}

/* plain reports whether a call is one the C paths take: no flags, one
 * piece of memory, valid extents whose lengths add up to it; *shortest is
 * the shortest extent's length. */
static int plain(const delegate_iov *mem, int64_t nmem, const delegate_extent *ext, int64_t next,
                 const delegate_io_opts *opts, int64_t *shortest)
{
    int64_t want = 0;
    *shortest = INT64_MAX;
    if ((opts != NULL && opts->flags != 0) || nmem != 1 || next < 1 || mem == NULL || ext == NULL ||
        mem[0].len <= 0 || mem[0].base == NULL)
        return 0;
    for (int64_t i = 0; i < next; i++) {
        if (ext[i].off < 0 || ext[i].len < 0 || ext[i].off > INT64_MAX - ext[i].len)
            return 0;
        want += ext[i].len;
        if (ext[i].len < *shortest)
            *shortest = ext[i].len;
    }
    return want == mem[0].len;
}

/* clean reports whether d's backend file holds every acknowledged write
 * of the file: this client has none in flight (Go's word) and no server
 * holds dirty data of it (their words). The order matters (ExportDirect):
 * our writes first, then the servers'. */
static int clean(struct direct *d)
{
    if (__atomic_load_n(&d->mirror, __ATOMIC_ACQUIRE) != 0)
        return 0;
    for (int i = 0; i < d->nwords; i++)
        if (__atomic_load_n(d->words[i], __ATOMIC_ACQUIRE) != 0)
            return 0;
    return 1;
}

/* transfer moves the extents' bytes between p and fd with system call nr
 * (SYS_pread64 or SYS_pwrite64) itself, not libc's wrapper: with the Go
 * runtime's threads in the process libc makes each call a cancellation
 * point (enable and disable, 35-40 ns, a tenth of a 64-byte read's cost;
 * MPI-IO has no use for thread cancellation). A read stops at the end of
 * the file. It returns 1, or 0 on an error; *moved counts the bytes moved
 * either way. */
static int transfer(long nr, int fd, char *p, const delegate_extent *ext, int64_t next, int64_t *moved)
{
    for (int64_t i = 0; i < next; i++) {
        int64_t off = ext[i].off, n = ext[i].len;
        while (n > 0) {
            ssize_t r = syscall(nr, fd, p, (size_t) n, (off_t) off);
            if (r < 0 && errno == EINTR)
                continue;
            if (r < 0 || (r == 0 && nr != SYS_pread64))
                return 0;
            if (r == 0)
                return 1;       /* end of file */
            p += r;
            *moved += r;
            off += r;
            n -= r;
        }
    }
    return 1;
}

int dlg_direct_read(int fh, const delegate_iov *mem, int64_t nmem, const delegate_extent *ext,
                    int64_t next, const delegate_io_opts *opts, int64_t *nbytes, int *rc)
{
    struct direct *d = find(fh);
    int64_t got = 0, shortest;
    if (d == NULL || !plain(mem, nmem, ext, next, opts, &shortest) || !ready(d) || !clean(d))
        return 0;
    if (!transfer(SYS_pread64, d->fd, mem[0].base, ext, next, &got))
        return 0;               /* Go reads again and reports the error */
    if (nbytes != NULL)
        *nbytes = got;
    *rc = DELEGATE_OK;
    return 1;
}

/* wlim is the lease threshold of a write (isfar: dlg_direct_write) once wready
 * knows the file's thresholds. */
static int64_t wlim(struct direct *d, int isfar)
{
    int64_t lim = __atomic_load_n(&d->wmin, __ATOMIC_ACQUIRE), f = __atomic_load_n(&d->wfar, __ATOMIC_ACQUIRE);
    return isfar && f > 0 && f < lim ? f : lim;
}

/* wready sets up lease writes of d for a write whose shortest extent is
 * shortest bytes: the thresholds once, the descriptor once a write reaches
 * one (calls into Go, made without d->mu; a write that comes meanwhile
 * goes to Go). */
static int wready(struct direct *d, int64_t shortest, int isfar)
{
    int st = __atomic_load_n(&d->wstate, __ATOMIC_ACQUIRE), fd = -1, r;
    int64_t lim = 0, far = 0;
    if (st == 1 || st == -1 || st == 2)
        return st == 1;
    if (st == 3 && shortest < wlim(d, isfar))
        return 0;
    pthread_mutex_lock(&d->mu);
    st = d->wstate;
    if (st == 0 || st == 3)
        __atomic_store_n(&d->wstate, 2, __ATOMIC_RELEASE);
    pthread_mutex_unlock(&d->mu);
    if (st != 0 && st != 3)
        return st == 1;
    /* Go answers with both thresholds, and the descriptor once shortest
     * reaches either (a near write below wmin still goes to Go: wlim) */
    r = dlgLeaseSetup(d->fh, shortest, d->wcount, &lim, &far, &fd);
    pthread_mutex_lock(&d->mu);
    d->wfd = fd;
    __atomic_store_n(&d->wmin, lim, __ATOMIC_RELEASE);
    __atomic_store_n(&d->wfar, far, __ATOMIC_RELEASE);
    __atomic_store_n(&d->wstate, r == 1 && fd >= 0 ? 1 : r == 0 && lim > 0 ? 3 : -1, __ATOMIC_RELEASE);
    pthread_mutex_unlock(&d->mu);
    return __atomic_load_n(&d->wstate, __ATOMIC_ACQUIRE) == 1;
}

/* ended remembers where a write of d ends (its last extent's end; -1 for
 * a list that is not a valid one) and returns where the previous write of
 * d by this process ended (-1: none yet). A hint, without a lock. */
static int64_t ended(struct direct *d, const delegate_extent *ext, int64_t next)
{
    int64_t end = -1, prev = __atomic_load_n(&d->wend, __ATOMIC_RELAXED);
    if (ext != NULL && next >= 1) {
        const delegate_extent *e = &ext[next - 1];
        if (e->off >= 0 && e->len >= 0 && e->off <= INT64_MAX - e->len)
            end = e->off + e->len;
    }
    __atomic_store_n(&d->wend, end, __ATOMIC_RELAXED);
    return prev;
}

int dlg_direct_write(int fh, const delegate_iov *mem, int64_t nmem, const delegate_extent *ext,
                     int64_t next, const delegate_io_opts *opts, int first, int64_t *nbytes, int *rc)
{
    struct direct *d = find(fh);
    int64_t done = 0, shortest, prev = -1;
    int isfar = 0;
    if (d == NULL)
        return 0;
    if (first) {
        /* Before staging: note where the write ends. Only a one-extent
         * write may lease here, and only while nothing is staged or
         * unacknowledged in the process (a staged write of the file would
         * be overtaken); any other waits for the call after the hand-over,
         * so a long extent list is checked once. Far: it starts more than
         * FAR_BYTES from where the previous write ended, or is the first
         * (nothing to gather it with yet). */
        prev = ended(d, ext, next);
        if (next != 1 || __atomic_load_n(dlg_fence_word(), __ATOMIC_ACQUIRE) != 0)
            return 0;
    }
    if (!plain(mem, nmem, ext, next, opts, &shortest))
        return 0;
    if (first)
        isfar = prev < 0 || ext[0].off - prev > FAR_BYTES || prev - ext[0].off > FAR_BYTES;
    /* (4 KiB: no setup call into Go for the small writes of a file) */
    if (shortest < 4096 || __atomic_load_n(&d->wstate, __ATOMIC_ACQUIRE) == -1 || !ready(d) ||
        !wready(d, shortest, isfar) || shortest < wlim(d, isfar))
        return 0;
    /* Another handle of a path open twice is not in this file's word:
     * then nothing of this process may be in flight (Go: leaseCheck). */
    if (dlg_shared() && __atomic_load_n(dlg_fence_word(), __ATOMIC_ACQUIRE) != 0)
        return 0;
    if (!clean(d))
        return 0;
    if (!transfer(SYS_pwrite64, d->wfd, mem[0].base, ext, next, &done)) {
        /* Go writes it all again and reports the error; the bytes written
         * here are the same ones. */
        if (done > 0)
            __atomic_store_n(&d->wcount[0], 1, __ATOMIC_RELEASE);
        return 0;
    }
    /* After the bytes: a sync that comes after this write fsyncs them. */
    __atomic_store_n(&d->wcount[0], 1, __ATOMIC_RELEASE);
    __atomic_fetch_add(&d->wcount[1], 1, __ATOMIC_RELAXED);
    __atomic_fetch_add(&d->wcount[2], done, __ATOMIC_RELAXED);
    if (nbytes != NULL)
        *nbytes = done;
    *rc = DELEGATE_OK;
    return 1;
}
