/*
 * Copyright (C) by Argonne National Laboratory
 *     See COPYRIGHT in top-level directory
 */

#include "ad_delegate.h"

/* Flattening of one request into the two lists libdelegate takes: the
 * memory pieces of (buf, count, datatype) in typemap order, and the file
 * pieces the request covers in the view, in view order. Both lists describe
 * the same bytes in the same order; libdelegate pairs them.
 *
 * All offset arithmetic is int64_t (ADIO_Offset, MPI_Count): a view of
 * small blocks over a large file overflows an int long before it overflows
 * MPI_Offset. Zero-length blocks (the LB and UB markers of the flattened
 * representation) are skipped. Adjacent pieces are merged, which never
 * changes the order of the bytes. */

#define ADIOI_DELEGATE_MAX ((int64_t) INT64_MAX)

/* An argument error: offset out of range, or a type ROMIO cannot walk. */
static int bad_offset(const char *myname, int line, const char *what, int64_t a, int64_t b)
{
    char msg[160];

    MPL_snprintf(msg, sizeof(msg), "%s (%lld, %lld)", what, (long long) a, (long long) b);
    return ADIOI_DELEGATE_Err_msg(MPI_SUCCESS, myname, line, MPI_ERR_ARG, "**iobadoffset", msg);
}

static int no_mem(const char *myname, int line)
{
    return MPIO_Err_create_code(MPI_SUCCESS, MPIR_ERR_RECOVERABLE, myname, line, MPI_ERR_NO_MEM,
                                "**nomem2", 0);
}

/* Memory side. MPI_BOTTOM (buf == NULL) with absolute displacements works
 * because every address is computed as an integer. */
static int mem_list(const void *buf, int count, MPI_Datatype datatype, ADIOI_DELEGATE_Lists * l,
                    const char *myname)
{
    ADIOI_Flatlist_node *flat;
    MPI_Aint lb, extent, true_lb, true_extent;
    MPI_Count i, j, nz;
    int64_t left, n, cap;
    int is_contig;

    ADIOI_Datatype_iscontig(datatype, &is_contig);
    if (is_contig) {
        /* ROMIO calls a type with true_lb > 0 non-contiguous; a contiguous
         * one may still start below buf */
        MPI_Type_get_true_extent(datatype, &true_lb, &true_extent);
        l->mem1.base = ADIOI_AINT_CAST_TO_VOID_PTR((MPI_Aint) buf + true_lb);
        l->mem1.len = l->nbytes;
        l->mem = &l->mem1;
        l->nmem = 1;
        return MPI_SUCCESS;
    }

    flat = ADIOI_Flatten_and_find(datatype);
    MPI_Type_get_extent(datatype, &lb, &extent);
    for (nz = 0, i = 0; i < flat->count; i++)
        if (flat->blocklens[i] > 0)
            nz++;
    cap = (int64_t) count *(int64_t) nz;
    if (cap <= 0 || (uint64_t) cap > SIZE_MAX / sizeof(delegate_iov))
        return bad_offset(myname, __LINE__, "memory type has too many pieces", count, nz);
    l->mem = (delegate_iov *) ADIOI_Malloc(cap * sizeof(delegate_iov));
    if (l->mem == NULL)
        return no_mem(myname, __LINE__);

    /* typemap order: the memory type may be decreasing, negative or
     * overlapping; stop after nbytes */
    left = l->nbytes;
    n = 0;
    for (j = 0; j < count && left > 0; j++) {
        MPI_Aint base = (MPI_Aint) buf + (MPI_Aint) j * extent;
        for (i = 0; i < flat->count && left > 0; i++) {
            int64_t len = flat->blocklens[i];
            MPI_Aint addr;

            if (len == 0)
                continue;
            if (len > left)
                len = left;
            addr = base + (MPI_Aint) flat->indices[i];
            if (n > 0 && (MPI_Aint) l->mem[n - 1].base + l->mem[n - 1].len == addr)
                l->mem[n - 1].len += len;
            else {
                l->mem[n].base = ADIOI_AINT_CAST_TO_VOID_PTR(addr);
                l->mem[n].len = len;
                n++;
            }
            left -= len;
        }
    }
    l->nmem = n;
    return MPI_SUCCESS;
}

/* The view, read once per request. */
typedef struct {
    ADIOI_Flatlist_node *flat;
    ADIO_Offset disp;
    MPI_Count size;             /* bytes of data in one filetype */
    MPI_Aint extent;            /* distance between two filetypes */
    int64_t maxend;             /* largest indices[i] + blocklens[i] */
    MPI_Count nz;               /* non-empty blocks in one filetype */
} view_t;

