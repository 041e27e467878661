/*
 * stage.c: write combining in front of the Go runtime.
 *
 * A small independent write (at most STAGE_MAX_WRITE bytes, no
 * acknowledgement asked) on a file that allows it is copied into the
 * file's stage here, in C, and returns: no call into Go. A background
 * thread (the sender) hands a stage to Go as one write with many extents
 * as soon as it can: at once when it is idle, else right after the batch
 * it is handing over. So writes are sent at once, and while a send is in
 * progress the following writes batch on their own (DESIGN.md §3). A
 * stage also goes to Go when it fills, and before any other call on its
 * file (so this process's later reads, syncs and closes come after it).
 * A corked file's stage is left alone by the sender: it feeds the cork
 * batch when it fills or at the next other call.
 *
 * Why: a C->Go call and the client's bookkeeping cost about 0.4 us per
 * write, as much as a pwrite of 64 bytes into the page cache; a staged
 * write costs a lock and a memcpy. Each stage has two buffers, so the
 * application fills one while the sender hands over the other. An error
 * of a background send is kept and returned by the next call on the file
 * (delegate.h, delegate_write).
 *
 * DELEGATE_COMBINE=0 turns combining off.
 *
 * The fence word (delegate_fence_word) counts the stage buffers that hold
 * data plus Go's write requests not yet acknowledged (client.Config.Pending
 * points here): a buffer is counted from its first byte until Go holds its
 * data as a request, which Go counts before hand() returns, so the word
 * never reads 0 while a returned write is unacknowledged.
 *
 * Direct reads (a pread from C when nothing is buffered anywhere) live in
 * direct.c, with a table of their own.
 */
#include <errno.h>
#include <pthread.h>
#include <stdint.h>
#include <time.h>
#include <unistd.h>
#include <stdlib.h>
#include <string.h>
#include "delegate.h"
#include "stage.h"
#include "_cgo_export.h"

#define STAGE_SLOTS 1024        /* open files with a stage at once */
#define STAGE_BYTES (64 << 10)  /* data of one buffer */
#define STAGE_EXTENTS 2048      /* extents of one buffer */
#define STAGE_MAX_WRITE 4096    /* larger writes go straight to Go */

struct batch {
    int64_t used, next;
    delegate_extent ext[STAGE_EXTENTS];
    char data[STAGE_BYTES];
};

struct stage {
    pthread_mutex_t mu;
    pthread_cond_t idle;        /* signalled when a hand-over ends */
    int fh;
    int policy;                 /* DLG_STAGE_* from Go */
    int err;                    /* failure of a background send, for the next call: atomic
                                 * (read without mu by dlg_stage_hand_over) */
    int busy;                   /* bufs[1 - cur] is being handed to Go (hand_over) */
    int cur;                    /* the buffer writes go to */
    int refs;                   /* snapshots holding it (under table_mu) */
    int closed;                 /* out of the table: freed by the last unref */
    /* The two buffers (192 KiB), allocated by the first staged write: a
     * file that never stages one (large writes, reads) costs no memory
     * for them, and its open no time (a calloc of them took 70-100 us at
     * an open once malloc served them from the heap and zeroed them). */
    struct batch *bufs;

};

static long long fence_word;    /* delegate_fence_word */
static long long shared_word;   /* paths open more than once here (Go keeps it) */

static struct stage *table[STAGE_SLOTS];
static pthread_mutex_t table_mu = PTHREAD_MUTEX_INITIALIZER;

/* Locks, in the order they are taken: table_mu, then a stage's mu;
 * sender_mu alone. None is held across a call into Go (hand_over) or
 * while the sender waits for work. */
static pthread_mutex_t sender_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t sender_cv = PTHREAD_COND_INITIALIZER;
/* The sender thread: started by the first staged write (arm), stopped and
 * joined by dlg_stage_stop (delegate_finalize). Under sender_mu. */
