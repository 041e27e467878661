/* stage.h: write combining (stage.c) and direct reads (direct.c) in C,
 * used by shim.c. */
#ifndef DELEGATE_STAGE_H
#define DELEGATE_STAGE_H

#include <stdint.h>
#include "delegate.h"

#define DLG_STAGE_ON 1          /* small writes may be staged */
#define DLG_STAGE_CORKED 2      /* the file is corked: the sender thread leaves it alone */

/* dlg_stage_open gives fh a stage: write combining if policy allows it. */
void dlg_stage_open(int fh, int policy);
/* dlg_stage_policy updates the policy (after a hint or atomicity change). */
void dlg_stage_policy(int fh, int policy);
/* Handing over is stage.c's word for passing staged buffers to Go
 * (client.File.Write); "flush" is kept for a server writing its buffer to
 * the backend, "sync" for flush plus fsync (ARCHITECTURE.md, Words).
 * dlg_stage_hand_over hands fh's staged writes over; it returns the first
 * failure, also one of an earlier background hand-over. */
int dlg_stage_hand_over(int fh);
/* dlg_stage_hand_over_all hands every file's staged writes over (cheap
 * when no stage holds data). A failure stays with its file for its next call; the first
 * is also returned. */
int dlg_stage_hand_over_all(void);
/* dlg_stage_close drops fh's stage; call dlg_stage_hand_over first. */
void dlg_stage_close(int fh);
/* dlg_stage_write stages a write and returns 1 with *rc set, or returns 0
 * when the write must go to Go (after dlg_stage_hand_over). */
int dlg_stage_write(int fh, const delegate_iov *mem, int64_t nmem, const delegate_extent *ext,
                    int64_t next, const delegate_io_opts *opts, int64_t *nbytes, int *rc);

/* dlg_stage_hand_over_fence hands every stage's data to Go; failures stay with
 * their files. */
void dlg_stage_hand_over_fence(void);
/* The fence word (delegate_fence_word) and the word Go keeps nonzero while
 * some path is open more than once in this process (dlg_shared). */
long long *dlg_fence_word(void);
long long *dlg_shared_word(void);
int dlg_shared(void);

/* dlg_stage_stop stops the sender thread and waits for it (finalize). */
void dlg_stage_stop(void);

/* dlg_stage_drop_all forgets every stage (after the files were closed). */
void dlg_stage_drop_all(void);
/* dlg_direct_open gives fh a direct read path (set up by its first read);
 * dlg_direct_close drops it after dlgClose; dlg_direct_drop_all drops
 * every one (finalize). */
void dlg_direct_open(int fh);
void dlg_direct_close(int fh);
void dlg_direct_drop_all(void);
/* dlg_direct_read reads from the backend file in C when that is safe and
 * returns 1 with *rc set, or returns 0 when the read must go to Go. Call
 * dlg_stage_hand_over first. */
int dlg_direct_read(int fh, const delegate_iov *mem, int64_t nmem, const delegate_extent *ext,
                    int64_t next, const delegate_io_opts *opts, int64_t *nbytes, int *rc);
/* dlg_direct_write makes a lease write in C when that is allowed
 * (client.File.ExportLease) and returns 1 with *rc set, or returns 0 when
 * the write must go to Go. With first, it is called before
 * dlg_stage_write, once for every write (it notes where the write lies,
 * and a far one may be leased then, when nothing is staged); without, after
 * dlg_stage_hand_over. */
int dlg_direct_write(int fh, const delegate_iov *mem, int64_t nmem, const delegate_extent *ext,
                     int64_t next, const delegate_io_opts *opts, int first, int64_t *nbytes, int *rc);

#endif
