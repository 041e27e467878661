/*
 * closetest: a collective close whose ranks differ in delegate_async_close.
 * The driver skips the close's end markers only when every rank had the
 * hint at open (ad_delegate_open.c agrees on it); a rank that sent a marker
 * the others never send would wait for them until the servers' collective
 * timeout. tests/integration.sh reads the servers' count of end markers
 * around each case.
 *
 *   mpiexec -n N closetest PATH CASE
 *
 *   all     every rank opens with delegate_async_close=true (no markers)
 *   mixed   only rank 0 does (every rank sends its marker)
 *   later   every rank does, then rank 1 turns it off in the collective
 *           MPI_File_set_info before close (still no markers: the choice
 *           made at open stands; rank 1's close waits for the flush)
 *   none    no rank does (markers, as before)
 *
 * Each rank writes 1,000 records of 100 bytes interleaved with the other
 * ranks'. Right after its close, rank 0 reopens the file and checks every
 * byte. Prints "closetest CASE ok" or "closetest CASE BAD: ..." and
 * exits non-zero.
 */
#include <mpi.h>
#include "mpiclass.h"
#include <stdlib.h>
#include <string.h>

#define REC 100
#define NREC 1000

static unsigned char pat(long long off)
{
    return (unsigned char) (off * 13 + off / 251);
}

int main(int argc, char **argv)
{
    int rank, np, bad = 0;
    MPI_File fh;
    MPI_Info info = MPI_INFO_NULL;
    unsigned char rec[REC];

    MPI_Init(&argc, &argv);
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    MPI_Comm_size(MPI_COMM_WORLD, &np);
    if (argc != 3) {
        if (rank == 0)
            fprintf(stderr, "usage: closetest PATH all|mixed|later|none\n");
        MPI_Abort(MPI_COMM_WORLD, 2);
    }
    const char *path = argv[1], *c = argv[2];
    if (strcmp(c, "all") && strcmp(c, "mixed") && strcmp(c, "later") && strcmp(c, "none")) {
        if (rank == 0)
            fprintf(stderr, "closetest: unknown case %s\n", c);
        MPI_Abort(MPI_COMM_WORLD, 2);
    }
    /* this rank asks for an asynchronous close at open */
    int async = !strcmp(c, "all") || !strcmp(c, "later") || (!strcmp(c, "mixed") && rank == 0);
    if (async) {
        MPI_Info_create(&info);
        MPI_Info_set(info, "delegate_async_close", "true");
    }
    if (MPI_File_open(MPI_COMM_WORLD, path, MPI_MODE_CREATE | MPI_MODE_WRONLY, info, &fh) != MPI_SUCCESS) {
        printf("closetest %s BAD: open failed\n", c);
        MPI_Abort(MPI_COMM_WORLD, 1);
    }
    for (long i = 0; i < NREC; i++) {
        MPI_Offset off = (MPI_Offset) (i * np + rank) * REC;
        for (int k = 0; k < REC; k++)
            rec[k] = pat(off + k);
        if (MPI_File_write_at(fh, off, rec, REC, MPI_BYTE, MPI_STATUS_IGNORE) != MPI_SUCCESS)
            bad = 1;
    }
    if (!strcmp(c, "later")) {
        /* collective: every rank calls it, rank 1 with the change */
        MPI_Info off;
        MPI_Info_create(&off);
        if (rank == 1)
            MPI_Info_set(off, "delegate_async_close", "false");
        if (MPI_File_set_info(fh, off) != MPI_SUCCESS)
            bad = 1;
        MPI_Info_free(&off);
    }
    if (MPI_File_close(&fh) != MPI_SUCCESS)
        bad = 1;
    if (info != MPI_INFO_NULL)
        MPI_Info_free(&info);
    /* No barrier: rank 0 reads as soon as its own close returned, as a
     * program written for ufs: may (ROMIO's close has a barrier). Its close
     * must not return before every rank's writes are applied: its end
     * markers' answers make sure of that, or, without markers, the full
     * fence in the close's barrier (ad_delegate_close.c). */

    if (rank == 0) {
        long n = (long) NREC * np * REC;
        unsigned char *all = malloc(n);
        MPI_File rf;
        if (all == NULL || MPI_File_open(MPI_COMM_SELF, path, MPI_MODE_RDONLY, MPI_INFO_NULL, &rf) != MPI_SUCCESS) {
            printf("closetest %s BAD: reopen failed\n", c);
            bad = 1;
        } else {
            MPI_Status st;
            int got = 0;
            if (MPI_File_read_at(rf, 0, all, (int) n, MPI_BYTE, &st) != MPI_SUCCESS)
                bad = 1;
            MPI_Get_count(&st, MPI_BYTE, &got);
            if (got != n) {
                printf("closetest %s BAD: read %d bytes of %ld\n", c, got, n);
                bad = 1;
            }
            for (long i = 0; i < got && !bad; i++)
                if (all[i] != pat(i)) {
                    printf("closetest %s BAD: byte %ld is %d, want %d\n", c, i, all[i], pat(i));
                    bad = 1;
                }
            MPI_File_close(&rf);
        }
        free(all);
    }
    MPI_Allreduce(MPI_IN_PLACE, &bad, 1, MPI_INT, MPI_LOR, MPI_COMM_WORLD);
    if (rank == 0 && !bad)
        printf("closetest %s ok\n", c);
    MPI_Finalize();
    return bad;
}