static pthread_t sender_thread;
static int sender_started;
static int sender_stopping;
static int armed;               /* a stage may hold data the sender has not seen */
static int enabled = -1;        /* DELEGATE_COMBINE */
static long pace_us = -1;       /* DELEGATE_COMBINE_PACE_US */

/* pace is the least time between two hand-overs of the sender: the first
 * write after a quiet spell goes at once, a stream of writes in batches at
 * most this often (fewer, larger batches cost less CPU, which the ranks
 * and the server share). */
static long pace(void)
{
    if (pace_us < 0) {
        const char *s = getenv("DELEGATE_COMBINE_PACE_US");
        pace_us = s != NULL && *s != '\0' ? atol(s) : 100;
        if (pace_us < 0 || pace_us > 100000)
            pace_us = 100;
    }
    return pace_us;
}

static int64_t now_ns(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (int64_t) t.tv_sec * 1000000000 + t.tv_nsec;
}

static int combine(void)
{
    if (enabled < 0) {
        const char *s = getenv("DELEGATE_COMBINE");
        enabled = !(s != NULL && (strcmp(s, "0") == 0 || strcmp(s, "false") == 0 ||
                                  strcmp(s, "off") == 0));
    }
    return enabled;
}

static struct stage *find(int fh)
{
    struct stage *s = __atomic_load_n(&table[(unsigned) fh % STAGE_SLOTS], __ATOMIC_ACQUIRE);
    return (s != NULL && s->fh == fh) ? s : NULL;
}

/* hand gives b to Go. With keep (a background send, nobody to tell), a
 * failure is kept in s->err, when no older one is, before the fence word
 * drops, so that a call that finds the word at 0 also finds the failure
 * (dlg_stage_hand_over's check without the lock). */
static int hand(struct stage *s, struct batch *b, int keep)
{
    delegate_iov iov = {b->data, b->used};
    int64_t n;
    int rc = dlgIO(s->fh, 1, &iov, 1, b->ext, b->next, NULL, &n), ok = DELEGATE_OK;
    b->used = 0;
    b->next = 0;
    if (rc != DELEGATE_OK && keep)
        __atomic_compare_exchange_n(&s->err, &ok, rc, 0, __ATOMIC_RELEASE, __ATOMIC_RELAXED);
    /* Go counts the request now (or it failed, for the next call) */
    __atomic_sub_fetch(&fence_word, 1, __ATOMIC_RELEASE);
    return rc;
}

/* hand_over hands s's current buffer to Go without holding s->mu during
 * the call: the buffer is marked busy and writes go on into the other one.
 * A hand-over in progress finishes first, so the order of writes is kept.
 * The caller holds s->mu, and holds it again on return. */
static int hand_over(struct stage *s, int keep)
{
    struct batch *b;
    int rc;
    while (s->busy)
        pthread_cond_wait(&s->idle, &s->mu);
    if (s->bufs == NULL)
        return DELEGATE_OK;
    b = &s->bufs[s->cur];
    if (b->used == 0)
        return DELEGATE_OK;
    s->cur = 1 - s->cur;        /* empty: only a busy buffer holds data */
    s->busy = 1;
    pthread_mutex_unlock(&s->mu);
    rc = hand(s, b, keep);
    pthread_mutex_lock(&s->mu);
    s->busy = 0;
    pthread_cond_broadcast(&s->idle);
    return rc;
}

/* send_locked hands what s holds to Go and returns the first failure,
 * older ones (of background sends) first. The caller holds s->mu. */
static int send_locked(struct stage *s)
{
    int rc = hand_over(s, 0), kept = __atomic_exchange_n(&s->err, DELEGATE_OK, __ATOMIC_ACQ_REL);
    return kept != DELEGATE_OK ? kept : rc;
}

/* take is the sender's hand-over of s: nothing while another is in
 * progress or the file is corked; a failure waits for the next call. */
