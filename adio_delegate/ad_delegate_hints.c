/*
 * Copyright (C) by Argonne National Laboratory
 *     See COPYRIGHT in top-level directory
 */

#include "ad_delegate.h"

/* Hints. The driver's hints are libdelegate's: every info key that starts
 * with "delegate_" (delegate_cork, delegate_write_ack, delegate_region_size,
 * ...) is passed to the library as is; the library validates keys and values
 * and its messages name the bad hint.
 *
 * - Before the file is open (SetInfo from ADIO_Open runs before Open, with
 *   fd->fs_ptr == NULL) the keys are only recorded in fd->info, and Open
 *   hands them to delegate_open.
 * - After open, fd->info holds the effective value of every hint the library
 *   knows, so MPI_File_get_info reports them.
 * - On an open file, a changed value is passed to delegate_set_hint. A hint
 *   the library fixes at open (DELEGATE_ENOSYS) is left alone, as ROMIO
 *   ignores cb_nodes after open; fd->info keeps reporting the value in
 *   force.
 * - ROMIO's striping_unit and striping_factor go to delegate_open too (the
 *   library fits the file's regions to the stripes, internal/route); they
 *   are fixed at open, so SetInfo on an open file does not pass them.
 *   ADIOI_GEN_SetInfo records striping_unit in fd->info; striping_factor
 *   is recorded here. */

#define ADIOI_DELEGATE_PREFIX "delegate_"

static int is_delegate_key(const char *key)
{
    return strncmp(key, ADIOI_DELEGATE_PREFIX, sizeof(ADIOI_DELEGATE_PREFIX) - 1) == 0;
}

/* ROMIO hints the library reads at open */
static int is_striping_key(const char *key)
{
    return strcmp(key, "striping_unit") == 0 || strcmp(key, "striping_factor") == 0;
}

/* Collects the delegate_* keys of fd->info for delegate_open. Returns 0, or
 * -1 when out of memory. */
int ADIOI_DELEGATE_Open_hints(ADIO_File fd, delegate_hint ** hints, int *nhints)
{
    char key[MPI_MAX_INFO_KEY + 1], value[MPI_MAX_INFO_VAL + 1];
    delegate_hint *h;
    int nkeys = 0, i, n, flag;

    *hints = NULL;
    *nhints = 0;
    if (fd->info == MPI_INFO_NULL)
        return 0;
    MPI_Info_get_nkeys(fd->info, &nkeys);
    if (nkeys == 0)
        return 0;
    h = (delegate_hint *) ADIOI_Calloc(nkeys, sizeof(*h));
    if (h == NULL)
        return -1;
    for (i = 0, n = 0; i < nkeys; i++) {
        MPI_Info_get_nthkey(fd->info, i, key);
        if (!is_delegate_key(key) && !is_striping_key(key))
            continue;
        ADIOI_Info_get(fd->info, key, MPI_MAX_INFO_VAL, value, &flag);
        if (!flag)
            continue;
        h[n].key = ADIOI_Strdup(key);
        h[n].value = ADIOI_Strdup(value);
        n++;
        if (h[n - 1].key == NULL || h[n - 1].value == NULL) {
            ADIOI_DELEGATE_Free_hints(h, n);
            return -1;
        }
    }
    *hints = h;
    *nhints = n;
    return 0;
}

void ADIOI_DELEGATE_Free_hints(delegate_hint * hints, int nhints)
{
    int i;

    if (hints == NULL)
        return;
    for (i = 0; i < nhints; i++) {
        ADIOI_Free((void *) hints[i].key);
        ADIOI_Free((void *) hints[i].value);
    }
    ADIOI_Free(hints);
}

/* Writes the effective value of every hint the library knows into
 * fd->info. Local: no collective calls. */
void ADIOI_DELEGATE_Install_hints(ADIO_File fd)
{
    ADIOI_DELEGATE_File *f = fd->fs_ptr;
    char key[MPI_MAX_INFO_KEY + 1], value[MPI_MAX_INFO_VAL + 1];
    int i, rc;

    if (fd->info == MPI_INFO_NULL)
        MPI_Info_create(&fd->info);
    /* bounded, whatever the library answers */
    for (i = 0; i < 4096; i++) {
        rc = ADIOI_DLG.delegate_hint_name(i, key, sizeof(key));
        if (rc == DELEGATE_ENOENT)
            break;
        if (rc != DELEGATE_OK)
            continue;
        if (ADIOI_DLG.delegate_get_hint(f->fh, key, value, sizeof(value)) == DELEGATE_OK)
            ADIOI_Info_set(fd->info, key, value);
    }
}

