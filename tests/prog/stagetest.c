/*
 * stagetest: the write combining of libdelegate (libdelegate/stage.c),
 * through the C API alone (no MPI). Run beside a server:
 *
 *   DELEGATE_SERVERS=... stagetest DIR
 *
 * 1. Small writes on one handle reach the servers by themselves: another
 *    process (this program run with --check) soon reads them without any
 *    further call on the first handle; and another handle of this process
 *    reads them at once (it fences first: delegate_fence).
 * 2. The same handle reads its own small writes at once.
 * 3. Order: small writes, then a large write over them, then small writes
 *    over that: the file holds the latest bytes everywhere.
 * 4. Corked: small writes stay in the client (another process sees the
 *    file empty) until uncork, then arrive intact; a read on the same
 *    handle, or any call on another handle of the file in this process,
 *    sends them too.
 * 5. A write that asks for an acknowledgement is not staged: once it
 *    returns, another handle sees it.
 * Prints "stagetest ok" or the first failure, and exits non-zero on one.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include "delegate.h"

static int failures;

#define CHECK(cond, ...) do { if (!(cond)) { fprintf(stderr, "stagetest: " __VA_ARGS__); fputc('\n', stderr); failures++; } } while (0)

static void must(int rc, const char *what, int fh)
{
    if (rc != DELEGATE_OK) {
        char msg[512] = "";
        delegate_errmsg(fh, msg, sizeof msg);
        fprintf(stderr, "stagetest: %s: %s (%s)\n", what, delegate_strerror(rc), msg);
        exit(1);
    }
}

static const char *self;       /* argv[0], run again as the other process */

/* other runs this program in another process (its own library, nothing
 * staged): "--check PATH OFF N GEN" exits 0 when the servers hold those
 * bytes, "--size PATH" prints the size they report. */
static int other(const char *args, char *out, size_t outlen)
{
    char cmd[8300];
    FILE *p;
    snprintf(cmd, sizeof cmd, "%s %s", self, args);
    if ((p = popen(cmd, "r")) == NULL)
        return -1;
    if (out != NULL && fgets(out, (int) outlen, p) == NULL)
        out[0] = '\0';
    return pclose(p);
}

static double now_s(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + t.tv_nsec * 1e-9;
}

static int wr(int fh, int64_t off, const void *p, int64_t n, uint32_t flags)
{
    delegate_iov iov = {(void *) p, n};
    delegate_extent e = {off, n};
    delegate_io_opts o;
    memset(&o, 0, sizeof o);
    o.flags = flags;
    return delegate_write(fh, &iov, 1, &e, 1, &o, NULL);
}

static void rd(int fh, int64_t off, void *p, int64_t n)
{
    delegate_iov iov = {p, n};
    delegate_extent e = {off, n};
    int64_t got;
    memset(p, 0, n);
    must(delegate_read(fh, &iov, 1, &e, 1, NULL, &got), "read", fh);
}

static int open_file(const char *path, int cork)
{
    delegate_hint h = {"delegate_cork", "true"};
    int fh;
    must(delegate_open(path, DELEGATE_O_RDWR | DELEGATE_O_CREAT, 0644, &h, cork ? 1 : 0, &fh),
         "open", 0);
    return fh;
}

static unsigned char pat(int64_t off, int gen)
{
    return (unsigned char) (off * 7 + gen * 31 + 1);
}

/* expect checks n bytes at off through handle fh against generation gen
 * (gen < 0: zeros). */
static void expect(int fh, int64_t off, int64_t n, int gen, const char *what)
{
    unsigned char *b = malloc(n);
    rd(fh, off, b, n);
    for (int64_t i = 0; i < n; i++) {
        unsigned char want = gen < 0 ? 0 : pat(off + i, gen);
        if (b[i] != want) {
            CHECK(0, "%s: byte %lld is %u, want %u", what, (long long) (off + i), b[i], want);
            break;
        }
    }
    free(b);
}

/* records writes n 64-byte records of generation gen at off, one call each. */
static void records(int fh, int64_t off, int n, int gen)
{
    unsigned char r[64];
    for (int i = 0; i < n; i++) {
        int64_t o = off + (int64_t) i * 64;
        for (int k = 0; k < 64; k++)
            r[k] = pat(o + k, gen);
        must(wr(fh, o, r, 64, 0), "write", fh);
    }
}

