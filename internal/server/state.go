package server

import (
	"errors"
	"fmt"
	"hash/fnv"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/delegate-io/delegate/internal/backend"
	"github.com/delegate-io/delegate/internal/extent"
	"github.com/delegate-io/delegate/internal/journal"
)

// The crash-safe write-behind buffer (DESIGN.md §8, internal/journal): with
// Config.StateDir set, every chunk a file buffers is a slot of a mmap'd
// file in that directory, so acknowledged data outlives the process. New
// writes what a killed predecessor left to the backend before the server
// serves anyone.

// fileSlots gives one file's buffers slots of the server's journal. Taking
// a slot happens under the file's buffer lock; it costs what faulting in a
// fresh heap chunk did (the pages are allocated, by fallocate), plus a
// file creation and mmap once per segment of about 64 MiB.
type fileSlots struct {
	j    *journal.Journal
	f    *file  // names its backend file in each slot (dev, ino, birth)
	warn func() // called when no slot could be had
}

func (fs fileSlots) Acquire(off int64) extent.Slot {
	id := journal.FileID{Dev: fs.f.dev, Ino: fs.f.ino, Birth: fs.f.birth.Load()}
	if s := fs.j.Acquire(fs.f.path, id, off); s != nil {
		return s
	}
	if fs.warn != nil {
		fs.warn()
	}
	return nil // not a typed nil: the index falls back to the heap
}

func (fs fileSlots) Footprint() int64 { return fs.j.Footprint() }

// newIndex returns an empty write-behind buffer for the file: in the
// journal's slots unless the server has none or the file was unlinked (its
// data must never be replayed onto a file created later at its path).
func (f *file) newIndex() *extent.Index {
	x := f.eng.newIndex()
	if j := f.eng.journal; j != nil && !f.unlinked.Load() {
		x.UseSlots(fileSlots{j: j, f: f, warn: f.eng.warnFallback})
	}
	return x
}

// Recovery is what a server wrote at start from its state directory.
type Recovery struct {
	Files, Chunks, Bytes int64
	Dropped              int64 // chunks of files that no longer exist
}

// openJournal opens cfg.StateDir and writes every pending slot to the
// backend, each file's slots oldest first (journal rule J4), then fsyncs
// the file and releases its slots. A file that no longer exists is
// reported and its data dropped; any other failure stops the server from
// starting and leaves the state directory as it is, for another attempt.
func (s *Server) openJournal(fsys backend.FS, keep int) error {
	start := time.Now()
	j, pend, err := journal.Open(s.cfg.StateDir, s.cfg.ChunkBytes, keep)
	if err != nil {
		return err
	}
	// The root the paths are relative to, for `delegate-server recover`.
	if err := os.WriteFile(filepath.Join(s.cfg.StateDir, "root"), []byte(s.cfg.Root+"\n"), 0o600); err != nil {
		j.Close(false)
		return fmt.Errorf("state dir: %w", err)
	}
	rec, err := Recover(fsys, pend, s.log)
	s.recovery = rec
	if err != nil {
		j.Close(false)
		return fmt.Errorf("recovery from %s (left as it is): %w", s.cfg.StateDir, err)
	}
	if rec.Chunks > 0 || rec.Dropped > 0 {
		s.log.Warn("recovered acknowledged data a previous server left unwritten",
			"state_dir", s.cfg.StateDir, "files", rec.Files, "chunks", rec.Chunks, "bytes", rec.Bytes,
			"dropped_chunks", rec.Dropped, "took", time.Since(start).Round(time.Millisecond))
	}
	// The recovered slots are free now, but released slots stay resident
	// (the flusher trims them when idle, and no write has woken it yet):
	// give back those beyond the keep at once.
	j.Trim()
	s.journal = j
	return nil
}

