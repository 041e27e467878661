/*
 * rawread: the least a network read of real data costs on this machine, a
 * yardstick for tests/netbench.sh beside iperf3. iperf3 sends the same
 * 128 KiB buffer again and again and receives into another: both stay in
 * the CPU's cache. A read of a file's data moves bytes that are in memory,
 * not in the cache, on both sides. rawread does only that, with nothing
 * else of delegate's: the client asks for PIECE bytes (a 16-byte request),
 * the server sendfile()s them from the file, and the client receives them
 * into its destination (a buffer of TOTAL bytes, each piece at its own
 * place, as a rank reading a file into its memory), one request at a time.
 *
 *   rawread serve ADDR PORT FILE     answers requests until the client leaves
 *   rawread read ADDR PORT TOTAL PIECE
 *                                    prints "MBps=N first_us=N" (first_us:
 *                                    the mean time from a request to its
 *                                    first byte)
 *
 * Not an MPI program (built with the others by mpicc).
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/sendfile.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

static void die(const char *what)
{
    perror(what);
    exit(1);
}

static double now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + t.tv_nsec / 1e9;
}

static struct sockaddr_in address(const char *host, const char *port)
{
    struct sockaddr_in a;
    memset(&a, 0, sizeof(a));
    a.sin_family = AF_INET;
    a.sin_port = htons((uint16_t) atoi(port));
    if (inet_pton(AF_INET, host, &a.sin_addr) != 1) {
        fprintf(stderr, "rawread: bad address %s\n", host);
        exit(2);
    }
    return a;
}

static int full(int fd, void *p, size_t n)
{
    char *b = p;
    while (n > 0) {
        ssize_t k = recv(fd, b, n, MSG_WAITALL);
        if (k < 0 && errno == EINTR)
            continue;
        if (k <= 0)
            return -1;
        b += k;
        n -= (size_t) k;
    }
    return 0;
}

static int serve(const char *host, const char *port, const char *path)
{
    struct sockaddr_in a = address(host, port);
    int one = 1, l = socket(AF_INET, SOCK_STREAM, 0), c, f;
    uint64_t req[2];
    if (l < 0 || setsockopt(l, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) < 0 ||
        bind(l, (struct sockaddr *) &a, sizeof(a)) < 0 || listen(l, 1) < 0)
        die("rawread: listen");
    if ((f = open(path, O_RDONLY)) < 0)
        die("rawread: open");
    printf("rawread: listening\n");
    fflush(stdout);
    if ((c = accept(l, NULL, NULL)) < 0)
        die("rawread: accept");
    while (full(c, req, sizeof(req)) == 0) {
        off_t off = (off_t) req[0];
        size_t n = (size_t) req[1];
        while (n > 0) {
            ssize_t k = sendfile(c, f, &off, n);
            if (k < 0 && errno == EINTR)
                continue;
            if (k <= 0)
                die("rawread: sendfile");
            n -= (size_t) k;
        }
    }
    return 0;
}

static int client(const char *host, const char *port, long total, long piece)
{
    struct sockaddr_in a = address(host, port);
    int c = socket(AF_INET, SOCK_STREAM, 0), one = 1;
    char *dst = malloc((size_t) total);
    double t0, first = 0;
    long calls = 0;
    if (c < 0 || dst == NULL)
        die("rawread: setup");
    memset(dst, 1, (size_t) total); /* touched, as a rank's memory is */
    for (int i = 0; connect(c, (struct sockaddr *) &a, sizeof(a)) < 0; i++) {
        if (i == 100)
            die("rawread: connect");
        usleep(50000); /* the server is not listening yet: retried, bounded */
        close(c);
        c = socket(AF_INET, SOCK_STREAM, 0);
    }
    setsockopt(c, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    t0 = now();
    for (long off = 0; off < total; off += piece, calls++) {
        uint64_t req[2] = { (uint64_t) off, (uint64_t) piece };
        double t1 = now();
        if (send(c, req, sizeof(req), 0) != sizeof(req) || full(c, dst + off, 1) < 0)
            die("rawread: request");
        first += now() - t1;
        if (full(c, dst + off + 1, (size_t) piece - 1) < 0)
            die("rawread: receive");
    }
    printf("rawread: MBps=%.0f first_us=%.0f\n", total / (now() - t0) / 1e6, first / calls * 1e6);
    free(dst);
    close(c);
    return 0;
}

int main(int argc, char **argv)
{
    if (argc == 5 && !strcmp(argv[1], "serve"))
        return serve(argv[2], argv[3], argv[4]);
    if (argc == 6 && !strcmp(argv[1], "read"))
        return client(argv[2], argv[3], atol(argv[4]), atol(argv[5]));
    fprintf(stderr, "usage: rawread serve ADDR PORT FILE | rawread read ADDR PORT TOTAL PIECE\n");
    return 2;
}