/* the other process's side of other() */
static int peer(int argc, char **argv)
{
    int fh;
    must(delegate_init(), "init", 0);
    must(delegate_open(argv[2], DELEGATE_O_RDONLY, 0, NULL, 0, &fh), "open", 0);
    if (strcmp(argv[1], "--size") == 0) {
        int64_t size;
        must(delegate_get_size(fh, &size), "get_size", fh);
        printf("%lld\n", (long long) size);
    } else if (argc == 6) {
        int64_t off = atoll(argv[3]), n = atoll(argv[4]);
        unsigned char *b = malloc(n);
        rd(fh, off, b, n);
        for (int64_t i = 0; i < n; i++)
            if (b[i] != pat(off + i, atoi(argv[5])))
                failures++;
        free(b);
    }
    must(delegate_close(fh), "close", fh);
    must(delegate_finalize(), "finalize", 0);
    return failures != 0;
}

int main(int argc, char **argv)
{
    char path[4096], args[4200], out[64];
    self = argv[0];
    if (argc >= 3 && strncmp(argv[1], "--", 2) == 0)
        return peer(argc, argv);
    if (argc != 2) {
        fprintf(stderr, "usage: stagetest DIR\n");
        return 2;
    }
    must(delegate_init(), "init", 0);

    /* 1 and 2 */
    snprintf(path, sizeof path, "%s/stage1", argv[1]);
    int a = open_file(path, 0), b = open_file(path, 0);
    records(a, 0, 100, 1);
    expect(a, 0, 6400, 1, "own read at once");
    records(a, 6400, 100, 1);
    /* the library's thread sends them at once: another process sees them
     * (each try is a new process, so the time they take is bounded: 10 s) */
    snprintf(args, sizeof args, "--check %s 0 12800 1", path);
    {
        double t0 = now_s();
        int seen = 0;
        while (!seen && now_s() - t0 < 10)
            seen = other(args, NULL, 0) == 0;
        CHECK(seen, "another process never saw the small writes (no further call on their handle)");
    }
    records(a, 12800, 100, 1);
    expect(b, 0, 19200, 1, "another handle of this process, at once");

    /* 3 */
    unsigned char *big = malloc(1 << 20);
    records(a, 0, 200, 2);
    for (int i = 0; i < (1 << 20); i++)
        big[i] = pat(i, 3);
    must(wr(a, 0, big, 1 << 20, 0), "large write", a);
    records(a, 64 * 10, 10, 4);
    must(delegate_sync(a), "sync", a);
    expect(b, 0, 640, 3, "large write over small ones");
    expect(b, 640, 640, 4, "small writes over the large one");
    expect(b, 1280, (1 << 20) - 1280, 3, "rest of the large write");
    must(delegate_close(a), "close", a);
    must(delegate_close(b), "close", b);

    /* 4 */
    snprintf(path, sizeof path, "%s/stage2", argv[1]);
    int c = open_file(path, 1), d = open_file(path, 0);
    int64_t size;
    records(c, 0, 300, 5);
    snprintf(args, sizeof args, "--size %s", path);
    other(args, out, sizeof out);
    CHECK(atoll(out) == 0, "corked writes reached the servers before uncork (another process sees size %s)", out);
    must(delegate_uncork(c), "uncork", c);
    other(args, out, sizeof out);
    CHECK(atoll(out) == 300 * 64, "after uncork another process sees size %s, want %d", out, 300 * 64);
    must(delegate_get_size(d, &size), "get_size", d);
    CHECK(size == 300 * 64, "after uncork the size is %lld, want %d", (long long) size, 300 * 64);
    expect(d, 0, 300 * 64, 5, "corked writes after uncork");
    must(delegate_cork(c), "cork", c);
    records(c, 300 * 64, 10, 7);
    expect(c, 300 * 64, 640, 7, "corked writes read on the same handle");
    expect(d, 300 * 64, 640, 7, "corked writes after a read on their handle");
    records(c, 400 * 64, 10, 8);
    expect(d, 400 * 64, 640, 8, "corked writes read through another handle of this process");

    /* 5 */
    unsigned char r[64];
    for (int k = 0; k < 64; k++)
        r[k] = pat(100000 + k, 6);
    must(wr(c, 100000, r, 64, DELEGATE_IO_ACK), "acknowledged write", c);
    expect(d, 100000, 64, 6, "acknowledged write");
    must(delegate_close(c), "close", c);
    must(delegate_close(d), "close", d);
    free(big);
    must(delegate_finalize(), "finalize", 0);
    if (failures == 0)
        printf("stagetest ok\n");
    return failures != 0;
}
