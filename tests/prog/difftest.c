/*
 * difftest: a seeded generator of random MPI-IO programs, for the
 * differential test (tests/differential.sh). The same command on a ufs:
 * path and on a delegate: path must leave byte-identical files and print
 * identical lines.
 *
 *   mpiexec -n N difftest SEED[:COUNT][,SEED[:COUNT]...] PATH [NOPS]
 *
 * SEED alone runs one program on PATH. SEED:COUNT runs seeds SEED ..
 * SEED+COUNT-1 one after the other, a comma list the seeds listed, each on
 * its own file PATH.<seed> (the prefix, e.g. "delegate:", is kept). NOPS
 * (default 40) is the number of generated steps; a program with NOPS=k is
 * exactly the first k steps of the program with more (the generator never
 * looks at NOPS), which is what the shrinker of tests/differential.sh
 * relies on.
 *
 * Every rank runs the same generator from SEED (one shared random stream),
 * so every rank knows the whole program, including what the other ranks
 * do; ranks differ only in the rank-dependent parts (their file type,
 * their part of a region, their memory type, their data). The program
 * covers: file views (displacement, etype byte/int/double, file types
 * contiguous, vector, hvector, indexed, hindexed and struct with
 * zero-length blocks, subarray, resized, interleaved between ranks or
 * shared), memory types (contiguous, vector with gaps, struct with gaps and
 * decreasing displacements, resized, hindexed with a zero-length block),
 * independent and collective reads and writes (explicit offsets,
 * individual pointer after seek SET/CUR or continuing, *_all, *_at_all,
 * split collectives, shared pointer: ordered and single-rank shared),
 * nonblocking batches (iread/iwrite, _at, _all, _at_all, several
 * outstanding, completed by Wait, Waitall, Waitany, Waitsome, Test,
 * Testany and Testsome loops, Testall), sizes from 0 bytes to 4 MiB, total
 * file size below 56 MiB, sync, set_size (grow and
 * shrink), preallocate, get_size, seek to the end, atomic mode, set_info,
 * close + reopen with other modes (rdwr, wronly, rdonly, append,
 * unique_open) and hints (ROMIO's and delegate_*), close + delete + create.
 *
 * Determinism (so that ufs: and delegate: must agree). The generator keeps
 * an "epoch": the accesses since the last sync-barrier-sync or plain
 * barrier (or close and reopen, set_size). Each access is recorded
 * as file byte ranges; a new step that would touch bytes another rank
 * writes in the epoch (or write bytes another rank reads) first ends the
 * epoch with sync-barrier-sync. Reads that may go past the end of file are
 * recorded as [offset, infinity) so that no write may move the end of file
 * under them. The generator knows every rank's exact file bytes (it
 * unpacks 0xff through each file type to find its blocks), so it knows the
 * exact file size at the start of each epoch.
 *
 * Beyond MPI's rules, ROMIO's own behaviour on ufs: is kept out, since ufs:
 * is the reference (each place says why):
 *  - strided and collective reads past EOF return stale bytes: such reads
 *    stay below the known size (contiguous independent reads may cross it);
 *  - data-sieving and two-phase writes fill the holes of their range past
 *    EOF with 0xff or stale bytes: a strided or collective write that
 *    extends the file covers its whole range;
 *  - file types with lb > 0 (ROMIO's flattening adds the lb once more), the
 *    naive strided write (romio_ds_write=disable, its pointer breaks the next
 *    strided read), MPI_Testall loops on aio requests (MPICH asserts), two
 *    nonblocking collectives in flight, a pointer request issued while a
 *    nonblocking collective is (ROMIO restores the pointer when it
 *    progresses), ordered and shared-pointer accesses without a barrier
 *    around them (ROMIO's token passing returns before the pointer is
 *    updated everywhere), seek to an end of file before the view.
 *
 * Read results are checked: every read's buffer (all of it, gaps included,
 * pre-filled with a pattern), MPI_Get_count/MPI_Get_elements of every
 * status, file positions, sizes, atomicity and amode go into a running
 * per-rank FNV-1a hash. At the end rank 0 prints one line per seed:
 *   difftest seed=S np=N nops=K size=Z hash=H0,H1,...
 * With DIFFTEST_TRACE=1 it first prints one line per step: the step's
 * description (identical on every rank) and each rank's hash after it, so
 * that two traces diverge at the first step that read something different.
 * DIFFTEST_TRACE=2 (debugging hangs) also prints every step as rank 0
 * starts it; DIFFTEST_TRACE=3 prints every value hashed, on stderr.
 * DIFFTEST_AVOID=async-reopen leaves out a known delegate problem (see
 * avoid_async below); it changes the programs.
 *
 * Any unexpected MPI error aborts with the seed, the step and the message.
 */
#include <mpi.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAXR 4
#define KiB 1024LL
#define MiB (1024LL * 1024)
#define MAXFILE (56 * MiB)      /* no access reaches beyond this */
#define BUDGET (12 * MiB)       /* bytes moved per seed before sizes stay small */
#define INF INT64_MAX
#define MAXOPS 20000

static int rank, np, allmask;
static unsigned long long g_seed;
static int trace;
/* DIFFTEST_AVOID=async-reopen: delegate_async_close only for the last close.
 * A file closed asynchronously and reopened while the servers still drain it
 * kept its region size (fixed in 44c8f76) and keeps its shared file pointer:
 * ROMIO names the pointer .<file>.shfp.<f(time in s)>.<pid>, the same for
 * two opens in one second, and the server's counter of that name lives as
 * long as the file's entry. */
static int avoid_async;
static long opi;                /* current step */
static char g_path[4200];

/* ---------------------------------------------------------------- rng */

static uint64_t rs;

static uint64_t mix64(uint64_t z)
{
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
    return z ^ (z >> 31);
}

static uint64_t rnext(void)
{
    rs += 0x9E3779B97F4A7C15ULL;
    return mix64(rs);
}

/* uniform in [lo, hi] */
static int64_t rr(int64_t lo, int64_t hi)
{
    if (hi <= lo)
        return lo;
    return lo + (int64_t) (rnext() % (uint64_t) (hi - lo + 1));
}

static int pct(int p)
{
    return (int) (rnext() % 100) < p;
}

static int pickw(const int *w, int n)
{
    int sum = 0, i, r;
    for (i = 0; i < n; i++)
        sum += w[i];
    r = (int) (rnext() % (uint64_t) sum);
    for (i = 0; i < n; i++) {
        if (r < w[i])
            return i;
        r -= w[i];
    }
    return n - 1;
}

/* ---------------------------------------------------------------- hash */

static uint64_t H;

static void hb(const void *p, size_t n)
{
    const unsigned char *b = p;
    uint64_t h = H;
    for (size_t i = 0; i < n; i++)
        h = (h ^ b[i]) * 1099511628211ULL;
    H = h;
    if (trace == 3 && n != sizeof(int64_t)) {
        fprintf(stderr, "hash rank %d step %ld: %zu bytes -> %016llx:", rank, opi, n,
                (unsigned long long) h);
        for (size_t i = 0; i < n && i < 24; i++)
            fprintf(stderr, " %02x", b[i]);
        fprintf(stderr, "\n");
    }
}

static void hu(int64_t v)
{
    hb(&v, sizeof(v));
    if (trace == 3)
        fprintf(stderr, "hash rank %d step %ld: value %lld\n", rank, opi, (long long) v);
}

/* write data: a function of (seed, step, sub-request, rank, byte index);
 * read buffers are pre-filled with a different pattern */
static void fill(unsigned char *b, size_t n, int sub, int isread)
{
    uint64_t base = mix64(g_seed * 0x100000001B3ULL ^ ((uint64_t) opi << 20) ^
                          ((uint64_t) sub << 8) ^ (uint64_t) rank ^ (isread ? 1ULL << 62 : 0));
    size_t i;
    for (i = 0; i + 8 <= n; i += 8) {
        uint64_t v = mix64(base + i);
        memcpy(b + i, &v, 8);
    }
    if (i < n) {
        uint64_t v = mix64(base + i);
        memcpy(b + i, &v, n - i);
    }
}

/* ---------------------------------------------------------------- trace */

static char desc[4096];
static size_t dlen;
static char **tr_desc;          /* rank 0: the description of every step */
static uint64_t *tr_hash;       /* every rank: its hash after every step */

static void D(const char *fmt, ...)
{
    va_list ap;
    if (dlen >= sizeof(desc) - 1)
        return;
    va_start(ap, fmt);
    int n = vsnprintf(desc + dlen, sizeof(desc) - dlen, fmt, ap);
    va_end(ap);
    if (n > 0)
        dlen += (size_t) n;
    if (dlen > sizeof(desc) - 1)
        dlen = sizeof(desc) - 1;
}

static void die(const char *what, int rc, int line)
{
    char msg[MPI_MAX_ERROR_STRING];
    int len = 0, cls = -1;
    if (rc != MPI_SUCCESS) {
        MPI_Error_class(rc, &cls);
        MPI_Error_string(rc, msg, &len);
    } else
        snprintf(msg, sizeof(msg), "generator check failed");
    fprintf(stderr, "difftest: seed %llu step %ld: rank %d: %s (difftest.c:%d): class %d: %s\n"
            "difftest: step %ld was: %s\n", g_seed, opi, rank, what, line, cls, msg, opi, desc);
    fflush(stderr);
    MPI_Abort(MPI_COMM_WORLD, 3);
}

#define CHK(x) do { int rc_ = (x); if (rc_ != MPI_SUCCESS) die(#x, rc_, __LINE__); } while (0)
#define ASSERT(c) do { if (!(c)) die("assertion " #c, MPI_SUCCESS, __LINE__); } while (0)

/* ---------------------------------------------------------------- etypes */

static MPI_Datatype ET[3];
static const int ES[3] = { 1, 4, 8 };
static const char *EN[3] = { "byte", "int", "dbl" };

static void tfree(MPI_Datatype * t)
{
    if (*t != MPI_DATATYPE_NULL) {
        int ni, na, nd, comb;
        MPI_Type_get_envelope(*t, &ni, &na, &nd, &comb);
        if (comb != MPI_COMBINER_NAMED)
            MPI_Type_free(t);
    }
    *t = MPI_DATATYPE_NULL;
}

/* ---------------------------------------------------------------- views */

enum { F_CONTIG, F_VECTOR, F_HVECTOR, F_INDEXED, F_HINDEXED, F_STRUCT, F_SUBARRAY, F_N };
static const char *FN[F_N] = { "contig", "vector", "hvector", "indexed", "hindexed", "struct",
    "subarray"
};

typedef struct {
    int fam, et, es, inter, dense;
    int64_t lb, extent;         /* tile window [lb, lb+extent) of every rank's type */
    int64_t disp[MAXR], size[MAXR];
    int nb[MAXR];
    int64_t *boff[MAXR], *blen[MAXR], *bpre[MAXR];      /* blocks of one tile, sorted */
    MPI_Datatype ft;            /* this rank's file type */
    char d[200];
} view_t;

static view_t *views;
static int nviews, capviews;

