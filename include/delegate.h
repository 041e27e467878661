/*
 * delegate.h: the C API of libdelegate, the client library of the delegate
 * I/O delegation service.
 *
 * libdelegate sends the description of each I/O (file, offset/length lists,
 * flags) to the delegate servers named by DELEGATE_SERVERS and moves the data
 * apart from it (a shared-memory ring on the same host). The ROMIO driver
 * adio_delegate is its main user, but any C program may call it.
 *
 * Conventions (they hold for every function below unless it says otherwise):
 *
 *  - Return values: DELEGATE_OK (0) on success, else one of the DELEGATE_E*
 *    codes listed with the function. Codes are portable across hosts; they are
 *    not errno values. delegate_strerror() names a code.
 *  - Handles: files and requests are small positive integers handed out by
 *    the library and numbered from a large base, so a stray integer is never a
 *    valid handle (DELEGATE_EBADF). 0 is never a handle.
 *  - Messages: after a failure, delegate_errmsg(handle, ...) returns a message
 *    that names the operation, the file and the server involved. Calls that
 *    take no handle (init, open, delete) record their message under
 *    DELEGATE_NOHANDLE, one per process.
 *  - Threads: every function is thread-safe. Operations on one file handle
 *    from several threads are applied in the order the library receives them.
 *  - Buffers: the library never keeps a pointer to caller memory after a
 *    blocking call returns. Nonblocking calls state what they keep.
 *  - Offsets and lengths are bytes, int64_t, never negative; off+len must not
 *    overflow (DELEGATE_EFBIG).
 *  - fork(): a child process may not use the library; every call there returns
 *    DELEGATE_EFORK without touching the Go runtime.
 *  - The library runs a Go runtime with GOMAXPROCS capped at 2 unless the
 *    GOMAXPROCS environment variable is set. Only one Go c-shared library can
 *    live in a process.
 *
 * Environment (read once, by delegate_init):
 *   DELEGATE_SERVERS      comma-separated server addresses: unix:/path or tcp:host:port
 *                         (a bare path means unix:, host:port means tcp:)
 *   DELEGATE_TOKEN        the job secret: proven to servers that require it by a
 *                         challenge-response, never sent (DELEGATE_TOKEN_FILE: a
 *                         file holding it)
 *   DELEGATE_TLS_CA       TLS on tcp: the CA to trust (a PEM file, or base64: and
 *                         the file's base64)
 *   DELEGATE_REGION_SIZE  default region size in bytes (suffixes K, M, G; default 1M),
 *                         when neither hints nor the backend's stripes give one
 *   DELEGATE_TIMEOUT      connect and liveness timeout (Go duration, default 5s)
 *   DELEGATE_SHM_SIZE     shared-memory ring per server (default 16M; 0 disables)
 *   DELEGATE_LOG_FD       file descriptor for the library's log (default: none)
 *   DELEGATE_COMBINE      0 turns off the combining of small writes (default 1)
 */
#ifndef DELEGATE_H_INCLUDED
#define DELEGATE_H_INCLUDED

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/** Version of this API; delegate_api_version() returns the library's. */
#define DELEGATE_API_VERSION 3

/** The handle under which calls without a handle record their error. */
#define DELEGATE_NOHANDLE 0

/* Return codes. Generated from internal/wire/codes.go by `go generate
 * ./internal/wire`; a test fails if the two drift apart. */
