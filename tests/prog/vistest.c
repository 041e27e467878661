/*
 * vistest: visibility across ranks without MPI_File_sync. Round k: rank
 * k % N writes a record with delegate_write_ack=sync (so the write is
 * acknowledged when the call returns), all ranks meet in MPI_Barrier, and
 * every other rank reads the record at once. Then a collective write by all
 * ranks, read back at once by every rank. Prints "vistest ok" or the first
 * stale read.
 *
 *   mpiexec -n N vistest PATH
 */
#include <mpi.h>
#include <stdio.h>
#include <string.h>

int main(int argc, char **argv)
{
    int rank, n, bad = 0, anybad;
    MPI_File fh;
    MPI_Info info;
    MPI_Init(&argc, &argv);
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    MPI_Comm_size(MPI_COMM_WORLD, &n);
    MPI_Info_create(&info);
    MPI_Info_set(info, "delegate_write_ack", "sync");
    MPI_Info_set(info, "delegate_region_size", "4096");
    MPI_File_open(MPI_COMM_WORLD, argv[1], MPI_MODE_CREATE | MPI_MODE_RDWR, info, &fh);
    for (int k = 0; k < 200 && !bad; k++) {
        int rec[16], got[16];
        MPI_Offset off = (MPI_Offset) (k * 7919 % 5000) * 64;
        for (int i = 0; i < 16; i++)
            rec[i] = k * 100 + i;
        if (rank == k % n)
            MPI_File_write_at(fh, off, rec, 16, MPI_INT, MPI_STATUS_IGNORE);
        MPI_Barrier(MPI_COMM_WORLD);
        if (rank != k % n) {
            MPI_File_read_at(fh, off, got, 16, MPI_INT, MPI_STATUS_IGNORE);
            if (memcmp(rec, got, sizeof rec)) {
                printf("vistest: rank %d round %d: a stale record\n", rank, k);
                bad = 1;
            }
        }
    }
    /* collective: every rank's part visible to every rank at once */
    int part[1024], all[1024 * 64];
    for (int i = 0; i < 1024; i++)
        part[i] = rank * 1000000 + i;
    MPI_File_write_at_all(fh, (MPI_Offset) rank * sizeof part, part, 1024, MPI_INT, MPI_STATUS_IGNORE);
    MPI_File_read_at(fh, 0, all, 1024 * (n < 64 ? n : 64), MPI_INT, MPI_STATUS_IGNORE);
    for (int r = 0; r < n && r < 64 && !bad; r++)
        if (all[r * 1024] != r * 1000000 || all[r * 1024 + 1023] != r * 1000000 + 1023) {
            printf("vistest: rank %d does not see rank %d's collective part\n", rank, r);
            bad = 1;
        }
    MPI_File_close(&fh);
    MPI_Allreduce(&bad, &anybad, 1, MPI_INT, MPI_LOR, MPI_COMM_WORLD);
    if (rank == 0 && !anybad)
        printf("vistest ok: 200 acknowledged writes and a collective seen by every rank without sync\n");
    MPI_Info_free(&info);
    MPI_Finalize();
    return anybad;
}