#define MAXSEG 48
typedef struct {
    int fam, et, inter, shiftdisp, dense, hv;
    int ck;                     /* contig */
    int cnt, bl, gap;           /* vector */
    int nseg, period, lbl, segoff[MAXSEG], seglen[MAXSEG], segown[MAXSEG], zpos[MAXR];
    int nd, order, sdim, gs[3], sub[3], st[3], split[MAXR + 1];     /* subarray */
} vparams;

static MPI_Datatype build_ft(const vparams * p, int r, int64_t * dshift)
{
    MPI_Datatype e = ET[p->et], t = MPI_DATATYPE_NULL, t2, t3;
    int es = ES[p->et], nr = p->inter ? np : 1;
    *dshift = 0;
    switch (p->fam) {
        case F_CONTIG:
            if (p->ck == 1)
                return e;
            CHK(MPI_Type_contiguous(p->ck, e, &t));
            break;
        case F_VECTOR:
        case F_HVECTOR:{
                int stride = nr * p->bl + p->gap;
                MPI_Aint ext = (MPI_Aint) p->cnt * stride * es;
                if (p->fam == F_VECTOR)
                    CHK(MPI_Type_vector(p->cnt, p->bl, stride, e, &t2));
                else
                    CHK(MPI_Type_create_hvector(p->cnt, p->bl, (MPI_Aint) stride * es, e, &t2));
                if (p->inter && p->shiftdisp)
                    *dshift = (int64_t) r *p->bl * es;
                if (p->inter && !p->shiftdisp) {
                    int one = 1;
                    MPI_Aint d = (MPI_Aint) r * p->bl * es;
                    CHK(MPI_Type_create_struct(1, &one, &d, &t2, &t3));
                    MPI_Type_free(&t2);
                    t2 = t3;
                }
                CHK(MPI_Type_create_resized(t2, 0, ext, &t));
                MPI_Type_free(&t2);
                break;
            }
        case F_INDEXED:
        case F_HINDEXED:
        case F_STRUCT:{
                int lens[MAXSEG + 1], displs[MAXSEG + 1], n = 0, k;
                MPI_Aint bd[MAXSEG + 1];
                MPI_Datatype types[MAXSEG + 1];
                for (k = 0; k < p->nseg; k++) {
                    if (p->segown[k] != (p->inter ? r : 0))
                        continue;
                    if (p->zpos[r] == n) {      /* a zero-length block here */
                        lens[n] = 0;
                        displs[n] = p->segoff[k];
                        n++;
                    }
                    lens[n] = p->seglen[k];
                    displs[n] = p->segoff[k];
                    n++;
                }
                if (p->zpos[r] >= n) {  /* at the end */
                    lens[n] = 0;
                    displs[n] = n > 0 ? displs[n - 1] + lens[n - 1] : 0;
                    n++;
                }
                for (k = 0; k < n; k++) {
                    bd[k] = (MPI_Aint) displs[k] * es;
                    types[k] = e;
                }
                if (p->fam == F_INDEXED)
                    CHK(MPI_Type_indexed(n, lens, displs, e, &t2));
                else if (p->fam == F_HINDEXED)
                    CHK(MPI_Type_create_hindexed(n, lens, bd, e, &t2));
                else
                    CHK(MPI_Type_create_struct(n, lens, bd, types, &t2));
                CHK(MPI_Type_create_resized(t2, (MPI_Aint) p->lbl * es,
                                            (MPI_Aint) p->period * es, &t));
                MPI_Type_free(&t2);
                break;
            }
        case F_SUBARRAY:{
                int sub[3], st[3], d;
                for (d = 0; d < p->nd; d++) {
                    sub[d] = p->sub[d];
                    st[d] = p->st[d];
                }
                if (p->inter) {
                    sub[p->sdim] = p->split[r + 1] - p->split[r];
                    st[p->sdim] = p->split[r];
                }
                CHK(MPI_Type_create_subarray(p->nd, p->gs, sub, st, p->order, e, &t));
                break;
            }
    }
    CHK(MPI_Type_commit(&t));
    return t;
}

/* The data bytes of one tile of type t, as sorted blocks (offsets relative
 * to the tile's origin), found by unpacking 0xff bytes through t. */
static void type_blocks(view_t * v, int r, MPI_Datatype t)
{
    MPI_Aint lb, ext, tlb, text;
    int sz, pos = 0, n = 0, cap = 16;
    CHK(MPI_Type_get_extent(t, &lb, &ext));
    CHK(MPI_Type_get_true_extent(t, &tlb, &text));
    CHK(MPI_Type_size(t, &sz));
    ASSERT(tlb >= 0 && sz > 0 && lb == v->lb && ext == v->extent);
    ASSERT(tlb >= lb && tlb + text <= lb + ext);
    int64_t span = tlb + text;
    unsigned char *m = calloc((size_t) span, 1), *src = malloc((size_t) sz);
    memset(src, 0xff, (size_t) sz);
    CHK(MPI_Unpack(src, sz, &pos, m, 1, t, MPI_COMM_SELF));
    v->boff[r] = malloc(cap * sizeof(int64_t));
    v->blen[r] = malloc(cap * sizeof(int64_t));
    for (int64_t i = 0; i < span;) {
        if (!m[i]) {
            i++;
            continue;
        }
        int64_t j = i;
        while (j < span && m[j])
            j++;
        if (n == cap) {
            cap *= 2;
            v->boff[r] = realloc(v->boff[r], cap * sizeof(int64_t));
            v->blen[r] = realloc(v->blen[r], cap * sizeof(int64_t));
        }
        v->boff[r][n] = i;
        v->blen[r][n] = j - i;
        n++;
        i = j;
    }
    v->nb[r] = n;
    v->bpre[r] = malloc((n + 1) * sizeof(int64_t));
    int64_t s = 0;
    for (int k = 0; k < n; k++) {
        v->bpre[r][k] = s;
        s += v->blen[r][k];
    }
    v->bpre[r][n] = s;
    ASSERT(s == sz);
    v->size[r] = sz;
    free(m);
    free(src);
}

/* file offset of data byte p of rank r's view */
static int64_t vpos(const view_t * v, int r, int64_t p)
{
    int64_t t = p / v->size[r], q = p % v->size[r];
    int lo = 0, hi = v->nb[r] - 1;
    while (lo < hi) {
        int mid = (lo + hi + 1) / 2;
        if (v->bpre[r][mid] <= q)
            lo = mid;
        else
            hi = mid - 1;
    }
    return v->disp[r] + t * v->extent + v->boff[r][lo] + (q - v->bpre[r][lo]);
}

/* number of data bytes of rank r's view at file offsets below x */
static int64_t vbelow(const view_t * v, int r, int64_t x)
{
    int64_t rel = x - v->disp[r] - v->lb;
    if (rel <= 0)
        return 0;
    int64_t t = rel / v->extent, q = rel % v->extent + v->lb, c = t * v->size[r];
    int lo = 0, hi = v->nb[r] - 1;
    if (v->boff[r][0] >= q)
        return c;
    while (lo < hi) {           /* last block starting below q */
        int mid = (lo + hi + 1) / 2;
        if (v->boff[r][mid] < q)
            lo = mid;
        else
            hi = mid - 1;
    }
    int64_t in = q - v->boff[r][lo];
    return c + v->bpre[r][lo] + (in < v->blen[r][lo] ? in : v->blen[r][lo]);
}

static int view_contig(const view_t * v)
{
    return v->fam == F_CONTIG;
}

static void view_desc(view_t * v, const vparams * p)
{
    char *s = v->d;
    size_t n = sizeof(v->d);
    int k = snprintf(s, n, "%s%s(%s", FN[p->fam], p->inter ? "/inter" : "", EN[p->et]);
    switch (p->fam) {
        case F_CONTIG:
            k += snprintf(s + k, n - k, ",%d", p->ck);
            break;
        case F_VECTOR:
        case F_HVECTOR:
            k += snprintf(s + k, n - k, ",c%d,b%d,g%d%s", p->cnt, p->bl, p->gap,
                          p->inter ? (p->shiftdisp ? ",shift" : ",wrap") : "");
            break;
        case F_INDEXED:
        case F_HINDEXED:
        case F_STRUCT:
            k += snprintf(s + k, n - k, ",%dseg,P%d,lb%d", p->nseg, p->period, p->lbl);
            break;
        case F_SUBARRAY:
            k += snprintf(s + k, n - k, ",%dd,%c,split%d,g%dx%dx%d", p->nd,
                          p->order == MPI_ORDER_C ? 'C' : 'F', p->sdim, p->gs[0], p->gs[1],
                          p->nd > 2 ? p->gs[2] : 1);
            break;
    }
    snprintf(s + k, n - k, ")@%lld%s", (long long) v->disp[0], p->dense ? ",dense" : "");
}