/* BEGIN GENERATED CODES */
#define DELEGATE_OK 0 /* success */
#define DELEGATE_EINVAL 1 /* invalid argument */
#define DELEGATE_EBADF 2 /* bad or closed handle */
#define DELEGATE_ENOMEM 3 /* out of memory */
#define DELEGATE_EACCES 4 /* permission denied */
#define DELEGATE_ENOENT 5 /* no such file or directory */
#define DELEGATE_EEXIST 6 /* file exists */
#define DELEGATE_EISDIR 7 /* is a directory */
#define DELEGATE_ENOTDIR 8 /* not a directory */
#define DELEGATE_ENAMETOOLONG 9 /* file name too long */
#define DELEGATE_EROFS 10 /* read-only file or file system */
#define DELEGATE_ENOSPC 11 /* no space left on device */
#define DELEGATE_EDQUOT 12 /* disk quota exceeded */
#define DELEGATE_EIO 13 /* input/output error */
#define DELEGATE_ENOSYS 14 /* operation not supported */
#define DELEGATE_EPATH 15 /* path outside the server's root */
#define DELEGATE_EUNREACHABLE 16 /* cannot reach a delegate server */
#define DELEGATE_ECONNLOST 17 /* connection to a delegate server lost */
#define DELEGATE_EPROTO 18 /* protocol error */
#define DELEGATE_ETIMEDOUT 19 /* timed out */
#define DELEGATE_EFORK 20 /* library used in a forked child */
#define DELEGATE_ECONFIG 21 /* invalid configuration */
#define DELEGATE_ENOTOWNER 22 /* server does not own the region (server lists differ) */
#define DELEGATE_EBUSY 23 /* resource busy */
#define DELEGATE_EFBIG 24 /* offset or size out of range */
#define DELEGATE_ESHUTDOWN 25 /* server is shutting down */
#define DELEGATE_ELOOP 26 /* too many levels of symbolic links */
#define DELEGATE_ERANGE 27 /* result does not fit the buffer */
#define DELEGATE_EAGAIN 28 /* not complete yet */
#define DELEGATE_EHINT 29 /* invalid hint value */
#define DELEGATE_EHINTKEY 30 /* unknown hint */
/* END GENERATED CODES */

/* Open flags (delegate_open). Exactly one of RDONLY, WRONLY, RDWR. */
#define DELEGATE_O_RDONLY 0x01
#define DELEGATE_O_WRONLY 0x02
#define DELEGATE_O_RDWR 0x04
#define DELEGATE_O_CREAT 0x08  /**< create the file if it does not exist */
#define DELEGATE_O_EXCL 0x10   /**< with CREAT: fail with DELEGATE_EEXIST if it exists */

/* I/O flags (delegate_io_opts.flags). */
#define DELEGATE_IO_ACK 0x01   /**< write: return only once the servers acknowledged */
/** This rank's part of collective call coll_seq (coll_* fields valid). After
 *  it the library sends every server an end marker; a server handles the
 *  rank's later requests once all coll_size ranks' markers arrived, so they
 *  see every rank's part. Every rank must make the call, with empty lists if
 *  it has nothing to transfer. */
#define DELEGATE_IO_COLL 0x02

/* Counter operations (delegate_counter). */
#define DELEGATE_COUNTER_GET 0
#define DELEGATE_COUNTER_SET 1
#define DELEGATE_COUNTER_FETCH_ADD 2

/** A piece of caller memory: len bytes at base. base is used exactly as
 *  given and never rejected for being NULL (MPI_BOTTOM plus an absolute
 *  displacement can be any address). */
typedef struct delegate_iov {
    void *base;
    int64_t len;
} delegate_iov;

/** A piece of a file: len bytes starting at byte off. */
typedef struct delegate_extent {
    int64_t off;
    int64_t len;
} delegate_extent;

/** A hint passed to delegate_open or delegate_set_hint. */
typedef struct delegate_hint {
    const char *key;
    const char *value;
} delegate_hint;

/** Options of one read or write; NULL means all zero. */
typedef struct delegate_io_opts {
    uint32_t flags;    /**< DELEGATE_IO_* */
    int32_t coll_rank; /**< collective: rank of the caller in the file's communicator */
    int32_t coll_size; /**< collective: size of that communicator */
    int32_t reserved;  /**< must be 0 */
    int64_t coll_seq;  /**< collective: sequence number of the collective on this file */
    int64_t coll_group; /**< collective: id shared by the ranks that opened the file
                         *   together (made by one rank and broadcast), so servers
                         *   can tell the pieces of one collective apart */
} delegate_io_opts;

/** @return DELEGATE_API_VERSION of the library (compare with the header's). */
int delegate_api_version(void);

/**
 * Reads the environment, connects to every server in DELEGATE_SERVERS and
 * checks that each answers. Idempotent: later calls return the first result
 * of a successful init; after a failure the next call tries again.
 * @return DELEGATE_OK, DELEGATE_ECONFIG (DELEGATE_SERVERS unset or malformed),
 *         DELEGATE_EUNREACHABLE (a server did not answer within DELEGATE_TIMEOUT;
 *         the message names its address), DELEGATE_EPROTO, DELEGATE_EACCES (token refused).
 */
int delegate_init(void);