static void take(struct stage *s)
{
    pthread_mutex_lock(&s->mu);
    if (s->busy || s->bufs == NULL || s->bufs[s->cur].used == 0 || (s->policy & DLG_STAGE_CORKED)) {
        pthread_mutex_unlock(&s->mu);
        return;
    }
    (void) hand_over(s, 1);     /* a failure is kept for the next call (hand) */
    pthread_mutex_unlock(&s->mu);
}

static void stage_free(struct stage *s)
{
    pthread_cond_destroy(&s->idle);
    pthread_mutex_destroy(&s->mu);
    free(s->bufs);
    free(s);
}

/* snapshot takes a reference on every stage of the table, so that they can
 * be used without table_mu (no lock across a call into Go); unref gives
 * them back, and frees those closed meanwhile. */
static int snapshot(struct stage **out)
{
    int n = 0;
    pthread_mutex_lock(&table_mu);
    for (int i = 0; i < STAGE_SLOTS; i++)
        if (table[i] != NULL) {
            table[i]->refs++;
            out[n++] = table[i];
        }
    pthread_mutex_unlock(&table_mu);
    return n;
}

static void unref(struct stage **st, int n)
{
    pthread_mutex_lock(&table_mu);
    for (int i = 0; i < n; i++)
        if (--st[i]->refs == 0 && st[i]->closed)
            stage_free(st[i]);
    pthread_mutex_unlock(&table_mu);
}

static void *sender(void *arg)
{
    static struct stage *snap[STAGE_SLOTS];     /* the sender's alone */
    int64_t last = 0;
    (void) arg;
    for (;;) {
        int n;
        pthread_mutex_lock(&sender_mu);
        while (!__atomic_load_n(&armed, __ATOMIC_SEQ_CST) && !sender_stopping)
            pthread_cond_wait(&sender_cv, &sender_mu);
        /* pacing: at most one round per pace(), but a stop ends the wait */
        while (!sender_stopping && now_ns() < last + pace() * 1000) {
            int64_t until = last + pace() * 1000;
            struct timespec t;
            clock_gettime(CLOCK_MONOTONIC, &t);
            t.tv_sec = until / 1000000000;
            t.tv_nsec = until % 1000000000;
            pthread_cond_timedwait(&sender_cv, &sender_mu, &t);
        }
        if (sender_stopping) {
            pthread_mutex_unlock(&sender_mu);
            return NULL;
        }
        pthread_mutex_unlock(&sender_mu);
        last = now_ns();
        /* Disarm before looking: a writer that stages after this sees 0
         * and arms again (it reads armed under its stage's lock). */
        __atomic_store_n(&armed, 0, __ATOMIC_SEQ_CST);
        n = snapshot(snap);
        for (int i = 0; i < n; i++)
            take(snap[i]);
        unref(snap, n);
    }
}

/* arm wakes the sender, starting it the first time. */
static void arm(void)
{
    pthread_mutex_lock(&sender_mu);
    __atomic_store_n(&armed, 1, __ATOMIC_SEQ_CST);
    if (!sender_started && !sender_stopping &&
        pthread_create(&sender_thread, NULL, sender, NULL) == 0)
        sender_started = 1;
    pthread_cond_signal(&sender_cv);
    pthread_mutex_unlock(&sender_mu);
}

void dlg_stage_stop(void)
{
    int started;
    pthread_mutex_lock(&sender_mu);
    started = sender_started;
    sender_stopping = 1;
    pthread_cond_signal(&sender_cv);
    pthread_mutex_unlock(&sender_mu);
    if (started)
        pthread_join(sender_thread, NULL);
    pthread_mutex_lock(&sender_mu);
    sender_started = 0;
    sender_stopping = 0;        /* a later delegate_init may start it again */
    pthread_mutex_unlock(&sender_mu);
}