/* A new view at displacement disp. common: every rank the same type. */
static int new_view(int64_t disp, int common, int prefer_dense)
{
    static const int fw[F_N] = { 26, 16, 6, 12, 10, 14, 16 };
    static const int ew[3] = { 50, 30, 20 };
    vparams p;
    memset(&p, 0, sizeof(p));
    p.fam = pickw(fw, F_N);
    p.et = pickw(ew, 3);
    p.inter = p.fam != F_CONTIG && !common && np > 1 && pct(65);
    p.dense = p.inter && pct(50);
    if (prefer_dense && pct(70)) {
        /* beyond the end of file: strided writes must cover their range */
        if (common || np == 1 || pct(50)) {
            p.fam = F_CONTIG;
            p.inter = p.dense = 0;
        } else {
            if (p.fam == F_CONTIG)
                p.fam = F_VECTOR;
            p.inter = p.dense = 1;
        }
    }
    int nr = p.inter ? np : 1, es = ES[p.et], k;
    for (k = 0; k < MAXR; k++)
        p.zpos[k] = -1;
    switch (p.fam) {
        case F_CONTIG:
            p.ck = pct(40) ? 1 : (int) rr(2, 64);
            break;
        case F_VECTOR:
        case F_HVECTOR:
            p.cnt = (int) rr(1, 8);
            p.bl = (int) rr(1, pct(20) ? 64 : 8);
            p.gap = p.dense ? 0 : (int) rr(p.inter ? 0 : 1, 8);
            p.shiftdisp = pct(50);
            break;
        case F_INDEXED:
        case F_HINDEXED:
        case F_STRUCT:{
                int pos = 0;
                p.nseg = (int) rr(nr, nr == 1 ? 8 : 4 * nr);
                if (p.nseg > MAXSEG)
                    p.nseg = MAXSEG;
                int lead = p.dense ? 0 : (int) rr(0, 3);
                pos = lead;
                for (k = 0; k < p.nseg; k++) {
                    if (k > 0 && !p.dense)
                        pos += (int) rr(nr == 1 ? 1 : 0, 3);
                    p.segoff[k] = pos;
                    p.seglen[k] = (int) rr(1, pct(15) ? 40 : 6);
                    pos += p.seglen[k];
                    p.segown[k] = p.inter ? (k < nr ? k : (int) rr(0, nr - 1)) : 0;
                }
                if (p.inter && pct(50)) {       /* not always rank order */
                    for (k = nr - 1; k > 0; k--) {
                        int j = (int) rr(0, k), tmp = p.segown[k];
                        p.segown[k] = p.segown[j];
                        p.segown[j] = tmp;
                    }
                }
                p.period = pos + (p.dense ? 0 : (int) rr(0, 3));
                /* resized with lb 0 only: ROMIO's flattened list of a file
                 * type with lb > 0 puts its data at disp + lb + displacement
                 * (one lb more than the typemap says), in both drivers; the
                 * size rules here follow the typemap */
                p.lbl = 0;
                (void) lead;
                for (k = 0; k < nr; k++)
                    p.zpos[k] = pct(35) ? (int) rr(0, 4) : -1;
                break;
            }
        case F_SUBARRAY:
            p.nd = (int) rr(2, 3);
            p.order = pct(50) ? MPI_ORDER_C : MPI_ORDER_FORTRAN;
            p.sdim = (int) rr(0, p.nd - 1);
            for (k = 0; k < p.nd; k++)
                p.gs[k] = (int) rr(1, 8);
            if (p.inter) {
                p.gs[p.sdim] = (int) rr(nr, 3 * nr);
                p.split[0] = 0;
                for (k = 1; k < nr; k++)        /* uneven, every part at least 1 */
                    p.split[k] = (int) rr(p.split[k - 1] + 1, p.gs[p.sdim] - (nr - k));
                p.split[nr] = p.gs[p.sdim];
                for (k = 0; k < p.nd; k++) {
                    p.sub[k] = p.gs[k];
                    p.st[k] = 0;
                }
            } else {
                for (k = 0; k < p.nd; k++) {
                    p.sub[k] = (int) rr(1, p.gs[k]);
                    p.st[k] = (int) rr(0, p.gs[k] - p.sub[k]);
                }
            }
            break;
    }

    if (nviews == capviews) {
        capviews = capviews ? 2 * capviews : 64;
        views = realloc(views, capviews * sizeof(view_t));
    }
    view_t *v = &views[nviews];
    memset(v, 0, sizeof(*v));
    v->fam = p.fam;
    v->et = p.et;
    v->es = es;
    v->inter = p.inter;
    v->dense = p.dense;
    v->ft = MPI_DATATYPE_NULL;
    /* tile window */
    switch (p.fam) {
        case F_CONTIG:
            v->lb = 0;
            v->extent = (int64_t) p.ck * es;
            break;
        case F_VECTOR:
        case F_HVECTOR:
            v->lb = 0;
            v->extent = (int64_t) p.cnt * (nr * p.bl + p.gap) * es;
            break;
        case F_INDEXED:
        case F_HINDEXED:
        case F_STRUCT:
            v->lb = (int64_t) p.lbl * es;
            v->extent = (int64_t) p.period * es;
            break;
        case F_SUBARRAY:
            v->lb = 0;
            v->extent = (int64_t) p.gs[0] * p.gs[1] * (p.nd > 2 ? p.gs[2] : 1) * es;
            break;
    }
    unsigned char *cover = calloc((size_t) (v->lb + v->extent), 1);
    for (int r = 0; r < np; r++) {
        int64_t shift;
        int rr_ = p.inter ? r : 0;
        MPI_Datatype t = build_ft(&p, rr_, &shift);
        v->disp[r] = disp + shift;
        type_blocks(v, r, t);
        if (p.inter || r == 0) {        /* interleaved types must be disjoint */
            for (int b = 0; b < v->nb[r]; b++)
                for (int64_t i = 0; i < v->blen[r][b]; i++) {
                    int64_t o = v->boff[r][b] + i + shift;
                    ASSERT(o < v->lb + v->extent);
                    ASSERT(!cover[o]);
                    cover[o] = 1;
                }
        }
        if (r == rank)
            v->ft = t;
        else
            tfree(&t);
    }
    if (p.dense) {
        for (int64_t i = v->lb; i < v->lb + v->extent; i++)
            ASSERT(cover[i]);
    }
    free(cover);
    view_desc(v, &p);
    if (trace == 3 && rank == 0) {
        fprintf(stderr, "view %d: %s lb %lld extent %lld blocks", nviews, v->d, (long long) v->lb,
                (long long) v->extent);
        for (int b = 0; b < v->nb[0]; b++)
            fprintf(stderr, " %lld+%lld", (long long) v->boff[0][b], (long long) v->blen[0][b]);
        fprintf(stderr, "\n");
    }
    return nviews++;
}

/* ---------------------------------------------------------------- memory types */

enum { M_BASIC, M_CONTIG, M_VECTOR, M_STRUCT, M_RESIZED, M_HIDX, M_N };
static const char *MN[M_N] = { "basic", "contig", "vector", "struct", "resized", "hidx" };

typedef struct {
    int fam, u, k, cnt, bl, stride, nf, flen[3], fdisp[3], ext, rev, wrap;
} mparams;

typedef struct {
    MPI_Datatype t;
    int64_t size, extent, tlb, tub;
    int contig;
} mtype;

static void draw_mparams(mparams * m, int et, int64_t want, int forcecontig)
{
    static const int w[M_N] = { 30, 14, 18, 20, 10, 8 };
    memset(m, 0, sizeof(*m));
    m->fam = forcecontig ? (pct(50) ? M_BASIC : M_CONTIG) : pickw(w, M_N);
    if (want > 256 * KiB && !forcecontig && pct(75))
        m->fam = M_BASIC;
    m->u = et != 0 ? et : (int) rr(0, 2);
    int us = ES[m->u];
    m->k = (int) rr(2, 6);
    switch (m->fam) {
        case M_VECTOR:
            m->cnt = (int) rr(2, 6);
            m->bl = (int) rr(1, 4);
            m->stride = m->bl + (int) rr(1, 3);
            m->ext = pct(40) ? (int) rr(1, 3) * us : 0;        /* extra trailing gap */
            break;
        case M_STRUCT:{
                int pos = (int) rr(0, 2) * us;
                m->nf = (int) rr(2, 3);
                for (int i = 0; i < m->nf; i++) {
                    m->flen[i] = (int) rr(1, 4);
                    m->fdisp[i] = pos;
                    pos += m->flen[i] * us + (int) rr(1, 3) * us;
                }
                m->ext = pos + (int) rr(0, 2) * us;
                m->rev = pct(30);
                break;
            }
        case M_RESIZED:
            m->ext = m->k * us + (int) rr(1, 16);
            break;
        case M_HIDX:
            m->flen[0] = (int) rr(1, 4);
            m->flen[1] = (int) rr(1, 4);
            m->fdisp[0] = 0;
            m->fdisp[1] = (m->flen[0] + (int) rr(1, 3)) * us;
            break;
    }
}

static void build_mtype(const mparams * m, int et, mtype * mt)
{
    MPI_Datatype u = ET[m->u], t = MPI_DATATYPE_NULL, t2;
    int us = ES[m->u];
    switch (m->fam) {
        case M_BASIC:
            t = u;
            break;
        case M_CONTIG:
            CHK(MPI_Type_contiguous(m->k, u, &t));
            break;
        case M_VECTOR:
            CHK(MPI_Type_vector(m->cnt, m->bl, m->stride, u, &t));
            if (m->ext) {
                MPI_Aint lb, ext;
                MPI_Type_get_extent(t, &lb, &ext);
                CHK(MPI_Type_create_resized(t, 0, ext + m->ext, &t2));
                MPI_Type_free(&t);
                t = t2;
            }
            break;
        case M_STRUCT:{
                int lens[3];
                MPI_Aint d[3];
                MPI_Datatype ty[3];
                for (int i = 0; i < m->nf; i++) {
                    int j = m->rev ? m->nf - 1 - i : i;
                    lens[i] = m->flen[j];
                    d[i] = m->fdisp[j];
                    ty[i] = u;
                }
                CHK(MPI_Type_create_struct(m->nf, lens, d, ty, &t2));
                CHK(MPI_Type_create_resized(t2, 0, m->ext, &t));
                MPI_Type_free(&t2);
                break;
            }
        case M_RESIZED:
            CHK(MPI_Type_contiguous(m->k, u, &t2));
            CHK(MPI_Type_create_resized(t2, 0, m->ext, &t));
            MPI_Type_free(&t2);
            break;
        case M_HIDX:{
                int lens[3] = { m->flen[0], 0, m->flen[1] };
                MPI_Aint d[3] = { m->fdisp[0], m->fdisp[1], m->fdisp[1] };
                CHK(MPI_Type_create_hindexed(3, lens, d, u, &t));
                break;
            }
    }
    (void) us;
    int sz;
    MPI_Type_size(t, &sz);
    if (sz % ES[et] != 0) {     /* whole etypes per element */
        int a = sz, b = ES[et];
        while (b) {
            int c = a % b;
            a = b;
            b = c;
        }
        CHK(MPI_Type_contiguous(ES[et] / a, t, &t2));
        tfree(&t);
        t = t2;
    }
    if (t != u)
        CHK(MPI_Type_commit(&t));
    MPI_Aint lb, ext, tlb, text;
    MPI_Type_size(t, &sz);
    MPI_Type_get_extent(t, &lb, &ext);
    MPI_Type_get_true_extent(t, &tlb, &text);
    mt->t = t;
    mt->size = sz;
    mt->extent = ext;
    mt->tlb = tlb;
    mt->tub = tlb + text;
    mt->contig = (m->fam == M_BASIC || m->fam == M_CONTIG);
    ASSERT(tlb >= 0 && sz > 0);
}

/* ---------------------------------------------------------------- the file and the epoch */

static MPI_File fh = MPI_FILE_NULL;
static int rd_ok, wr_ok, atomic_on, cur_vid;
static int64_t sz0;             /* exact size at the start of the epoch (raised by preallocate) */
static int64_t ep_max;          /* exact size once the epoch's writes are done */
static int64_t ptr[MAXR];       /* individual pointers, data bytes of the view */
static int ptr_known;
static int64_t sp;              /* shared pointer, data bytes of the view */
static int sp_known;
static int64_t budget;
static int next_accid = 1;

typedef struct {
    int64_t lo, hi;
    int w, rmask, coll, accid;
} ent_t;
static ent_t *ents;
static int nents, capents;

static int popc(int m)
{
    return __builtin_popcount((unsigned) m);
}

static int conflicts(const ent_t * a, const ent_t * b, int strict)
{
    if (!a->w && !b->w)
        return 0;
    if (!strict) {
        if (a->accid && a->accid == b->accid && a->coll == b->coll)
            return 0;
        if (!a->coll && !b->coll && a->rmask == b->rmask && popc(a->rmask) == 1)
            return 0;
    }
    return a->lo < b->hi && b->lo < a->hi;
}

static void add_ent(ent_t e)
{
    if (nents == capents) {
        capents = capents ? 2 * capents : 256;
        ents = realloc(ents, capents * sizeof(ent_t));
    }
    ents[nents++] = e;
}

static int epoch_conflict(const ent_t * e, int n)
{
    for (int i = 0; i < n; i++)
        for (int j = 0; j < nents; j++)
            if (conflicts(&e[i], &ents[j], 0))
                return 1;
    return 0;
}

/* a recent write access that may be repeated (rewrite or read-own) */
typedef struct {
    int vid, coll, act, accid;
    int64_t a[MAXR], n[MAXR];
} recent_t;
#define NRECENT 16
static recent_t recent[NRECENT];
static int nrecent;

