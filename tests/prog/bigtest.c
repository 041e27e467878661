/*
 * bigtest: one request of more than 2 GiB, at an offset past 4 GiB: a
 * contiguous datatype of 2304 one-MiB blocks written with count 1, read back
 * with one call, checked, and the file size checked. Prints "bigtest ok" or
 * what went wrong.
 *
 *   mpiexec -n 1 bigtest PATH
 */
#include <mpi.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

int main(int argc, char **argv)
{
    MPI_File fh;
    MPI_Status st;
    MPI_Datatype big;
    MPI_Count got;
    MPI_Offset size, off = (MPI_Offset) 9 << 29; /* 4.5 GiB */
    const size_t n = (size_t) 2304 << 20;      /* 2.25 GiB */
    MPI_Init(&argc, &argv);
    MPI_File_set_errhandler(MPI_FILE_NULL, MPI_ERRORS_ARE_FATAL);
    MPI_Datatype blk;
    MPI_Type_contiguous(1 << 20, MPI_BYTE, &blk);
    MPI_Type_contiguous(2304, blk, &big);      /* 2304 blocks of 1 MiB */
    MPI_Type_commit(&big);
    uint64_t *w = malloc(n), *r = malloc(n);
    if (!w || !r) {
        printf("bigtest: no memory\n");
        MPI_Abort(MPI_COMM_WORLD, 1);
    }
    for (size_t i = 0; i < n / 8; i++)
        w[i] = (uint64_t) off + 8 * i;
    MPI_File_open(MPI_COMM_SELF, argv[1], MPI_MODE_CREATE | MPI_MODE_RDWR, MPI_INFO_NULL, &fh);
    MPI_File_write_at(fh, off, w, 1, big, &st);
    MPI_Get_elements_x(&st, MPI_BYTE, &got);
    if ((size_t) got != n) {
        printf("bigtest: wrote %lld bytes, want %zu\n", (long long) got, n);
        MPI_Abort(MPI_COMM_WORLD, 1);
    }
    MPI_File_read_at(fh, off, r, 1, big, &st);
    MPI_Get_elements_x(&st, MPI_BYTE, &got);
    MPI_File_get_size(fh, &size);
    MPI_File_close(&fh);
    size_t bad = 0;
    for (size_t i = 0; i < n / 8; i++)
        bad += r[i] != (uint64_t) off + 8 * i;
    if ((size_t) got != n || bad || size != off + (MPI_Offset) n)
        printf("bigtest: read %lld bytes, %zu bad words, size %lld\n", (long long) got, bad,
               (long long) size);
    else
        printf("bigtest ok: one %zu-byte request at offset %lld written and read back\n", n,
               (long long) off);
    MPI_Finalize();
    return 0;
}