void dlg_stage_open(int fh, int policy)
{
    struct stage *s;
    unsigned i = (unsigned) fh % STAGE_SLOTS;
    pthread_mutex_lock(&table_mu);
    if (table[i] == NULL && (s = calloc(1, sizeof(*s))) != NULL) {
        pthread_mutex_init(&s->mu, NULL);
        pthread_cond_init(&s->idle, NULL);
        s->fh = fh;
        s->policy = combine() ? policy : 0;
        __atomic_store_n(&table[i], s, __ATOMIC_RELEASE);
    }
    /* else: another open file holds the slot; this one goes without */
    pthread_mutex_unlock(&table_mu);
}

void dlg_stage_close(int fh)
{
    struct stage *s;
    /* Out of the table, only snapshots still reach it: the last frees it. */
    pthread_mutex_lock(&table_mu);
    s = find(fh);
    if (s != NULL) {
        __atomic_store_n(&table[(unsigned) fh % STAGE_SLOTS], NULL, __ATOMIC_RELEASE);
        s->closed = 1;
        if (s->refs == 0)
            stage_free(s);
    }
    pthread_mutex_unlock(&table_mu);
}

int dlg_stage_hand_over(int fh)
{
    struct stage *s = find(fh);
    int rc;
    if (s == NULL)
        return DELEGATE_OK;
    /* Nothing staged anywhere (the fence word counts every stage buffer
     * that holds data, busy ones included, until Go holds it) and no
     * failure kept: nothing to hand over, without the lock (a read of
     * 64 bytes costs about 0.3 us; the lock pair was a tenth of it). A
     * write staged by another thread that this one has not synchronized
     * with need not be seen; one it has, is counted in the word. */
    if (__atomic_load_n(&fence_word, __ATOMIC_ACQUIRE) == 0 &&
        __atomic_load_n(&s->err, __ATOMIC_ACQUIRE) == DELEGATE_OK)
        return DELEGATE_OK;
    pthread_mutex_lock(&s->mu);
    rc = send_locked(s);
    pthread_mutex_unlock(&s->mu);
    return rc;
}

int dlg_stage_hand_over_all(void)
{
    struct stage *snap[STAGE_SLOTS];
    int first = DELEGATE_OK, n = snapshot(snap);
    for (int i = 0; i < n; i++) {
        int rc;
        pthread_mutex_lock(&snap[i]->mu);
        rc = send_locked(snap[i]);
        pthread_mutex_unlock(&snap[i]->mu);
        if (first == DELEGATE_OK)
            first = rc;
    }
    unref(snap, n);
    return first;
}

long long *dlg_fence_word(void)
{
    return &fence_word;
}

long long *dlg_shared_word(void)
{
    return &shared_word;
}

int dlg_shared(void)
{
    return __atomic_load_n(&shared_word, __ATOMIC_ACQUIRE) != 0;
}

/* dlg_stage_hand_over_fence hands every stage's data to Go, like
 * dlg_stage_hand_over_all, but a failure stays with its file for its next call
 * (the fence has nobody to report it to). */
void dlg_stage_hand_over_fence(void)
{
    struct stage *snap[STAGE_SLOTS];
    int n = snapshot(snap);
    for (int i = 0; i < n; i++) {
        struct stage *s = snap[i];
        pthread_mutex_lock(&s->mu);
        (void) hand_over(s, 1);         /* kept for the file's next call (hand) */
        pthread_mutex_unlock(&s->mu);
    }
    unref(snap, n);
}

void dlg_stage_policy(int fh, int policy)
{
    struct stage *s = find(fh);
    if (s == NULL)
        return;
    pthread_mutex_lock(&s->mu);
    s->policy = combine() ? policy : 0;
    pthread_mutex_unlock(&s->mu);
}