static void epoch_clear(void)
{
    nents = 0;
    sz0 = ep_max;
}

static void step_sync(const char *why)
{
    D("%s", why);
    CHK(MPI_File_sync(fh));
    CHK(MPI_Barrier(MPI_COMM_WORLD));
    CHK(MPI_File_sync(fh));
    epoch_clear();
}

/* ends the epoch: sync-barrier-sync, or in atomic mode sometimes a barrier;
 * with a read-only file there is nothing to sync. Often a plain barrier
 * without sync: what a rank wrote before it is read by the others after it
 * (POSIX on ufs:; delegate's fence, tests/visibility.sh), so the steps
 * that follow read other ranks' fresh data with no sync at all. */
static void boundary(void)
{
    if (!wr_ok) {
        D("[barrier] ");
        CHK(MPI_Barrier(MPI_COMM_WORLD));
        epoch_clear();
    } else if (atomic_on && pct(50)) {
        D("[atomic barrier] ");
        CHK(MPI_Barrier(MPI_COMM_WORLD));
        epoch_clear();
    } else if (pct(50)) {
        D("[barrier, no sync] ");
        CHK(MPI_Barrier(MPI_COMM_WORLD));
        epoch_clear();
    } else
        step_sync("[sync-barrier-sync] ");
}

static void set_view(int vid)
{
    view_t *v = &views[vid];
    CHK(MPI_File_set_view(fh, v->disp[rank], ET[v->et], v->ft, "native", MPI_INFO_NULL));
    cur_vid = vid;
    for (int r = 0; r < MAXR; r++)
        ptr[r] = 0;
    ptr_known = 1;
    sp = 0;
    sp_known = 1;
    D("setview %s; ", v->d);
}

static void hash_position(void)
{
    MPI_Offset p, b;
    CHK(MPI_File_get_position(fh, &p));
    CHK(MPI_File_get_byte_offset(fh, p, &b));
    hu(p);
    hu(b);
}

static void hash_status(MPI_Status * st, MPI_Datatype t)
{
    int c;
    MPI_Count e;
    CHK(MPI_Get_count(st, t, &c));
    CHK(MPI_Get_elements_x(st, t, &e));
    hu(c);
    hu(e);
}

/* ---------------------------------------------------------------- accesses */

enum { API_AT, API_PTR, API_ORD, API_SHR };
enum { SK_SET, SK_CUR, SK_CONT };

typedef struct {
    int vid, rw, coll, api, split, seek, act, accid, sub;
    int64_t a[MAXR], n[MAXR], cnt[MAXR], msz[MAXR];
    int mfam[MAXR], mcontig[MAXR];
    mtype mt;                   /* this rank's */
    unsigned char *buf, *mem;
    size_t buflen;
    MPI_Request req;
    int eofread;                /* may read past the end of file */
    int own;                    /* repeats a write access: its bytes exist */
} acc_t;

static int64_t draw_size(void)
{
    int r = (int) rr(0, 99);
    int big = budget < BUDGET;
    if (r < 40)
        return rr(1, 64);
    if (r < 72)
        return rr(65, 4096);
    if (r < 92 || !big)
        return big ? rr(4097, 128 * KiB) : rr(1, 4096);
    if (r < 98)
        return rr(128 * KiB, 1 * MiB);
    return rr(1 * MiB, 4 * MiB);
}

static int64_t draw_target(void);

/* inside: mostly over the data that is there, where reads (other than
 * contiguous independent ones) and strided or collective writes are not cut
 * short by the size rules */
static int64_t draw_target_in(int inside)
{
    if (inside && sz0 > 64 && pct(80))
        return rr(0, sz0 - sz0 / 8);
    return draw_target();
}

static int64_t draw_target(void)
{
    int r = (int) rr(0, 99);
    if (sz0 > 0 && r < 50)
        return rr(0, sz0 - 1);  /* over data that is there */
    if (r < 68) {               /* around the end of file */
        int64_t t = sz0 + rr(-4 * KiB, 64 * KiB);
        return t > 0 ? t : 0;
    }
    if (r < 84)
        return rr(0, 1 * MiB);
    if (r < 96)
        return rr(0, 8 * MiB);
    return rr(0, 24 * MiB);
}

/* memory types and sizes of every rank; total: wanted bytes of the op */
static void draw_mem(acc_t * A, int64_t total, const int64_t * fixed_n)
{
    view_t *v = &views[A->vid];
    int nact = popc(A->act);
    for (int r = 0; r < np; r++) {
        mparams m;
        int64_t want;
        if (fixed_n)
            want = fixed_n[r];
        else if (!(A->act & (1 << r)))
            want = 0;
        else if (pct(7))
            want = 0;
        else {
            want = total / (nact ? nact : 1);
            if (pct(40))
                want = want * rr(50, 150) / 100;
            if (want < 1)
                want = 1;
        }
        draw_mparams(&m, v->et, want, 0);
        mtype mt;
        build_mtype(&m, v->et, &mt);
        int64_t cnt = want / mt.size;
        if (fixed_n && cnt * mt.size != want) {
            /* keep the bytes: a basic etype always divides them */
            tfree(&mt.t);
            m.fam = M_BASIC;
            m.u = v->et;
            build_mtype(&m, v->et, &mt);
            cnt = want / mt.size;
        }
        if (!fixed_n && cnt == 0 && want > 0 && pct(85))
            cnt = 1;
        if (!fixed_n && cnt * mt.size > 8 * MiB)
            cnt = 8 * MiB / mt.size;
        A->cnt[r] = cnt;
        A->msz[r] = mt.size;
        A->n[r] = cnt * mt.size;
        A->mfam[r] = m.fam;
        A->mcontig[r] = mt.contig;
        if (r == rank)
            A->mt = mt;
        else
            tfree(&mt.t);
    }
}

/* hull of rank r's file bytes */
static void hull(const acc_t * A, int r, int64_t * lo, int64_t * hi)
{
    view_t *v = &views[A->vid];
    *lo = vpos(v, r, A->a[r]);
    *hi = vpos(v, r, A->a[r] + A->n[r] - 1) + 1;
}

static int access_contig(const acc_t * A, int r)
{
    return view_contig(&views[A->vid]) && A->mcontig[r];
}

/* shrinks rank r's access so that its file bytes end at or below lim */
static void shrink(acc_t * A, int r, int64_t lim)
{
    view_t *v = &views[A->vid];
    if (A->n[r] == 0)
        return;
    int64_t lo, hi;
    hull(A, r, &lo, &hi);
    if (hi <= lim)
        return;
    int64_t keep = vbelow(v, r, lim) - A->a[r];
    if (keep < 0)
        keep = 0;
    if (keep > A->n[r])
        keep = A->n[r];
    A->cnt[r] = keep / A->msz[r];
    A->n[r] = A->cnt[r] * A->msz[r];
}

/* The rules that depend on the size, applied once the epoch is settled:
 * the file limit; reads that are not contiguous independent ones stay below
 * the known size; strided and collective writes beyond it must cover their
 * range (ROMIO ufs fills holes past EOF with junk). Only ever shrinks. */
/* an ordered access is laid out from the shared pointer in rank order:
 * shrink the ranks' parts so that the whole of it stays below lim */
static void shrink_ordered(acc_t * A, int64_t lim)
{
    view_t *v = &views[A->vid];
    int64_t room = vbelow(v, 0, lim) - sp, a = sp;
    if (room < 0)
        room = 0;
    for (int r = 0; r < np; r++) {
        if (A->n[r] > room) {
            A->cnt[r] = room / A->msz[r];
            A->n[r] = A->cnt[r] * A->msz[r];
        }
        room -= A->n[r];
        A->a[r] = a;
        a += A->n[r];
    }
}

static void apply_rules(acc_t * A)
{
    view_t *v = &views[A->vid];
    int r;
    if (A->api == API_ORD) {
        shrink_ordered(A, MAXFILE);
        if (!A->rw || !view_contig(v)) {
            int64_t lo, hi, ghi = 0;
            for (r = 0; r < np; r++)
                if (A->n[r]) {
                    hull(A, r, &lo, &hi);
                    if (hi > ghi)
                        ghi = hi;
                }
            if (ghi > sz0)
                shrink_ordered(A, sz0);
        }
        A->eofread = 0;
        return;
    }
    for (r = 0; r < np; r++)
        shrink(A, r, MAXFILE);
    if (A->rw == 0 && A->own) {
        A->eofread = 0;
        return;
    }
    if (A->rw == 0) {
        A->eofread = 0;
        for (r = 0; r < np; r++) {
            if (!(A->act & (1 << r)) || A->n[r] == 0)
                continue;
            if (A->coll || A->api == API_ORD || !access_contig(A, r))
                shrink(A, r, sz0);
            else {
                int64_t lo, hi;
                hull(A, r, &lo, &hi);
                if (hi > sz0)
                    A->eofread = 1;
            }
        }
        return;
    }
    if (!(A->coll || !view_contig(v)))
        return;
    int64_t glo = INF, ghi = 0, covered = 0;
    for (r = 0; r < np; r++) {
        if (!(A->act & (1 << r)) || A->n[r] == 0)
            continue;
        int64_t lo, hi;
        hull(A, r, &lo, &hi);
        if (lo < glo)
            glo = lo;
        if (hi > ghi)
            ghi = hi;
    }
    if (ghi <= sz0)
        return;
    int64_t x = glo > sz0 ? glo : sz0;
    for (r = 0; r < np; r++) {
        if (!(A->act & (1 << r)) || A->n[r] == 0)
            continue;
        int64_t below = vbelow(v, r, x) - A->a[r];
        if (below < 0)
            below = 0;
        if (below > A->n[r])
            below = A->n[r];
        covered += A->n[r] - below;
    }
    if (covered != ghi - x)
        for (r = 0; r < np; r++)
            shrink(A, r, sz0);
}

/* the epoch entries of an access */
static int access_ents(const acc_t * A, ent_t * out)
{
    int n = 0, r;
    if (A->rw && (A->coll || A->api == API_ORD)) {
        ent_t e = { INF, 0, 1, 0, 1, A->accid };
        for (r = 0; r < np; r++) {
            if (A->n[r] == 0)
                continue;
            int64_t lo, hi;
            hull(A, r, &lo, &hi);
            if (lo < e.lo)
                e.lo = lo;
            if (hi > e.hi)
                e.hi = hi;
            e.rmask |= 1 << r;
        }
        if (e.rmask)
            out[n++] = e;
        return n;
    }
    for (r = 0; r < np; r++) {
        if (!(A->act & (1 << r)) || A->n[r] == 0)
            continue;
        ent_t e;
        hull(A, r, &e.lo, &e.hi);
        e.w = A->rw;
        e.rmask = 1 << r;
        e.coll = A->coll || A->api == API_ORD;
        e.accid = A->accid;
        if (!A->rw && !A->own && access_contig(A, r) && !A->coll && A->api != API_ORD &&
            e.hi > sz0)
            e.hi = INF;         /* may read up to the end of file: keep it still */
        out[n++] = e;
    }
    return n;
}