/**
 * Closes every session. Files still open are closed first (their data is
 * flushed as by delegate_close). After it, delegate_init may be called again.
 * @return DELEGATE_OK or the first error of the implicit closes.
 */
int delegate_finalize(void);

/**
 * Copies the message of the last failure on handle into buf, always
 * NUL-terminated (if buflen > 0). delegate_close releases its handle even
 * when it fails; its message is then under DELEGATE_NOHANDLE.
 * @param[in] handle a file or request handle, or DELEGATE_NOHANDLE.
 * @return DELEGATE_OK, DELEGATE_ERANGE (truncated), DELEGATE_EBADF.
 */
int delegate_errmsg(int handle, char *buf, size_t buflen);

/** @return a static string naming code (never NULL). */
const char *delegate_strerror(int code);

/**
 * Opens path on every server. A relative path is resolved against the
 * caller's working directory. Calls delegate_init if needed.
 * @param[in] flags DELEGATE_O_*.
 * @param[in] perm  permission bits for a created file (0 means 0644).
 * @param[in] hints nhints hints (keys starting with "delegate_"); copied.
 * @param[out] fh   the new file handle.
 * @return DELEGATE_OK, DELEGATE_EINVAL (bad flags), DELEGATE_EHINTKEY
 *         (unknown delegate_* hint), DELEGATE_EHINT (bad hint value; the
 *         message names it), DELEGATE_EBUSY (the file is open elsewhere with
 *         another delegate_region_size),
 *         DELEGATE_ENOENT, DELEGATE_EEXIST, DELEGATE_EACCES,
 *         DELEGATE_EPATH, DELEGATE_EISDIR, DELEGATE_ENOTDIR, DELEGATE_EROFS,
 *         DELEGATE_ENAMETOOLONG, DELEGATE_EUNREACHABLE, DELEGATE_ECONNLOST,
 *         DELEGATE_ENOTOWNER, DELEGATE_ECONFIG, DELEGATE_EIO.
 */
int delegate_open(const char *path, int flags, int perm, const delegate_hint *hints,
                  int nhints, int *fh);

/**
 * Sends what is corked, waits until every write on fh is acknowledged, and
 * (unless the file's delegate_async_close hint is true) until the servers
 * have written the file's data to the backend. Releases fh even on error.
 * @return DELEGATE_OK or the first deferred write error on fh (any code).
 */
int delegate_close(int fh);

/**
 * Writes the bytes of mem[0..nmem) in order to the file pieces
 * ext[0..next) in order. The two lists must hold the same number of bytes.
 * Returns once the data has left the caller's memory (it may be reused), not
 * when the servers have it: a failure is reported by the next call on fh,
 * and at the latest by delegate_sync or delegate_close. With
 * DELEGATE_IO_ACK (or the delegate_write_ack=sync hint) it returns once the
 * servers acknowledged.
 * A small write (at most 4 KiB) without DELEGATE_IO_ACK, on a file not in
 * atomic mode, is copied into a buffer of the library and sent at once by
 * a background thread; while that thread hands a batch over, the next
 * writes gather. Any other call on fh sends the buffer first.
 * @param[in] opts may be NULL.
 * @param[out] nbytes bytes accepted (the list total on success); may be NULL.
 * @return DELEGATE_OK, DELEGATE_EINVAL (lengths differ, negative values),
 *         DELEGATE_EFBIG, DELEGATE_EBADF, DELEGATE_EROFS (file opened read-only),
 *         or a deferred error of an earlier write on fh.
 */
int delegate_write(int fh, const delegate_iov *mem, int64_t nmem, const delegate_extent *ext,
                   int64_t next, const delegate_io_opts *opts, int64_t *nbytes);

/**
 * Reads the file pieces ext[0..next) in order into mem[0..nmem) in order.
 * Sees every write acknowledged to any client before the call, and every
 * earlier write on fh. Holes read as zeros.
 * @param[out] nbytes bytes read before the end of file: the first *nbytes
 *         bytes of the list were filled, the rest of mem is untouched.
 * @return DELEGATE_OK (also at end of file), DELEGATE_EINVAL, DELEGATE_EFBIG,
 *         DELEGATE_EBADF, DELEGATE_ECONNLOST, DELEGATE_EIO, or a deferred error.
 */