int dlg_stage_write(int fh, const delegate_iov *mem, int64_t nmem, const delegate_extent *ext,
                    int64_t next, const delegate_io_opts *opts, int64_t *nbytes, int *rc)
{
    struct stage *s = find(fh);
    struct batch *b;
    int64_t total = 0, sum = 0;
    int was_empty;
    if (s == NULL || (opts != NULL && opts->flags != 0) || nmem < 1 || next < 1 || next > 64 ||
        mem == NULL || ext == NULL)
        return 0;
    for (int64_t i = 0; i < nmem; i++) {
        if (mem[i].len < 0 || (mem[i].len > 0 && mem[i].base == NULL))
            return 0;
        total += mem[i].len;
        if (total > STAGE_MAX_WRITE)
            return 0;
    }
    for (int64_t i = 0; i < next; i++) {
        if (ext[i].off < 0 || ext[i].len < 0 || ext[i].off > INT64_MAX - ext[i].len)
            return 0;
        sum += ext[i].len;
    }
    if (total == 0 || sum != total)
        return 0;               /* Go handles and reports the odd cases */
    pthread_mutex_lock(&s->mu);
    if (!(s->policy & DLG_STAGE_ON)) {
        pthread_mutex_unlock(&s->mu);
        return 0;
    }
    if (__atomic_load_n(&s->err, __ATOMIC_ACQUIRE) != DELEGATE_OK) {
        *rc = __atomic_exchange_n(&s->err, DELEGATE_OK, __ATOMIC_ACQ_REL);
        pthread_mutex_unlock(&s->mu);
        return 1;
    }
    if (s->bufs == NULL) {
        /* not zeroed: only used, next and what they cover are read */
        s->bufs = malloc(2 * sizeof(*s->bufs));
        if (s->bufs == NULL) {
            pthread_mutex_unlock(&s->mu);
            return 0;           /* through Go, as a file without a stage */
        }
        s->bufs[0].used = s->bufs[0].next = s->bufs[1].used = s->bufs[1].next = 0;
    }
    b = &s->bufs[s->cur];
    if (b->used + total > STAGE_BYTES || b->next + next > STAGE_EXTENTS) {
        *rc = send_locked(s);
        b = &s->bufs[s->cur];
        if (*rc != DELEGATE_OK) {
            pthread_mutex_unlock(&s->mu);
            return 1;
        }
    }
    was_empty = b->used == 0;
    if (was_empty)
        __atomic_add_fetch(&fence_word, 1, __ATOMIC_SEQ_CST);
    /* Copy 1 of 4 of a staged write (README, Performance: copies per
     * byte): the application's bytes into the stage; then into the ring
     * (client memCursor.gather), into the server's slot (extent place),
     * into the page cache (the flush's pwritev). */
    for (int64_t i = 0; i < nmem; i++) {
        memcpy(b->data + b->used, mem[i].base, (size_t) mem[i].len);
        b->used += mem[i].len;
    }
    for (int64_t i = 0; i < next; i++) {
        delegate_extent *last = b->next > 0 ? &b->ext[b->next - 1] : NULL;
        if (ext[i].len == 0)
            continue;
        if (last != NULL && last->off + last->len == ext[i].off)
            last->len += ext[i].len;    /* contiguous in the file and in data */
        else
            b->ext[b->next++] = ext[i];
    }
    if (was_empty && !(s->policy & DLG_STAGE_CORKED) &&
        !__atomic_load_n(&armed, __ATOMIC_SEQ_CST))
        arm();
    pthread_mutex_unlock(&s->mu);
    if (nbytes != NULL)
        *nbytes = total;
    *rc = DELEGATE_OK;
    return 1;
}

void dlg_stage_drop_all(void)
{
    pthread_mutex_lock(&table_mu);
    for (int i = 0; i < STAGE_SLOTS; i++) {
        struct stage *s = table[i];
        if (s == NULL)
            continue;
        __atomic_store_n(&table[i], NULL, __ATOMIC_RELEASE);
        s->closed = 1;
        if (s->refs == 0)
            stage_free(s);
    }
    pthread_mutex_unlock(&table_mu);
}