/* per-rank layout from view-space start positions */
static void layout_part(acc_t * A, int64_t a0)
{
    int64_t a = a0;
    int es = views[A->vid].es;
    for (int r = 0; r < np; r++) {
        A->a[r] = a;
        if (A->act & (1 << r))
            a += A->n[r];
        if (pct(25))
            a += rr(1, 64) * es;
    }
}

static void layout_inter(acc_t * A, int64_t tgt, int tiles)
{
    view_t *v = &views[A->vid];
    int same = tiles || pct(80);
    int64_t k = 0;
    for (int r = 0; r < np; r++) {
        int64_t a = vbelow(v, r, tgt);
        if (tiles)              /* whole tiles: covers the range */
            a = a / v->size[r] * v->size[r];
        a = a / v->es * v->es;
        if (!same)
            k = rr(0, 3) * v->es;
        A->a[r] = a + k;
    }
}

static void mem_alloc(acc_t * A)
{
    int64_t c = A->cnt[rank];
    A->buflen = c > 0 ? (size_t) ((c - 1) * A->mt.extent + A->mt.tub) : 8;
    A->mem = malloc(A->buflen + 16);
    A->buf = A->mem;
    fill(A->mem, A->buflen, A->sub, A->rw == 0);
}

static void mem_free(acc_t * A)
{
    free(A->mem);
    A->mem = A->buf = NULL;
    tfree(&A->mt.t);
}

static void acc_desc(const acc_t * A)
{
    static const char *an[] = { "at", "ptr", "ordered", "shared" };
    static const char *sk[] = { "set", "cur", "cont" };
    D("%s %s%s%s", A->rw ? "write" : "read", A->coll ? "coll " : "", an[A->api],
      A->split ? " split" : "");
    if (A->api == API_PTR)
        D("(%s)", sk[A->seek]);
    D(" [");
    for (int r = 0; r < np; r++) {
        if (!(A->act & (1 << r))) {
            D("%s-", r ? " " : "");
            continue;
        }
        D("%sr%d:%lld+%lld %s", r ? " " : "", r, (long long) A->a[r], (long long) A->n[r],
          MN[A->mfam[r]]);
        if (A->n[r]) {
            int64_t lo, hi;
            hull(A, r, &lo, &hi);
            D("@%lld-%lld", (long long) lo, (long long) hi);
        }
    }
    D("]%s", A->eofread ? " eof" : "");
}

/* the data call of one blocking access on this rank */
static void acc_exec(acc_t * A)
{
    view_t *v = &views[A->vid];
    int me = (A->act >> rank) & 1;
    int cnt = (int) (me ? A->cnt[rank] : 0);
    MPI_Offset off = A->a[rank] / v->es;
    MPI_Status st;
    memset(&st, 0, sizeof(st));
    if (!me && !A->coll && A->api != API_ORD)
        return;
    if (A->api == API_PTR && me) {
        if (A->seek == SK_SET)
            CHK(MPI_File_seek(fh, off, MPI_SEEK_SET));
        else if (A->seek == SK_CUR)
            CHK(MPI_File_seek(fh, off - ptr[rank] / v->es, MPI_SEEK_CUR));
    }
    void *b = A->buf;
    MPI_Datatype t = A->mt.t;
    if (A->rw) {
        if (A->api == API_AT && !A->coll)
            CHK(MPI_File_write_at(fh, off, b, cnt, t, &st));
        else if (A->api == API_AT && !A->split)
            CHK(MPI_File_write_at_all(fh, off, b, cnt, t, &st));
        else if (A->api == API_AT) {
            CHK(MPI_File_write_at_all_begin(fh, off, b, cnt, t));
            CHK(MPI_File_write_at_all_end(fh, b, &st));
        } else if (A->api == API_PTR && !A->coll)
            CHK(MPI_File_write(fh, b, cnt, t, &st));
        else if (A->api == API_PTR && !A->split)
            CHK(MPI_File_write_all(fh, b, cnt, t, &st));
        else if (A->api == API_PTR) {
            CHK(MPI_File_write_all_begin(fh, b, cnt, t));
            CHK(MPI_File_write_all_end(fh, b, &st));
        } else if (A->api == API_ORD && !A->split)
            CHK(MPI_File_write_ordered(fh, b, cnt, t, &st));
        else if (A->api == API_ORD) {
            CHK(MPI_File_write_ordered_begin(fh, b, cnt, t));
            CHK(MPI_File_write_ordered_end(fh, b, &st));
        } else
            CHK(MPI_File_write_shared(fh, b, cnt, t, &st));
    } else {
        if (A->api == API_AT && !A->coll)
            CHK(MPI_File_read_at(fh, off, b, cnt, t, &st));
        else if (A->api == API_AT && !A->split)
            CHK(MPI_File_read_at_all(fh, off, b, cnt, t, &st));
        else if (A->api == API_AT) {
            CHK(MPI_File_read_at_all_begin(fh, off, b, cnt, t));
            CHK(MPI_File_read_at_all_end(fh, b, &st));
        } else if (A->api == API_PTR && !A->coll)
            CHK(MPI_File_read(fh, b, cnt, t, &st));
        else if (A->api == API_PTR && !A->split)
            CHK(MPI_File_read_all(fh, b, cnt, t, &st));
        else if (A->api == API_PTR) {
            CHK(MPI_File_read_all_begin(fh, b, cnt, t));
            CHK(MPI_File_read_all_end(fh, b, &st));
        } else if (A->api == API_ORD && !A->split)
            CHK(MPI_File_read_ordered(fh, b, cnt, t, &st));
        else if (A->api == API_ORD) {
            CHK(MPI_File_read_ordered_begin(fh, b, cnt, t));
            CHK(MPI_File_read_ordered_end(fh, b, &st));
        } else
            CHK(MPI_File_read_shared(fh, b, cnt, t, &st));
        hb(A->buf, A->buflen);
    }
    hash_status(&st, t);
    if (A->api == API_PTR && me)
        hash_position();
}

/* after an access: epoch entries, sizes, pointers, recent list */
static void acc_commit(acc_t * A, ent_t * e, int ne)
{
    for (int i = 0; i < ne; i++)
        add_ent(e[i]);
    for (int r = 0; r < np; r++) {
        if (!(A->act & (1 << r)) || A->n[r] == 0)
            continue;
        budget += A->n[r];
        if (A->rw) {
            int64_t lo, hi;
            hull(A, r, &lo, &hi);
            if (hi > ep_max)
                ep_max = hi;
        }
    }
    if (A->rw && (A->api == API_AT || A->api == API_PTR)) {
        recent_t *c = &recent[nrecent < NRECENT ? nrecent++ : (int) rr(0, NRECENT - 1)];
        c->vid = A->vid;
        c->coll = A->coll;
        c->act = A->act;
        c->accid = A->accid;
        memcpy(c->a, A->a, sizeof(c->a));
        memcpy(c->n, A->n, sizeof(c->n));
    }
}

static void ptr_after(acc_t * A)
{
    if (A->api == API_PTR) {
        for (int r = 0; r < np; r++)
            if (A->act & (1 << r))
                ptr[r] = A->a[r] + A->n[r];
        /* a read may stop at the end of file */
        if (!A->rw && A->eofread)
            ptr_known = 0;
    }
}

/* one blocking data step: rw 1 write, 0 read; kind 0 plain, 1 ordered,
 * 2 one rank through the shared pointer, 3 repeat a recent write access */
static void step_data(int rw, int coll, int kind)
{
    acc_t A;
    memset(&A, 0, sizeof(A));
    A.rw = rw;
    A.coll = coll;
    A.sub = 0;
    A.accid = next_accid++;
    view_t *cv = &views[cur_vid];
    int64_t tgt = draw_target_in(!rw || coll || kind == 1 || pct(50));

    if (kind == 3) {
        recent_t *c = &recent[rr(0, nrecent - 1)];
        A.vid = c->vid;
        A.coll = c->coll;
        A.act = c->act;
        A.accid = c->accid;
        A.api = pct(60) ? API_AT : API_PTR;
        A.seek = SK_SET;
        A.split = A.coll && pct(20);
        memcpy(A.a, c->a, sizeof(A.a));
        A.own = !rw;
        D("repeat ");
        draw_mem(&A, 0, c->n);
        if (A.vid != cur_vid)
            set_view(A.vid);
    } else {
        int need_common = kind == 1 || kind == 2;
        int beyond = cv->disp[0] >= sz0 && (!view_contig(cv) || !rw || coll);
        int keep = (beyond ? pct(10) : pct(45)) && !(need_common && cv->inter);
        if (keep)
            A.vid = cur_vid;
        else {
            int64_t disp = pct(70) ? tgt / 8 * 8 : tgt;
            A.vid = new_view(disp, need_common, tgt >= sz0);
        }
        view_t *v = &views[A.vid];
        if (kind == 1) {
            A.api = API_ORD;
            A.act = allmask;
            A.coll = 1;
            A.split = pct(25);
        } else if (kind == 2) {
            A.api = API_SHR;
            A.act = 1 << rr(0, np - 1);
            A.coll = 0;
        } else {
            A.api = pct(50) ? API_AT : API_PTR;
            A.split = coll && pct(25);
            if (coll)
                A.act = allmask;
            else {
                int r = (int) rr(0, 99);
                A.act = r < 60 ? allmask : r < 85 ? 1 << rr(0, np - 1) : (int) rr(1, allmask);
            }
            A.seek = SK_SET;
            if (A.api == API_PTR && A.vid == cur_vid && ptr_known) {
                int r = (int) rr(0, 99);
                A.seek = r < 40 ? SK_CONT : r < 70 ? SK_CUR : SK_SET;
            }
        }
        int64_t total = draw_size();
        int tiles = 0;
        if (v->inter && v->dense && kind == 0 && A.seek != SK_CONT && A.act == allmask &&
            pct(60)) {
            int64_t fixed[MAXR];
            tiles = (int) (total / np / v->size[0]);
            if (tiles < 1)
                tiles = 1;
            if (tiles * v->size[0] > 2 * MiB)
                tiles = (int) (2 * MiB / v->size[0]) + 1;
            for (int r = 0; r < np; r++)
                fixed[r] = tiles * v->size[r];
            D("tiles%d ", tiles);
            draw_mem(&A, 0, fixed);
        } else
            draw_mem(&A, total, NULL);
        if (A.vid != cur_vid)
            set_view(A.vid);
        /* positions */
        if (A.api == API_ORD || A.api == API_SHR) {
            /* every rank is done reading the shared pointer (get_position_shared
             * of an earlier step) before anyone moves it */
            CHK(MPI_Barrier(MPI_COMM_WORLD));
            if (!sp_known || pct(30)) {
                int64_t s = vbelow(v, 0, tgt) / v->es;
                CHK(MPI_File_seek_shared(fh, s, MPI_SEEK_SET));
                sp = s * v->es;
                sp_known = 1;
                D("seek_shared %lld; ", (long long) s);
            }
            int64_t a = sp;
            for (int r = 0; r < np; r++) {
                A.a[r] = a;
                if (A.act & (1 << r))
                    a += A.n[r];
            }
        } else if (A.seek == SK_CONT) {
            memcpy(A.a, ptr, sizeof(A.a));
        } else if (v->inter)
            layout_inter(&A, tgt, tiles);
        else
            layout_part(&A, vbelow(v, 0, tgt) / v->es * v->es);
        /* in a shared view, the ranks' ranges must not overlap */
        if (!v->inter && A.api == API_PTR) {
            int bad = 0;
            for (int r = 0; r < np; r++)
                for (int q = r + 1; q < np; q++)
                    if ((A.act >> r & 1) && (A.act >> q & 1) && A.n[r] && A.n[q] &&
                        A.a[r] < A.a[q] + A.n[q] && A.a[q] < A.a[r] + A.n[r])
                        bad = 1;
            if (bad) {
                A.seek = SK_SET;
                layout_part(&A, vbelow(v, 0, tgt) / v->es * v->es);
            }
        }
    }

    ent_t e[MAXR + 1];
    int ne = access_ents(&A, e);
    if (epoch_conflict(e, ne))
        boundary();
    apply_rules(&A);
    ne = access_ents(&A, e);
    acc_desc(&A);
    if (trace == 2 && rank == 0) {
        fprintf(stderr, "start %ld at %.3f: %s\n", opi, MPI_Wtime(), desc);
        fflush(stderr);
    }
    mem_alloc(&A);
    acc_exec(&A);
    if (A.api == API_SHR) {
        /* the next user of the shared pointer must see its new value */
        CHK(MPI_Barrier(MPI_COMM_WORLD));
        MPI_Offset s;
        CHK(MPI_File_get_position_shared(fh, &s));
        hu(s);
    }
    if (A.api == API_ORD || A.api == API_SHR) {
        for (int r = 0; r < np; r++)
            if (A.act & (1 << r))
                sp += A.n[r];
        if (A.api == API_ORD) {
            /* ROMIO passes a token from rank to rank and returns without
             * waiting for the last rank's update of the shared pointer: a
             * rank that goes on at once may see (or use) the old value */
            CHK(MPI_Barrier(MPI_COMM_WORLD));
            MPI_Offset s;
            CHK(MPI_File_get_position_shared(fh, &s));
            hu(s);
        }
    }
    ptr_after(&A);
    acc_commit(&A, e, ne);
    mem_free(&A);
}