static void view_init(ADIO_File fd, view_t * v)
{
    MPI_Aint lb;
    MPI_Count i;

    v->flat = ADIOI_Flatten_and_find(fd->filetype);
    v->disp = fd->disp;
    MPI_Type_size_x(fd->filetype, &v->size);
    MPI_Type_get_extent(fd->filetype, &lb, &v->extent);
    v->maxend = 0;
    v->nz = 0;
    for (i = 0; i < v->flat->count; i++) {
        if (v->flat->blocklens[i] == 0)
            continue;
        v->nz++;
        if (v->flat->indices[i] + v->flat->blocklens[i] > v->maxend)
            v->maxend = v->flat->indices[i] + v->flat->blocklens[i];
    }
}

/* Finds the block holding data byte r of one filetype (0 <= r < size):
 * returns its index and sets *intra to r's place in it. */
static MPI_Count view_block(const view_t * v, int64_t r, int64_t * intra)
{
    MPI_Count i;

    for (i = 0; i < v->flat->count; i++) {
        int64_t len = v->flat->blocklens[i];
        if (len == 0)
            continue;
        if (r < len)
            break;
        r -= len;
    }
    *intra = r;
    return i;
}

/* The absolute offset of data byte d of the view: where the next access
 * after d bytes of data starts (ADIOI_GEN_SeekIndividual does the same). */
static ADIO_Offset view_position(const view_t * v, int64_t d)
{
    int64_t n = d / v->size, intra;
    MPI_Count i = view_block(v, d % v->size, &intra);

    return v->disp + n * (int64_t) v->extent + v->flat->indices[i] + intra;
}

/* The inverse for an individual file pointer p (an absolute offset): the
 * data bytes of the view before p. If p is in a hole, the access starts at
 * the next block, as ADIOI_Get_position counts it. */
static int view_data_offset(const view_t * v, ADIO_Offset p, int64_t * d, const char *myname)
{
    int64_t n = 0, before, rel = p - v->disp;
    MPI_Count i;

    if (v->extent <= 0)
        return bad_offset(myname, __LINE__, "filetype extent must be positive", v->extent, 0);
    if (rel < 0)
        rel = 0;
    /* every block of the filetypes before n ends at or before p */
    if (rel - v->maxend >= 0)
        n = (rel - v->maxend) / v->extent + 1;
    for (;; n++) {
        before = 0;
        for (i = 0; i < v->flat->count; i++) {
            int64_t idx = n * (int64_t) v->extent + v->flat->indices[i];
            int64_t len = v->flat->blocklens[i];
            if (len == 0)
                continue;
            if (idx + len > rel) {
                if (rel > idx)
                    before += rel - idx;
                *d = n * (int64_t) v->size + before;
                return MPI_SUCCESS;
            }
            before += len;
        }
    }
}

/* File side of a view: the pieces of data bytes [d, d + nbytes). */
static int view_list(const view_t * v, ADIOI_DELEGATE_Lists * l, const char *myname)
{
    int64_t d = l->data_off, left = l->nbytes, n, intra, last, cap, k;
    MPI_Count i;

    /* the pieces reach at most maxend into the last filetype touched */
    last = (d + left - 1) / v->size;
    if (v->extent <= 0)
        return bad_offset(myname, __LINE__, "filetype extent must be positive", v->extent, 0);
    if (last > (ADIOI_DELEGATE_MAX - v->disp - v->maxend) / v->extent)
        return bad_offset(myname, __LINE__, "access beyond the largest MPI_Offset", d, left);

    n = d / v->size;
    cap = (last - n + 1) * (int64_t) v->nz;
    if ((uint64_t) cap > SIZE_MAX / sizeof(delegate_extent))
        return bad_offset(myname, __LINE__, "view has too many pieces", d, left);
    if (cap == 1)
        l->ext = &l->ext1;
    else {
        l->ext = (delegate_extent *) ADIOI_Malloc(cap * sizeof(delegate_extent));
        if (l->ext == NULL)
            return no_mem(myname, __LINE__);
    }

    i = view_block(v, d % v->size, &intra);
    k = 0;
    while (left > 0) {
        int64_t len = v->flat->blocklens[i] - intra;
        if (len > 0) {
            int64_t off = v->disp + n * (int64_t) v->extent + v->flat->indices[i] + intra;
            if (len > left)
                len = left;
            if (k > 0 && l->ext[k - 1].off + l->ext[k - 1].len == off)
                l->ext[k - 1].len += len;
            else {
                l->ext[k].off = off;
                l->ext[k].len = len;
                k++;
            }
            left -= len;
        }
        intra = 0;
        if (++i == v->flat->count) {
            i = 0;
            n++;
        }
    }
    l->next = k;
    return MPI_SUCCESS;
}

/* Builds both lists of one request. file_mode says how to read offset:
 * ADIOI_DELEGATE_FILE_BYTES (the Contig slots: an absolute byte offset, or
 * fd->fp_ind) or ADIOI_DELEGATE_FILE_VIEW (the Strided and collective slots:
 * etypes of data in the view, or fd->fp_ind). l->nbytes may be 0: then both
 * lists are empty. Returns an MPI error code; on error the lists are empty
 * and need no freeing. */