int delegate_read(int fh, const delegate_iov *mem, int64_t nmem, const delegate_extent *ext,
                  int64_t next, const delegate_io_opts *opts, int64_t *nbytes);

/**
 * Nonblocking forms of delegate_write and delegate_read. The transfer starts
 * before the call returns and progresses in the library's own threads; no
 * further call is needed for progress. The mem and ext arrays are copied;
 * the memory they describe belongs to the library until the request
 * completes (delegate_test reports done or delegate_wait returns): do not
 * modify (write) or read (read) it before that.
 * A write request completes once the servers acknowledged it.
 * @param[out] req a request handle, to be released with delegate_request_free.
 * @return as delegate_write / delegate_read for errors found before the
 *         transfer starts; later errors are returned by test and wait.
 */
int delegate_iwrite(int fh, const delegate_iov *mem, int64_t nmem, const delegate_extent *ext,
                    int64_t next, const delegate_io_opts *opts, int *req);
int delegate_iread(int fh, const delegate_iov *mem, int64_t nmem, const delegate_extent *ext,
                   int64_t next, const delegate_io_opts *opts, int *req);

/**
 * Waits up to timeout_us microseconds for a request: a bounded test, for
 * progress loops that would otherwise spin (MPI_Wait polls a generalized
 * request in a loop).
 * @param[out] done 1 if complete, else 0.
 * @return as delegate_test.
 */
int delegate_wait_for(int req, int64_t timeout_us, int *done, int64_t *nbytes);

/**
 * Tests a request without blocking.
 * @param[out] done 1 if complete, else 0.
 * @param[out] nbytes when done: bytes written or read (see delegate_read).
 * @return DELEGATE_OK while pending or on success; when done, the request's
 *         error if it failed (message under req). DELEGATE_EBADF for a bad req.
 */
int delegate_test(int req, int *done, int64_t *nbytes);

/**
 * Waits for a request. Bounded: a dead or silent server ends the wait with
 * DELEGATE_ECONNLOST or DELEGATE_ETIMEDOUT.
 * @return as delegate_test when done.
 */
int delegate_wait(int req, int64_t *nbytes);

/** Releases a request handle. A pending request is waited for first.
 *  @return DELEGATE_OK or DELEGATE_EBADF. */
int delegate_request_free(int req);

/**
 * Makes every byte written through fh durable: sends what is corked, waits
 * for acknowledgements, and has the servers write and fsync the file's
 * buffered data before returning.
 * @return DELEGATE_OK, a deferred write error, DELEGATE_EIO, DELEGATE_ENOSPC, ...
 */
int delegate_sync(int fh);

/**
 * Returns once the servers have acknowledged every write issued on fh (sent
 * what is corked first): from then on every client's reads see them. Nothing
 * is forced to the backend; see delegate_sync for that.
 * @return DELEGATE_OK or a deferred write error.
 */
int delegate_flush(int fh);

/**
 * Logical size of the file: the largest of the backend size and every
 * server's buffered data.
 * @return DELEGATE_OK, DELEGATE_EBADF, DELEGATE_ECONNLOST, DELEGATE_EIO.
 */
int delegate_get_size(int fh, int64_t *size);

/** Truncates or extends the file to size; buffered data past size is dropped.
 *  Call it from one process: it acts on every server. */
int delegate_set_size(int fh, int64_t size);

/** Makes sure the file is at least size bytes, allocating backend blocks
 *  where the file system supports it. Never shrinks. */
int delegate_preallocate(int fh, int64_t size);

/**
 * Removes path (resolved as in delegate_open). Buffered data of the file on
 * the servers is discarded. Calls delegate_init if needed.
 * @return DELEGATE_OK, DELEGATE_ENOENT, DELEGATE_EACCES, DELEGATE_EPATH, ...
 */
int delegate_delete(const char *path);

/**
 * Cork: while corked, writes on fh are batched in the library and sent as
 * one message on delegate_uncork, sync, close, a read on fh, or when the
 * batch reaches delegate_cork_size bytes. Writes still return at once.
 * @return DELEGATE_OK or DELEGATE_EBADF.
 */
int delegate_cork(int fh);
int delegate_uncork(int fh);