/* ---------------------------------------------------------------- nonblocking batches */

#define MAXB 6
static void step_batch(void)
{
    acc_t B[MAXB];
    int nb = (int) rr(2, MAXB), i, r;
    int64_t tgt = draw_target_in(1);
    int keep = views[cur_vid].disp[0] >= sz0 && !view_contig(&views[cur_vid]) ? pct(15) : pct(50);
    int vid = keep ? cur_vid : new_view(pct(70) ? tgt / 8 * 8 : tgt, 0, tgt >= sz0);
    view_t *v = &views[vid];
    int had_coll = 0;
    D("batch%d ", nb);
    if (vid != cur_vid)
        set_view(vid);
    int64_t total = draw_size();
    if (total > 1 * MiB)
        total = 1 * MiB;
    /* requests: kind, ranks, sizes */
    for (i = 0; i < nb; i++) {
        acc_t *A = &B[i];
        memset(A, 0, sizeof(*A));
        A->vid = vid;
        A->sub = i + 1;
        A->accid = next_accid++;
        A->rw = rd_ok && wr_ok ? (int) pct(55) : wr_ok;
        /* at most one collective outstanding: ROMIO's nonblocking
         * collectives on one file use the same message tags, so two of them
         * in flight can take each other's data */
        A->coll = !had_coll && pct(30);
        had_coll |= A->coll;
        A->api = pct(50) ? API_AT : API_PTR;
        A->act = A->coll ? allmask : (pct(70) ? allmask : (int) rr(1, allmask));
        draw_mem(A, total / nb + 1, NULL);
    }
    /* issue order: independent pointer requests, then the pointer
     * collective, then the rest. ROMIO's nonblocking collectives save the
     * individual pointer when they start and restore it when they progress
     * later (ad_iwrite_coll.c, ad_iread_coll.c), clobbering what a pointer
     * request issued meanwhile did to it; and they may move the pointer only
     * when they complete. */
    {
        acc_t tmp[MAXB];
        int n = 0;
        for (int pass = 0; pass < 3; pass++)
            for (i = 0; i < nb; i++) {
                int cls = B[i].api == API_PTR ? (B[i].coll ? 1 : 0) : 2;
                if (cls == pass)
                    tmp[n++] = B[i];
            }
        memcpy(B, tmp, sizeof(acc_t) * nb);
    }
    /* layout: the pointer chain first, then the explicit-offset requests,
     * each in a range of its own */
    int64_t cur[MAXR];
    if (v->inter) {
        for (r = 0; r < np; r++) {
            cur[r] = vbelow(v, r, tgt);
            if (v->dense && pct(70))
                cur[r] = cur[r] / v->size[r] * v->size[r];
            cur[r] = cur[r] / v->es * v->es;
        }
    } else {
        int64_t g = vbelow(v, 0, tgt) / v->es * v->es;
        for (r = 0; r < np; r++)
            cur[r] = g;
    }
    if (v->inter) {
        /* every request starts on a tile boundary after the tiles of the
         * one before, so that requests in flight together share no tile
         * (the ranks' bytes interleave within a tile) */
        int64_t t = 0;
        for (r = 0; r < np; r++)
            if ((cur[r] + v->size[r] - 1) / v->size[r] > t)
                t = (cur[r] + v->size[r] - 1) / v->size[r];
        for (int pass = 0; pass < 2; pass++)
            for (i = 0; i < nb; i++) {
                if ((B[i].api == API_PTR) != (pass == 0))
                    continue;
                int64_t t2 = t;
                for (r = 0; r < np; r++) {
                    B[i].a[r] = t * v->size[r];
                    int64_t e = B[i].a[r] + ((B[i].act & (1 << r)) ? B[i].n[r] : 0);
                    if ((e + v->size[r] - 1) / v->size[r] > t2)
                        t2 = (e + v->size[r] - 1) / v->size[r];
                }
                t = t2 + (pct(30) ? 0 : 1);
            }
    } else {
        int64_t g = cur[0];
        /* pointer chains of the ranks one after the other */
        int64_t T[MAXR] = { 0 };
        for (i = 0; i < nb; i++)
            if (B[i].api == API_PTR && !B[i].coll)
                for (r = 0; r < np; r++)
                    if (B[i].act & (1 << r))
                        T[r] += B[i].n[r];
        int64_t c[MAXR];
        for (r = 0; r < np; r++) {
            c[r] = g;
            g += T[r];
        }
        for (i = 0; i < nb; i++) {
            if (B[i].api != API_PTR || B[i].coll)
                continue;
            for (r = 0; r < np; r++) {
                B[i].a[r] = c[r];
                if (B[i].act & (1 << r))
                    c[r] += B[i].n[r];
            }
        }
        /* the collective (pointer or not) and the explicit-offset requests:
         * each in a range of its own, the ranks' parts one after the other
         * (a collective write's range has no holes for other requests) */
        for (i = 0; i < nb; i++) {
            if (B[i].api == API_PTR && !B[i].coll)
                continue;
            for (r = 0; r < np; r++) {
                B[i].a[r] = g;
                if (B[i].act & (1 << r))
                    g += B[i].n[r];
            }
        }
    }
    int how = (int) rr(0, 7);
    static const char *hn[] = { "waitall", "wait", "test", "testall+waitall", "waitany",
        "waitsome", "testany", "testsome"
    };
    int perm[MAXB];
    for (i = 0; i < nb; i++)
        perm[i] = i;
    for (i = nb - 1; i > 0; i--) {
        int j = (int) rr(0, i), t = perm[i];
        perm[i] = perm[j];
        perm[j] = t;
    }

    /* the epoch: the whole batch against it */
    ent_t e[MAXB * MAXR + MAXB], e2[MAXR + 1];
    int ne = 0;
    for (i = 0; i < nb; i++)
        ne += access_ents(&B[i], e + ne);
    if (epoch_conflict(e, ne))
        boundary();
    /* size rules, then drop requests that clash with earlier ones of the
     * batch (outstanding together: no exemptions) */
    ne = 0;
    for (i = 0; i < nb; i++) {
        apply_rules(&B[i]);
        int k = access_ents(&B[i], e2), bad = 0;
        for (int x = 0; x < k && !bad; x++)
            for (int y = 0; y < ne; y++)
                if (conflicts(&e2[x], &e[y], 1)) {
                    bad = 1;
                    break;
                }
        if (bad) {
            if (B[i].coll)
                memset(B[i].n, 0, sizeof(B[i].n)), memset(B[i].cnt, 0, sizeof(B[i].cnt));
            else
                B[i].act = 0;   /* dropped */
            k = 0;
        }
        memcpy(e + ne, e2, k * sizeof(ent_t));
        ne += k;
    }
    D("%s: ", hn[how]);
    for (i = 0; i < nb; i++) {
        D("%s{i", i ? " " : "");
        acc_desc(&B[i]);
        D("}");
    }
    if (trace == 2 && rank == 0) {
        fprintf(stderr, "start %ld at %.3f: %s\n", opi, MPI_Wtime(), desc);
        fflush(stderr);
    }

    /* issue */
    MPI_Request reqs[MAXB];
    int64_t myptr = ptr_known ? ptr[rank] : -1;
    int used_ptr = 0;
    for (i = 0; i < nb; i++) {
        acc_t *A = &B[i];
        int me = (A->act >> rank) & 1;
        mem_alloc(A);
        reqs[i] = MPI_REQUEST_NULL;
        if (!me && !A->coll)
            continue;
        int cnt = (int) (me ? A->cnt[rank] : 0);
        MPI_Offset off = A->a[rank] / v->es;
        if (A->api == API_PTR) {
            used_ptr = 1;
            if (me && myptr != A->a[rank]) {
                CHK(MPI_File_seek(fh, off, MPI_SEEK_SET));
                myptr = A->a[rank];
            }
            if (me)
                myptr += A->n[rank];
        }
        MPI_Datatype t = A->mt.t;
        void *b = A->buf;
        if (A->rw) {
            if (A->api == API_AT)
                CHK(A->coll ? MPI_File_iwrite_at_all(fh, off, b, cnt, t, &reqs[i])
                    : MPI_File_iwrite_at(fh, off, b, cnt, t, &reqs[i]));
            else
                CHK(A->coll ? MPI_File_iwrite_all(fh, b, cnt, t, &reqs[i])
                    : MPI_File_iwrite(fh, b, cnt, t, &reqs[i]));
        } else {
            if (A->api == API_AT)
                CHK(A->coll ? MPI_File_iread_at_all(fh, off, b, cnt, t, &reqs[i])
                    : MPI_File_iread_at(fh, off, b, cnt, t, &reqs[i]));
            else
                CHK(A->coll ? MPI_File_iread_all(fh, b, cnt, t, &reqs[i])
                    : MPI_File_iread(fh, b, cnt, t, &reqs[i]));
        }
        if (trace == 3) {
            MPI_Offset p;
            MPI_File_get_position(fh, &p);
            fprintf(stderr, "debug rank %d step %ld: request %d issued, position %lld\n", rank, opi,
                    i, (long long) p);
        }
    }
    /* complete */
    MPI_Status sts[MAXB];
    memset(sts, 0, sizeof(sts));
    int done = 0, flag, idx, outcount, idxs[MAXB];
    switch (how) {
        case 0:
            CHK(MPI_Waitall(nb, reqs, sts));
            break;
        case 1:
            for (i = 0; i < nb; i++)
                CHK(MPI_Wait(&reqs[perm[i]], &sts[perm[i]]));
            break;
        case 2:
            while (done < nb) {
                done = 0;
                for (i = 0; i < nb; i++) {
                    if (reqs[i] == MPI_REQUEST_NULL) {
                        done++;
                        continue;
                    }
                    CHK(MPI_Test(&reqs[i], &flag, &sts[i]));
                }
            }
            break;
        case 3:
            /* not a Testall loop: MPICH 4.0.2 fails an assertion (request
             * ref_count >= 0) when MPI_Testall is called again on ROMIO's
             * aio requests after some of them completed */
            CHK(MPI_Testall(nb, reqs, &flag, sts));
            if (!flag)
                CHK(MPI_Waitall(nb, reqs, sts));
            break;
        case 4:
            for (;;) {
                MPI_Status s;
                CHK(MPI_Waitany(nb, reqs, &idx, &s));
                if (idx == MPI_UNDEFINED)
                    break;
                sts[idx] = s;
            }
            break;
        case 5:
            for (;;) {
                MPI_Status ss[MAXB];
                CHK(MPI_Waitsome(nb, reqs, &outcount, idxs, ss));
                if (outcount == MPI_UNDEFINED)
                    break;
                for (i = 0; i < outcount; i++)
                    sts[idxs[i]] = ss[i];
            }
            break;
        case 6:
            for (;;) {
                MPI_Status s;
                CHK(MPI_Testany(nb, reqs, &idx, &flag, &s));
                if (flag && idx == MPI_UNDEFINED)
                    break;
                if (flag)
                    sts[idx] = s;
            }
            break;
        case 7:
            for (;;) {
                MPI_Status ss[MAXB];
                CHK(MPI_Testsome(nb, reqs, &outcount, idxs, ss));
                if (outcount == MPI_UNDEFINED)
                    break;
                for (i = 0; i < outcount; i++)
                    sts[idxs[i]] = ss[i];
            }
            break;
    }
    for (i = 0; i < nb; i++) {
        acc_t *A = &B[i];
        int me = (A->act >> rank) & 1;
        if (me || A->coll) {
            hash_status(&sts[i], A->mt.t);
            if (!A->rw)
                hb(A->buf, A->buflen);
        }
        mem_free(A);
    }
    if (used_ptr)
        hash_position();
    /* pointers: the plan knows them (nonblocking reads move them by the full
     * request) */
    {
        int64_t p2[MAXR];
        memcpy(p2, ptr, sizeof(p2));
        int known = ptr_known;
        for (i = 0; i < nb; i++) {
            if (B[i].api != API_PTR)
                continue;
            for (r = 0; r < np; r++)
                if (B[i].act & (1 << r))
                    p2[r] = B[i].a[r] + B[i].n[r];
            known = 1;
        }
        /* a rank whose pointer the batch did not move keeps its old value,
         * which is unknown if it was */
        for (r = 0; r < np && !ptr_known; r++) {
            int moved = 0;
            for (i = 0; i < nb; i++)
                if (B[i].api == API_PTR && (B[i].act & (1 << r)))
                    moved = 1;
            if (!moved)
                known = 0;
        }
        memcpy(ptr, p2, sizeof(p2));
        ptr_known = known;
    }
    for (i = 0; i < nb; i++)
        acc_commit(&B[i], NULL, 0);
    for (i = 0; i < ne; i++)
        add_ent(e[i]);
}