int ADIOI_DELEGATE_Build_lists(ADIO_File fd, const void *buf, int count, MPI_Datatype datatype,
                               int file_ptr_type, ADIO_Offset offset, int file_mode,
                               ADIOI_DELEGATE_Lists * l, const char *myname)
{
    MPI_Count type_size;
    int filetype_is_contig, err;
    view_t v;

    memset(l, 0, sizeof(*l));
    MPI_Type_size_x(datatype, &type_size);
    l->nbytes = (int64_t) count *(int64_t) type_size;

    if (file_mode == ADIOI_DELEGATE_FILE_BYTES) {
        l->view = 0;
        l->data_off = (file_ptr_type == ADIO_INDIVIDUAL) ? fd->fp_ind : offset;
        if (l->data_off < 0 || l->data_off > ADIOI_DELEGATE_MAX - l->nbytes)
            return bad_offset(myname, __LINE__, "offset + length overflows MPI_Offset",
                              l->data_off, l->nbytes);
        if (l->nbytes == 0)
            return MPI_SUCCESS;
        l->ext1.off = l->data_off;
        l->ext1.len = l->nbytes;
        l->ext = &l->ext1;
        l->next = 1;
    } else {
        l->view = 1;
        ADIOI_Datatype_iscontig(fd->filetype, &filetype_is_contig);
        if (filetype_is_contig) {
            /* set_view rejects negative displacements: data starts at disp */
            if (file_ptr_type == ADIO_INDIVIDUAL)
                l->data_off = fd->fp_ind - fd->disp;
            else if (offset > ADIOI_DELEGATE_MAX / fd->etype_size)
                return bad_offset(myname, __LINE__, "offset overflows MPI_Offset", offset,
                                  fd->etype_size);
            else
                l->data_off = offset * fd->etype_size;
            if (l->data_off < 0 || l->data_off > ADIOI_DELEGATE_MAX - fd->disp - l->nbytes)
                return bad_offset(myname, __LINE__, "offset + length overflows MPI_Offset",
                                  fd->disp + l->data_off, l->nbytes);
            if (l->nbytes == 0)
                return MPI_SUCCESS;
            l->ext1.off = fd->disp + l->data_off;
            l->ext1.len = l->nbytes;
            l->ext = &l->ext1;
            l->next = 1;
        } else {
            view_init(fd, &v);
            if (v.size == 0) {
                /* a view without data: nothing can be accessed */
                l->nbytes = 0;
                return MPI_SUCCESS;
            }
            if (file_ptr_type == ADIO_INDIVIDUAL) {
                err = view_data_offset(&v, fd->fp_ind, &l->data_off, myname);
                if (err != MPI_SUCCESS)
                    return err;
            } else if (offset > ADIOI_DELEGATE_MAX / fd->etype_size)
                return bad_offset(myname, __LINE__, "offset overflows MPI_Offset", offset,
                                  fd->etype_size);
            else
                l->data_off = offset * fd->etype_size;
            if (l->data_off > ADIOI_DELEGATE_MAX - l->nbytes)
                return bad_offset(myname, __LINE__, "offset + length overflows MPI_Offset",
                                  l->data_off, l->nbytes);
            if (l->nbytes == 0)
                return MPI_SUCCESS;
            err = view_list(&v, l, myname);
            if (err != MPI_SUCCESS) {
                ADIOI_DELEGATE_Free_lists(l);
                return err;
            }
        }
    }

    err = mem_list(buf, count, datatype, l, myname);
    if (err != MPI_SUCCESS)
        ADIOI_DELEGATE_Free_lists(l);
    return err;
}

/* Where the individual file pointer goes after nbytes of the request were
 * accessed: the absolute offset of the next data byte of the view. */
ADIO_Offset ADIOI_DELEGATE_Position_after(ADIO_File fd, const ADIOI_DELEGATE_Lists * l,
                                          int64_t nbytes)
{
    int filetype_is_contig;
    view_t v;

    if (!l->view)
        return l->data_off + nbytes;
    ADIOI_Datatype_iscontig(fd->filetype, &filetype_is_contig);
    if (filetype_is_contig)
        return fd->disp + l->data_off + nbytes;
    view_init(fd, &v);
    if (v.size == 0)
        return fd->fp_ind;
    return view_position(&v, l->data_off + nbytes);
}

void ADIOI_DELEGATE_Free_lists(ADIOI_DELEGATE_Lists * l)
{
    if (l->mem != NULL && l->mem != &l->mem1)
        ADIOI_Free(l->mem);
    if (l->ext != NULL && l->ext != &l->ext1)
        ADIOI_Free(l->ext);
    l->mem = NULL;
    l->ext = NULL;
    l->nmem = l->next = 0;
}