/**
 * Sets a hint on an open file (delegate_cork, delegate_write_ack, ...).
 * @return DELEGATE_OK, DELEGATE_EHINTKEY (unknown key), DELEGATE_EHINT (bad
 *         value; the message names the hint), DELEGATE_ENOSYS (hint fixed at
 *         open), DELEGATE_EBADF.
 */
int delegate_set_hint(int fh, const char *key, const char *value);

/**
 * The effective value of a hint of an open file, or (fh ==
 * DELEGATE_NOHANDLE) its default.
 * @return DELEGATE_OK, DELEGATE_EHINTKEY (unknown key), DELEGATE_ERANGE, DELEGATE_EBADF.
 */
int delegate_get_hint(int fh, const char *key, char *buf, size_t buflen);

/** Name of the i-th hint the library knows, for enumeration.
 *  @return DELEGATE_OK, DELEGATE_ENOENT past the last, DELEGATE_ERANGE. */
int delegate_hint_name(int i, char *buf, size_t buflen);

/**
 * Atomic mode: while on, each write and read on fh is applied as one unit
 * with respect to every other atomic access to the same bytes.
 * @return DELEGATE_OK or DELEGATE_EBADF.
 */
int delegate_set_atomic(int fh, int atomic);

/**
 * An atomic 64-bit counter kept by the server that owns the file's first
 * region, named key and living while any client has the file open (the
 * shared file pointer of MPI-IO). op is DELEGATE_COUNTER_*; *old receives the
 * value before the operation. A new counter starts at 0.
 * @return DELEGATE_OK, DELEGATE_EINVAL, DELEGATE_EBADF, DELEGATE_ECONNLOST.
 */
int delegate_counter(int fh, const char *key, int op, int64_t value, int64_t *old);

/**
 * Sends the library's log (key=value lines) to fd, or discards it (fd < 0,
 * the default unless DELEGATE_LOG_FD is set). The library never closes fd.
 */
int delegate_set_log_fd(int fd);

/**
 * The visibility fence. Writes return before the servers acknowledge them;
 * this makes every write of this process that returned before the call
 * (staged in the library, corked, or in flight, on any file) applied by its
 * servers, so that any read issued afterwards, by any process on any host,
 * sees it. It sends what is staged or corked and waits for the
 * acknowledgements; with nothing outstanding it returns at once. The patched
 * MPICH calls it before every message leaves the process (and in
 * MPI_Win_sync), which is what makes write, barrier, read correct with
 * default hints. A failed write is not reported here but, as always, by the
 * next call on its file. Never hangs: a server that does not answer is
 * declared dead within DELEGATE_TIMEOUT plus its keepalive.
 * @return DELEGATE_OK, or the first error (the session of a server died).
 */
int delegate_fence(void);

/**
 * Scopes this thread's fences to the end of a collective write on fh, until
 * called again with DELEGATE_NOHANDLE. While it is set, delegate_fence does
 * not wait for the pieces and end markers of fh's last collective write
 * (delegate_io_opts.coll), and waits for everything else: a server answers
 * a rank's end marker, and serves the rank's later requests, only once
 * every rank's pieces are applied, and every later fence (outside the
 * scope) waits for this process's markers. For the messages of the
 * collective's own completion (the ROMIO driver's MPI_Allreduce), which
 * then need no round trip to the servers.
 * @return DELEGATE_OK.
 */
int delegate_fence_scope(int fh);

/**
 * Scopes this thread's fences to a close of fh that sends end markers (the
 * ROMIO driver's close of a file written through it, unless every rank
 * opened it with delegate_async_close), until delegate_fence_scope
 * (DELEGATE_NOHANDLE) is called. While it is set, delegate_fence sends what
 * is staged or corked and does not wait on fh's servers: each rank's close
 * is answered only once every rank's end markers came, after every
 * request the rank sent those servers before them, so no rank's close
 * returns before that is applied. It still waits on any other server.
 * For the messages of MPI_File_close's own barrier, which comes first.
 * @return DELEGATE_OK.
 */
int delegate_fence_scope_close(int fh);

/**
 * A word that is nonzero while this process may hold a write that
 * delegate_fence would wait for. Read it atomically (acquire); when it is 0
 * the fence has nothing to do, so a caller on a hot path (an MPI send) can
 * skip the call. Valid for the life of the process.
 */
const volatile long long *delegate_fence_word(void);

#ifdef __cplusplus
}
#endif
#endif /* DELEGATE_H_INCLUDED */
