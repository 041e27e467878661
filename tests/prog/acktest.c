/*
 * acktest: writes NBYTES per rank to PATH with delegate_write_ack=sync (each
 * write returns once the servers acknowledged it), prints "acknowledged",
 * then waits until its standard input closes before closing the file.
 * tests/engine.sh kills the server in between: every acknowledged byte must
 * be on the backend once the server has shut down.
 *
 *   mpiexec -n N acktest PATH NBYTES <fifo
 */
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

int main(int argc, char **argv)
{
    int rank, nprocs;
    MPI_Init(&argc, &argv);
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    MPI_Comm_size(MPI_COMM_WORLD, &nprocs);
    if (argc != 3)
        MPI_Abort(MPI_COMM_WORLD, 2);
    long n = atol(argv[2]);
    const long piece = 16384; /* below DELEGATE_LEASE_MIN_LOCAL: buffered by the servers */
    MPI_Info info;
    MPI_Info_create(&info);
    MPI_Info_set(info, "delegate_write_ack", "sync");
    MPI_File fh;
    if (MPI_File_open(MPI_COMM_WORLD, argv[1], MPI_MODE_CREATE | MPI_MODE_WRONLY, info, &fh) != MPI_SUCCESS)
        MPI_Abort(MPI_COMM_WORLD, 1);
    unsigned char *buf = malloc(piece);
    /* rank r owns every nprocs-th piece: the ranks' pieces interleave */
    for (long off = rank * piece; off < n * nprocs; off += piece * nprocs) {
        for (long i = 0; i < piece; i++)
            buf[i] = (unsigned char) ((off + i) * 7 + 3);
        if (MPI_File_write_at(fh, off, buf, (int) piece, MPI_BYTE, MPI_STATUS_IGNORE) != MPI_SUCCESS)
            MPI_Abort(MPI_COMM_WORLD, 1);
    }
    MPI_Barrier(MPI_COMM_WORLD);
    if (rank == 0) {
        printf("acknowledged\n");
        fflush(stdout);
        char c;
        while (read(0, &c, 1) > 0) {
        }
    }
    MPI_Barrier(MPI_COMM_WORLD);
    MPI_File_set_errhandler(fh, MPI_ERRORS_RETURN);
    MPI_File_close(&fh); /* fails: the server is gone */
    free(buf);
    MPI_Info_free(&info);
    MPI_Finalize();
    return 0;
}