// Recover writes the pending slots to the backend (see openJournal) and
// releases each once its file is written and synced.
func Recover(fsys backend.FS, pend []*journal.Pending, log *slog.Logger) (Recovery, error) {
	var rec Recovery
	for len(pend) > 0 {
		n := 1
		for n < len(pend) && pend[n].Path == pend[0].Path {
			n++
		}
		group := pend[:n]
		pend = pend[n:]
		path := group[0].Path
		bf, err := fsys.OpenFile(path, os.O_RDWR, 0)
		if errors.Is(err, fs.ErrNotExist) {
			log.Error("recovery: the file no longer exists; its buffered data is dropped", "file", path, "chunks", len(group))
			rec.Dropped += int64(len(group))
			for _, p := range group {
				p.Release()
			}
			continue
		}
		if err != nil {
			return rec, fmt.Errorf("open %s: %w", path, err)
		}
		// A chunk goes only to the file it was buffered for: the path may
		// name another one now (removed and created again, or renamed
		// over, while no server ran), whose bytes it must not overwrite.
		// The inode number and the birth time tell (a new file often gets
		// a removed one's inode number, never its birth time), not the
		// device, which a remount may renumber under the same file; where
		// a birth time is not known (a file system without one), the
		// device and inode number, which a reused inode number fools. A
		// slot that names no file (written before slots recorded it) goes
		// by path, as it always did.
		var other []*journal.Pending
		if dev, ino, ok := backend.IdentityOf(bf); ok {
			birth := backend.BirthOf(bf)
			mine := group[:0:0]
			for _, p := range group {
				same := p.ID.Ino == ino
				if p.ID.Birth != 0 && birth != 0 {
					same = same && p.ID.Birth == birth
				} else {
					same = same && p.ID.Dev == dev
				}
				if p.ID.Ino != 0 && !same {
					other = append(other, p)
				} else {
					mine = append(mine, p)
				}
			}
			group = mine
		}
		if len(other) > 0 {
			log.Error("recovery: the path names another file than the one whose data was buffered (replaced while no server ran); that data is dropped",
				"file", path, "chunks", len(other))
			rec.Dropped += int64(len(other))
			for _, p := range other {
				p.Release()
			}
		}
		if len(group) == 0 {
			bf.Close() // opened for reading its identity: nothing written
			continue
		}
		for _, p := range group { // oldest first: newer bytes land last
			err = p.Runs(func(off int64, b []byte) error {
				_, err := bf.WriteAt(b, off)
				return err
			})
			if err != nil {
				bf.Close()
				return rec, fmt.Errorf("write %s: %w", path, err)
			}
			rec.Bytes += p.Bytes()
		}
		if err := bf.Sync(); err != nil {
			bf.Close()
			return rec, fmt.Errorf("sync %s: %w", path, err)
		}
		if err := bf.Close(); err != nil {
			return rec, fmt.Errorf("close %s: %w", path, err)
		}
		for _, p := range group {
			p.Release()
		}
		rec.Files++
		rec.Chunks += int64(len(group))
	}
	return rec, nil
}

// closeJournal ends the state directory at shutdown: removed when every
// byte reached the backend, kept (for the next start to recover) when a
// drain failed or did not finish.
func (s *Server) closeJournal(drainErr error) {
	j := s.journal
	if j == nil {
		return
	}
	inUse := j.Stats().InUse
	removed, err := j.Close(drainErr == nil)
	if err != nil {
		s.log.Error("state dir", "dir", j.Dir(), "err", err)
	}
	if !removed {
		s.log.Warn("buffered data kept in the state directory: a server started with the same command line writes it",
			"state_dir", j.Dir(), "chunks", inUse)
	}
}

// DefaultStateDir is where a server keeps its buffers unless told
// otherwise: on /dev/shm (memory that outlives processes), named by the
// user, the listen address and the root, so that the same command line
// finds it again after a crash. It returns "" when there is no /dev/shm.
func DefaultStateDir(listen, root string) string {
	if fi, err := os.Stat("/dev/shm"); err != nil || !fi.IsDir() {
		return ""
	}
	if abs, err := filepath.Abs(root); err == nil {
		root = abs
	}
	h := fnv.New64a()
	fmt.Fprintf(h, "%s\x00%s", listen, filepath.Clean(root))
	return filepath.Join("/dev/shm", fmt.Sprintf("delegate-%d-%016x", os.Getuid(), h.Sum64()))
}

// RecoverDir writes what a state directory holds to the backend, under the
// root the server that left it recorded, and removes the directory once
// everything is written (delegate-server recover: for state left by a
// server that will not be started again with the same command line).
func RecoverDir(dir string, log *slog.Logger) (Recovery, error) {
	if _, err := os.Stat(filepath.Join(dir, "lock")); err != nil {
		return Recovery{}, fmt.Errorf("%s is not a state directory: %w", dir, err)
	}
	root := "/"
	if b, err := os.ReadFile(filepath.Join(dir, "root")); err == nil && len(strings.TrimSpace(string(b))) > 0 {
		root = strings.TrimSpace(string(b))
	}
	fsys, err := backend.NewOS(root)
	if err != nil {
		return Recovery{}, err
	}
	defer fsys.Close()
	// The chunk size only matters for new slots: existing segments keep
	// their own.
	j, pend, err := journal.Open(dir, DefaultConfig().ChunkBytes, 0)
	if err != nil {
		return Recovery{}, err
	}
	rec, err := Recover(fsys, pend, log)
	if err != nil {
		j.Close(false)
		return rec, err
	}
	_, err = j.Close(true)
	return rec, err
}