/* The MPI error of hints the library refused: an unknown key
 * (DELEGATE_EHINTKEY) gives MPI_ERR_INFO_KEY, a bad value (DELEGATE_EHINT)
 * MPI_ERR_INFO_VALUE. The message is the library's (on handle), which names
 * the hint. */
int ADIOI_DELEGATE_Hint_err(const char *myname, int line, int code, int handle,
                            const delegate_hint * hints, int nhints)
{
    char msg[512];
    const char *generic;
    int cls, rc;

    if (code == DELEGATE_EHINTKEY) {
        cls = MPI_ERR_INFO_KEY;
        generic = "**infokey";
    } else if (code == DELEGATE_EHINT) {
        cls = MPI_ERR_INFO_VALUE;
        generic = "**infoval";
    } else
        return ADIOI_DELEGATE_err(myname, NULL, line, code, handle);

    msg[0] = '\0';
    rc = ADIOI_DLG.delegate_errmsg(handle, msg, sizeof(msg));
    if ((rc != DELEGATE_OK && rc != DELEGATE_ERANGE) || msg[0] == '\0')
        MPL_snprintf(msg, sizeof(msg), "%s delegate hint%s%s",
                     code == DELEGATE_EHINTKEY ? "unknown" : "invalid value of a",
                     nhints == 1 ? " " : "", nhints == 1 ? hints[0].key : "");
    return ADIOI_DELEGATE_Err_msg(MPI_SUCCESS, myname, line, cls, generic, msg);
}

/* ADIOI_GEN_SetInfo does the ROMIO hints; this adds the delegate_* ones.
 * Called from ADIO_Open before Open (fd->fs_ptr == NULL), from set_view
 * and from MPI_File_set_info. */
void ADIOI_DELEGATE_SetInfo(ADIO_File fd, MPI_Info users_info, int *error_code)
{
    static char myname[] = "ADIOI_DELEGATE_SETINFO";
    ADIOI_DELEGATE_File *f = fd->fs_ptr;
    char key[MPI_MAX_INFO_KEY + 1], value[MPI_MAX_INFO_VAL + 1], cur[MPI_MAX_INFO_VAL + 1];
    delegate_hint hint;
    int nkeys = 0, i, flag, rc, err;

    ADIOI_GEN_SetInfo(fd, users_info, error_code);
    if (*error_code != MPI_SUCCESS || users_info == MPI_INFO_NULL)
        return;

    MPI_Info_get_nkeys(users_info, &nkeys);
    for (i = 0; i < nkeys; i++) {
        MPI_Info_get_nthkey(users_info, i, key);
        if (f == NULL && strcmp(key, "striping_factor") == 0) {
            /* not open yet: recorded for delegate_open (ADIOI_GEN_SetInfo
             * records striping_unit itself) */
            ADIOI_Info_get(users_info, key, MPI_MAX_INFO_VAL, value, &flag);
            if (flag)
                ADIOI_Info_set(fd->info, key, value);
            continue;
        }
        if (!is_delegate_key(key))
            continue;
        ADIOI_Info_get(users_info, key, MPI_MAX_INFO_VAL, value, &flag);
        if (!flag)
            continue;
        if (f == NULL) {
            /* not open yet: delegate_open checks it */
            ADIOI_Info_set(fd->info, key, value);
            continue;
        }

        ADIOI_Info_get(fd->info, key, MPI_MAX_INFO_VAL, cur, &flag);
        if (flag && strcmp(cur, value) == 0)
            continue;
        rc = ADIOI_DLG.delegate_set_hint(f->fh, key, value);
        if (rc == DELEGATE_ENOSYS)
            continue;
        if (rc != DELEGATE_OK) {
            hint.key = key;
            hint.value = value;
            err = ADIOI_DELEGATE_Hint_err(myname, __LINE__, rc, f->fh, &hint, 1);
            if (*error_code == MPI_SUCCESS)
                *error_code = err;
            continue;
        }
        if (ADIOI_DLG.delegate_get_hint(f->fh, key, cur, sizeof(cur)) == DELEGATE_OK)
            ADIOI_Info_set(fd->info, key, cur);
        else
            ADIOI_Info_set(fd->info, key, value);
    }
}