/* ---------------------------------------------------------------- other steps */

static MPI_Info make_info(int at_open)
{
    MPI_Info info;
    MPI_Info_create(&info);
    static const char *v3[] = { "enable", "disable", "automatic" };
    if (pct(25))
        MPI_Info_set(info, "romio_cb_write", v3[rr(0, 2)]);
    if (pct(20))
        MPI_Info_set(info, "romio_cb_read", v3[rr(0, 2)]);
    /* romio_ds_write/romio_ds_read=disable are left out: they change
     * nothing for delegate, and ROMIO's naive strided write leaves the
     * individual pointer where its next strided read ends short of the
     * requested data (ad_write_str_naive.c vs ad_read_str.c) */
    if (pct(20))
        MPI_Info_set(info, "romio_ds_write", "enable");
    if (pct(15))
        MPI_Info_set(info, "cb_buffer_size", pct(50) ? "65536" : "1048576");
    if (pct(15))
        MPI_Info_set(info, "cb_nodes", pct(50) ? "1" : "2");
    if (pct(15))
        MPI_Info_set(info, "ind_wr_buffer_size", pct(50) ? "4096" : "65536");
    if (pct(15))
        MPI_Info_set(info, "ind_rd_buffer_size", pct(50) ? "4096" : "65536");
    if (at_open && pct(35)) {
        static const char *rs_[] = { "4096", "65536", "1M", "4M", "12288" };
        MPI_Info_set(info, "delegate_region_size", rs_[rr(0, 4)]);
    }
    if (pct(30))
        MPI_Info_set(info, "delegate_cork", pct(60) ? "true" : "false");
    if (pct(15)) {
        static const char *cs[] = { "4096", "65536", "16M" };
        MPI_Info_set(info, "delegate_cork_size", cs[rr(0, 2)]);
    }
    if (pct(25))
        MPI_Info_set(info, "delegate_write_ack", pct(50) ? "sync" : "async");
    if (pct(25))
        MPI_Info_set(info, "delegate_async_close", pct(60) && !avoid_async ? "true" : "false");
    return info;
}

static void info_desc(MPI_Info info)
{
    int n;
    char k[MPI_MAX_INFO_KEY + 1], val[256];
    MPI_Info_get_nkeys(info, &n);
    for (int i = 0; i < n; i++) {
        int flag;
        MPI_Info_get_nthkey(info, i, k);
        MPI_Info_get(info, k, sizeof(val) - 1, val, &flag);
        D("%s%s=%s", i ? "," : "", k, val);
    }
}

static void file_open(int amode, MPI_Info info)
{
    CHK(MPI_File_open(MPI_COMM_WORLD, g_path, amode, info, &fh));
    CHK(MPI_File_set_errhandler(fh, MPI_ERRORS_RETURN));
    rd_ok = !(amode & MPI_MODE_WRONLY);
    wr_ok = !(amode & MPI_MODE_RDONLY);
    atomic_on = 0;
    cur_vid = 0;
    for (int r = 0; r < MAXR; r++)
        ptr[r] = 0;
    ptr_known = !(amode & MPI_MODE_APPEND);
    sp = 0;
    sp_known = !(amode & MPI_MODE_APPEND);
    int am, at;
    CHK(MPI_File_get_amode(fh, &am));
    CHK(MPI_File_get_atomicity(fh, &at));
    hu(am);
    hu(at);
    hash_position();
    MPI_Offset s;
    CHK(MPI_File_get_position_shared(fh, &s));
    hu(s);
}

static void step_reopen(void)
{
    static const int mw[] = { 50, 14, 14, 6, 8, 8 };
    static const int modes[] = {
        MPI_MODE_RDWR, MPI_MODE_WRONLY, MPI_MODE_RDONLY, MPI_MODE_RDWR | MPI_MODE_APPEND,
        MPI_MODE_RDWR | MPI_MODE_UNIQUE_OPEN, MPI_MODE_RDWR | MPI_MODE_CREATE
    };
    static const char *mn[] = { "rdwr", "wronly", "rdonly", "rdwr|append", "rdwr|unique",
        "rdwr|create"
    };
    int m = pickw(mw, 6);
    MPI_Info info = make_info(1);
    D("reopen %s ", mn[m]);
    info_desc(info);
    CHK(MPI_File_close(&fh));
    file_open(modes[m], info);
    MPI_Info_free(&info);
    epoch_clear();
}

/* close, delete, create again: the file starts empty */
static void step_recreate(void)
{
    int excl = pct(30);
    MPI_Info info = make_info(1);
    D("close, delete, open create|%srdwr ", excl ? "excl|" : "");
    info_desc(info);
    CHK(MPI_File_close(&fh));
    CHK(MPI_Barrier(MPI_COMM_WORLD));
    if (rank == 0)
        CHK(MPI_File_delete(g_path, MPI_INFO_NULL));
    CHK(MPI_Barrier(MPI_COMM_WORLD));
    file_open(MPI_MODE_CREATE | MPI_MODE_RDWR | (excl ? MPI_MODE_EXCL : 0), info);
    MPI_Info_free(&info);
    ep_max = 0;
    epoch_clear();
    nrecent = 0;
}

static void step_set_size(void)
{
    int64_t s;
    int r = (int) rr(0, 99);
    if (r < 40)
        s = rr(0, ep_max);      /* shrink (or keep) */
    else if (r < 50)
        s = ep_max;
    else
        s = ep_max + rr(1, pct(70) ? 64 * KiB : 4 * MiB);       /* grow */
    if (s > MAXFILE)
        s = MAXFILE;
    D("set_size %lld (from %lld)", (long long) s, (long long) ep_max);
    CHK(MPI_File_set_size(fh, s));
    ep_max = s;
    epoch_clear();
    nrecent = 0;
}

static void step_prealloc(void)
{
    int64_t s = pct(40) ? rr(0, sz0) : sz0 + rr(1, pct(70) ? 64 * KiB : 2 * MiB);
    if (s > MAXFILE)
        s = MAXFILE;
    D("preallocate %lld (size %lld)", (long long) s, (long long) sz0);
    CHK(MPI_File_preallocate(fh, s));
    if (s > ep_max)
        ep_max = s;
    if (s > sz0)
        sz0 = s;
}

/* get_size or seek to the end: reads the end of file */
static void step_eof_probe(int seekend)
{
    ent_t e[MAXR];
    memset(e, 0, sizeof(e));
    for (int r = 0; r < np; r++) {
        e[r].lo = sz0;
        e[r].hi = INF;
        e[r].w = 0;
        e[r].rmask = 1 << r;
        e[r].coll = 0;
        e[r].accid = 0;
    }
    if (epoch_conflict(e, np))
        boundary();
    int64_t maxdisp = 0;
    for (int r = 0; r < np; r++)
        if (views[cur_vid].disp[r] > maxdisp)
            maxdisp = views[cur_vid].disp[r];
    /* ROMIO fails a seek to an end of file that lies before the view */
    if (seekend && maxdisp <= sz0) {
        int back = pct(50);
        D("seek end%s", back ? ", back 1" : "");
        CHK(MPI_File_seek(fh, 0, MPI_SEEK_END));
        MPI_Offset p;
        CHK(MPI_File_get_position(fh, &p));
        hu(p);
        if (back && p > 0)
            CHK(MPI_File_seek(fh, -1, MPI_SEEK_CUR));
        hash_position();
        ptr_known = 0;
    } else {
        MPI_Offset s;
        D("get_size");
        CHK(MPI_File_get_size(fh, &s));
        hu(s);
    }
    for (int r = 0; r < np; r++)
        add_ent(e[r]);
}

