/*
 * stripetest: opens PATH with ROMIO's striping hints (UNIT and FACTOR, "-"
 * for none) and optionally delegate_region_size (REGION, "-" for none),
 * prints the region size the library chose (delegate_region_size from
 * MPI_File_get_info) on rank 0 as "region N", then has every rank write
 * NBYTES at rank * NBYTES in one call and reads it back. tests/stripes.sh
 * checks the region against route.FitRegion and the servers' extent
 * counters against it.
 *
 *   mpiexec -n N stripetest PATH UNIT FACTOR REGION NBYTES
 */
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "mpiclass.h"

int main(int argc, char **argv)
{
    int rank, flag;
    MPI_Init(&argc, &argv);
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    if (argc != 6)
        MPI_Abort(MPI_COMM_WORLD, 2);
    long n = atol(argv[5]);
    MPI_Info info;
    MPI_Info_create(&info);
    if (strcmp(argv[2], "-") != 0)
        MPI_Info_set(info, "striping_unit", argv[2]);
    if (strcmp(argv[3], "-") != 0)
        MPI_Info_set(info, "striping_factor", argv[3]);
    if (strcmp(argv[4], "-") != 0)
        MPI_Info_set(info, "delegate_region_size", argv[4]);
    MPI_File fh;
    check(MPI_File_open(MPI_COMM_WORLD, argv[1], MPI_MODE_CREATE | MPI_MODE_RDWR, info, &fh), "open");
    MPI_File_set_errhandler(fh, MPI_ERRORS_RETURN);
    MPI_Info got;
    char value[MPI_MAX_INFO_VAL + 1];
    check(MPI_File_get_info(fh, &got), "get_info");
    MPI_Info_get(got, "delegate_region_size", MPI_MAX_INFO_VAL, value, &flag);
    if (rank == 0)
        printf("region %s\n", flag ? value : "?");
    MPI_Info_free(&got);

    unsigned char *buf = malloc(n), *back = malloc(n);
    for (long i = 0; i < n; i++)
        buf[i] = (unsigned char) ((rank * n + i) * 13 + 5);
    check(MPI_File_write_at(fh, rank * n, buf, (int) n, MPI_BYTE, MPI_STATUS_IGNORE), "write");
    check(MPI_File_sync(fh), "sync");
    MPI_Barrier(MPI_COMM_WORLD);
    check(MPI_File_read_at(fh, rank * n, back, (int) n, MPI_BYTE, MPI_STATUS_IGNORE), "read");
    if (memcmp(buf, back, n) != 0) {
        fprintf(stderr, "stripetest: rank %d read back other bytes\n", rank);
        MPI_Abort(MPI_COMM_WORLD, 1);
    }
    check(MPI_File_close(&fh), "close");
    free(buf);
    free(back);
    MPI_Info_free(&info);
    MPI_Finalize();
    return 0;
}