static void step_atomic(void)
{
    int flag = !atomic_on;
    if (wr_ok)
        step_sync("[sync-barrier-sync] ");
    D("set_atomicity %d", flag);
    CHK(MPI_File_set_atomicity(fh, flag));
    int at;
    CHK(MPI_File_get_atomicity(fh, &at));
    hu(at);
    atomic_on = flag;
    epoch_clear();
}

static void step_set_info(void)
{
    MPI_Info info = make_info(0);
    D("set_info ");
    info_desc(info);
    CHK(MPI_File_set_info(fh, info));
    MPI_Info_free(&info);
}

/* ---------------------------------------------------------------- one program */

enum { K_WIND, K_WCOLL, K_RIND, K_RCOLL, K_REPEAT, K_BATCH, K_ORDERED, K_SHARED1, K_SYNC,
    K_SBS, K_REOPEN, K_SETSIZE, K_PREALLOC, K_GETSIZE, K_SEEKEND, K_ATOMIC, K_SETINFO,
    K_SETVIEW, K_RECREATE, K_N
};

static void run_seed(unsigned long long seed, const char *path, long nops)
{
    static const int kw[K_N] = { 16, 11, 9, 7, 7, 10, 3, 2, 2, 4, 3, 3, 2, 2, 2, 2, 2, 2, 1 };
    g_seed = seed;
    rs = mix64(seed ^ 0x5eedULL);
    H = 1469598103934665603ULL;
    snprintf(g_path, sizeof(g_path), "%s", path);
    nviews = 0;
    nents = 0;
    nrecent = 0;
    budget = 0;
    next_accid = 1;
    ep_max = sz0 = 0;
    opi = -1;
    dlen = 0;
    desc[0] = 0;

    /* view 0: the default view */
    if (capviews == 0) {
        capviews = 64;
        views = malloc(capviews * sizeof(view_t));
    }
    {
        view_t *v = &views[0];
        memset(v, 0, sizeof(*v));
        v->fam = F_CONTIG;
        v->et = 0;
        v->es = 1;
        v->extent = 1;
        v->ft = MPI_BYTE;
        for (int r = 0; r < np; r++) {
            v->nb[r] = 1;
            v->size[r] = 1;
            v->boff[r] = calloc(1, sizeof(int64_t));
            v->blen[r] = calloc(1, sizeof(int64_t));
            v->bpre[r] = calloc(2, sizeof(int64_t));
            v->blen[r][0] = 1;
            v->bpre[r][1] = 1;
        }
        snprintf(v->d, sizeof(v->d), "default(byte)");
        nviews = 1;
    }

    if (rank == 0)
        MPI_File_delete(path, MPI_INFO_NULL);   /* may not exist */
    CHK(MPI_Barrier(MPI_COMM_WORLD));
    {
        int r = (int) rr(0, 99);
        int amode = MPI_MODE_CREATE | (r < 80 ? MPI_MODE_RDWR : r < 90 ? MPI_MODE_WRONLY :
                                       MPI_MODE_RDWR | MPI_MODE_EXCL);
        MPI_Info info = make_info(1);
        opi = 0;
        D("open %s ", r < 80 ? "create|rdwr" : r < 90 ? "create|wronly" : "create|excl|rdwr");
        info_desc(info);
        file_open(amode, info);
        MPI_Info_free(&info);
    }
    if (trace && rank == 0)
        tr_desc[0] = strdup(desc);
    if (trace)
        tr_hash[0] = H;

    for (opi = 1; opi <= nops; opi++) {
        dlen = 0;
        desc[0] = 0;
        int k;
        for (;;) {
            k = pickw(kw, K_N);
            if (!wr_ok && (k == K_WIND || k == K_WCOLL || k == K_SETSIZE || k == K_PREALLOC ||
                           k == K_SBS || k == K_SYNC))
                continue;
            if (!rd_ok && (k == K_RIND || k == K_RCOLL))
                continue;
            if (k == K_REPEAT && nrecent == 0)
                continue;
            if ((k == K_ORDERED || k == K_SHARED1 || k == K_BATCH) && !rd_ok && !wr_ok)
                continue;
            break;
        }
        if (trace == 2 && rank == 0) {
            fprintf(stderr, "step %ld kind %d at %.3f\n", opi, k, MPI_Wtime());
            fflush(stderr);
        }
        switch (k) {
            case K_WIND:
                step_data(1, 0, 0);
                break;
            case K_WCOLL:
                step_data(1, 1, 0);
                break;
            case K_RIND:
                step_data(0, 0, 0);
                break;
            case K_RCOLL:
                step_data(0, 1, 0);
                break;
            case K_REPEAT:{
                    int rw = wr_ok && rd_ok ? (int) pct(50) : wr_ok;
                    step_data(rw, 0, 3);
                    break;
                }
            case K_BATCH:
                step_batch();
                break;
            case K_ORDERED:
                step_data(wr_ok && rd_ok ? (int) pct(60) : wr_ok, 1, 1);
                break;
            case K_SHARED1:
                step_data(wr_ok && rd_ok ? (int) pct(60) : wr_ok, 0, 2);
                break;
            case K_SYNC:
                D("sync");
                CHK(MPI_File_sync(fh));
                break;
            case K_SBS:
                boundary();
                break;
            case K_REOPEN:
                step_reopen();
                break;
            case K_SETSIZE:
                step_set_size();
                break;
            case K_PREALLOC:
                step_prealloc();
                break;
            case K_GETSIZE:
                step_eof_probe(0);
                break;
            case K_SEEKEND:
                step_eof_probe(1);
                break;
            case K_ATOMIC:
                step_atomic();
                break;
            case K_SETINFO:
                step_set_info();
                break;
            case K_RECREATE:
                step_recreate();
                break;
            case K_SETVIEW:{
                    int64_t t = draw_target_in(pct(60));
                    set_view(pct(20) ? 0 : new_view(t, pct(30), t >= sz0));
                    hash_position();
                    break;
                }
        }
        if (trace && rank == 0)
            tr_desc[opi] = strdup(desc);
        if (trace)
            tr_hash[opi] = H;
    }

    /* the end: everything visible, the size, close */
    opi = nops + 1;
    dlen = 0;
    desc[0] = 0;
    if (wr_ok)
        step_sync("final sync-barrier-sync; ");
    else
        CHK(MPI_Barrier(MPI_COMM_WORLD));
    if (avoid_async && pct(30)) {
        MPI_Info info;
        MPI_Info_create(&info);
        MPI_Info_set(info, "delegate_async_close", "true");
        CHK(MPI_File_set_info(fh, info));
        MPI_Info_free(&info);
    }
    MPI_Offset size;
    CHK(MPI_File_get_size(fh, &size));
    hu(size);
    CHK(MPI_File_close(&fh));

    uint64_t all[MAXR];
    CHK(MPI_Gather(&H, 1, MPI_UINT64_T, all, 1, MPI_UINT64_T, 0, MPI_COMM_WORLD));
    if (trace) {
        uint64_t *th = rank == 0 ? malloc((size_t) (nops + 1) * np * sizeof(uint64_t)) : NULL;
        CHK(MPI_Gather(tr_hash, (int) nops + 1, MPI_UINT64_T, th, (int) nops + 1, MPI_UINT64_T, 0,
                       MPI_COMM_WORLD));
        if (rank == 0) {
            for (long i = 0; i <= nops; i++) {
                printf("trace seed=%llu step=%ld |", seed, i);
                for (int r = 0; r < np; r++)
                    printf(" %016llx", (unsigned long long) th[(size_t) r * (nops + 1) + i]);
                printf(" | %s\n", tr_desc[i]);
                free(tr_desc[i]);
            }
            free(th);
        }
    }
    if (rank == 0) {
        printf("difftest seed=%llu np=%d nops=%ld size=%lld hash=", seed, np, nops,
               (long long) size);
        for (int r = 0; r < np; r++)
            printf("%s%016llx", r ? "," : "", (unsigned long long) all[r]);
        printf("\n");
        fflush(stdout);
    }

    for (int i = 0; i < nviews; i++) {
        if (i > 0)
            tfree(&views[i].ft);
        for (int r = 0; r < np; r++) {
            free(views[i].boff[r]);
            free(views[i].blen[r]);
            free(views[i].bpre[r]);
        }
    }
    nviews = 0;
}

int main(int argc, char **argv)
{
    MPI_Init(&argc, &argv);
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    MPI_Comm_size(MPI_COMM_WORLD, &np);
    ET[0] = MPI_BYTE;
    ET[1] = MPI_INT;
    ET[2] = MPI_DOUBLE;
    if (argc < 3 || argc > 4 || np > MAXR || sizeof(int) != 4 || sizeof(double) != 8) {
        if (rank == 0)
            fprintf(stderr, "usage: mpiexec -n N difftest SEED[:COUNT][,SEED...] PATH [NOPS]  (N <= %d)\n",
                    MAXR);
        MPI_Finalize();
        return 2;
    }
    allmask = (1 << np) - 1;
    const char *t = getenv("DIFFTEST_TRACE");
    trace = t ? atoi(t) : 0;
    t = getenv("DIFFTEST_AVOID");
    avoid_async = t && strstr(t, "async-reopen") != NULL;
    /* SEED, SEED:COUNT or SEED,SEED,... */
    unsigned long long seeds_[4096];
    int nseeds = 0, batch = 0;
    long nops = argc > 3 ? atol(argv[3]) : 40;
    char *p = argv[1], *end;
    int bad = nops < 0 || nops > MAXOPS;
    for (;;) {
        unsigned long long s0 = strtoull(p, &end, 10);
        if (end == p) {
            bad = 1;
            break;
        }
        if (*end == ':') {
            unsigned long long count = strtoull(end + 1, &end, 10);
            batch = 1;
            for (unsigned long long k = 0; k < count && nseeds < 4096; k++)
                seeds_[nseeds++] = s0 + k;
        } else if (nseeds < 4096)
            seeds_[nseeds++] = s0;
        if (*end == ',') {
            batch = 1;
            p = end + 1;
            continue;
        }
        if (*end)
            bad = 1;
        break;
    }
    if (bad || nseeds == 0) {
        if (rank == 0)
            fprintf(stderr, "difftest: bad SEED[:COUNT|,SEED...] or NOPS\n");
        MPI_Finalize();
        return 2;
    }
    MPI_File_set_errhandler(MPI_FILE_NULL, MPI_ERRORS_RETURN);
    if (trace) {
        tr_hash = calloc((size_t) nops + 2, sizeof(uint64_t));
        tr_desc = calloc((size_t) nops + 2, sizeof(char *));
    }
    for (int i = 0; i < nseeds; i++) {
        char path[4200];
        if (batch)
            snprintf(path, sizeof(path), "%s.%llu", argv[2], seeds_[i]);
        else
            snprintf(path, sizeof(path), "%s", argv[2]);
        run_seed(seeds_[i], path, nops);
    }
    MPI_Finalize();
    return 0;
}
