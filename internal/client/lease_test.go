package client_test

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/delegate-io/delegate/internal/client"
	"github.com/delegate-io/delegate/internal/server"
	"github.com/delegate-io/delegate/internal/stats"
	"github.com/delegate-io/delegate/internal/testutil"
	"github.com/delegate-io/delegate/internal/wire"
	"golang.org/x/sys/unix"
)

const leaseSize = 4 << 20

func pattern(n int, seed byte) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(i*7/3) + seed
	}
	return b
}

func writeAt(t *testing.T, f *client.File, off int64, p []byte, o client.IOOpts) {
	t.Helper()
	if n, err := f.Write([][]byte{p}, []client.Extent{{Off: off, Len: int64(len(p))}}, o); err != nil || n != int64(len(p)) {
		t.Fatalf("write %d bytes at %d: %d, %v", len(p), off, n, err)
	}
}

func readAt(t *testing.T, f *client.File, off int64, n int) []byte {
	t.Helper()
	b := make([]byte, n)
	got, err := f.Read([][]byte{b}, []client.Extent{{Off: off, Len: int64(n)}}, client.IOOpts{})
	if err != nil {
		t.Fatal(err)
	}
	return b[:got]
}

func TestLeaseMinDefault(t *testing.T) {
	if d := server.DefaultConfig().DirectBytes; client.DefaultLeaseMin != d {
		t.Fatalf("DefaultLeaseMin %d, the server's default --direct %d", client.DefaultLeaseMin, d)
	}
}

// TestExportLeaseThresholds: what ExportLease hands the C library (the
// lease threshold, the far threshold, whether the write at hand gets the
// descriptor), on a local file system.
func TestExportLeaseThresholds(t *testing.T) {
	const far, local = client.DefaultLeaseMinFar, client.DefaultLeaseMinLocal
	tests := []struct {
		name         string
		mutate       func(*client.Config)
		shortest     int64
		lim, wantFar int64
		state        int
		readOnly     bool
	}{
		{name: "a far-sized write", shortest: far, lim: local, wantFar: far, state: client.LeaseReady},
		{name: "below both", shortest: far - 1, lim: local, wantFar: far, state: client.LeaseLater},
		{name: "LeaseMinFar 0", mutate: func(c *client.Config) { c.LeaseMinFar = 0 },
			shortest: far, lim: local, state: client.LeaseLater},
		{name: "LeaseMinLocal 0: no local rule at all", mutate: func(c *client.Config) { c.LeaseMinLocal = 0 },
			shortest: far, lim: client.DefaultLeaseMin, state: client.LeaseLater},
		{name: "far not below the threshold", mutate: func(c *client.Config) { c.LeaseMinFar = local },
			shortest: local, lim: local, state: client.LeaseReady},
		{name: "leases off", mutate: func(c *client.Config) { c.LeaseMin = 0 }, shortest: 1 << 20, state: client.LeaseNever},
		{name: "read-only", shortest: 1 << 20, lim: local, state: client.LeaseNever, readOnly: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := testutil.Start(t, testutil.Options{})
			var st unix.Statfs_t
			if unix.Statfs(c.Dir, &st) != nil || !client.LocalFS(st.Type) {
				t.Skipf("%s is not on a local file system", c.Dir)
			}
			path := filepath.Join(c.Dir, "f")
			if err := os.WriteFile(path, nil, 0o644); err != nil {
				t.Fatal(err)
			}
			flags := uint32(wire.ORdwr)
			if tc.readOnly {
				flags = wire.ORdonly
			}
			f := open(t, c.Client(t, tc.mutate), path, flags, nil)
			defer f.Close()
			var counters [3]atomic.Int64
			fd, lim, gotFar, state := f.ExportLease(tc.shortest, &counters)
			if state != tc.state || lim != tc.lim || gotFar != tc.wantFar || (state == client.LeaseReady) != (fd >= 0) {
				t.Fatalf("ExportLease(%d) = fd %d, lim %d, far %d, state %d; want lim %d, far %d, state %d",
					tc.shortest, fd, lim, gotFar, state, tc.lim, tc.wantFar, tc.state)
			}
		})
	}
}

// TestLocalFS: the file systems where LeaseMinLocal applies (the page
// cache of this host gathers the pieces) and some where it must not (the
// servers' runs are the point there).
func TestLocalFS(t *testing.T) {
	for _, tc := range []struct {
		name  string
		magic int64
		local bool
	}{
		{"ext2/3/4", unix.EXT4_SUPER_MAGIC, true},
		{"xfs", unix.XFS_SUPER_MAGIC, true},
		{"btrfs", unix.BTRFS_SUPER_MAGIC, true},
		{"f2fs", unix.F2FS_SUPER_MAGIC, true},
		{"tmpfs", unix.TMPFS_MAGIC, true},
		{"nfs", unix.NFS_SUPER_MAGIC, false},
		{"lustre", 0x0BD00BD0, false},
		{"gpfs", 0x47504653, false},
		{"fuse (sshfs)", unix.FUSE_SUPER_MAGIC, false},
		{"overlay", unix.OVERLAYFS_SUPER_MAGIC, false},
		{"cifs", unix.CIFS_SUPER_MAGIC, false},
	} {
		if got := client.LocalFS(tc.magic); got != tc.local {
			t.Errorf("%s (%#x): local %v, want %v", tc.name, tc.magic, got, tc.local)
		}
	}
}

// TestLeaseWrites: a large blocking write goes to the backend from the
// client exactly when the lease conditions hold (counted in LeaseWrites),
// and what every reader sees afterwards is right either way.
func TestLeaseWrites(t *testing.T) {
	tests := []struct {
		name    string
		opts    testutil.Options
		mutate  func(*client.Config)
		prepare func(t *testing.T, mine, other *client.File) // before the 4 MiB write at 0
		io      client.IOOpts
		iwrite  bool
		lease   bool // the 4 MiB write is a lease write
		local   bool // the case needs the test's directory on a local file system
		want    func() []byte
	}{
		{name: "clean, 1 server", lease: true},
		{name: "clean, 3 servers", opts: testutil.Options{Servers: 3}, lease: true},
		{name: "clean, write_ack", io: client.IOOpts{Ack: true}, lease: true},
		{name: "own small write buffered", lease: false,
			prepare: func(t *testing.T, mine, _ *client.File) {
				writeAt(t, mine, leaseSize+100, []byte("tail"), client.IOOpts{})
			}},
		{name: "after a write through the server, clean again", lease: true,
			prepare: func(t *testing.T, mine, other *client.File) {
				writeAt(t, other, 1000, []byte("older bytes"), client.IOOpts{Ack: true})
				writeAt(t, mine, 2*leaseSize, pattern(leaseSize, 7), client.IOOpts{}) // through it
				if err := other.Sync(); err != nil {
					t.Fatal(err)
				}
			}},
		{name: "another rank's buffered bytes beneath", lease: false,
			prepare: func(t *testing.T, _, other *client.File) {
				writeAt(t, other, 1000, []byte("older bytes"), client.IOOpts{Ack: true}) // then the "barrier"
			}},
		{name: "atomic mode", lease: false,
			prepare: func(t *testing.T, mine, _ *client.File) {
				if err := mine.SetAtomic(true); err != nil {
					t.Fatal(err)
				}
			}},
		{name: "iwrite", iwrite: true, lease: true},
		{name: "iwrite over another rank's buffered bytes", iwrite: true, lease: false,
			prepare: func(t *testing.T, _, other *client.File) {
				writeAt(t, other, 1000, []byte("older bytes"), client.IOOpts{Ack: true})
			}},
		{name: "DELEGATE_LEASE_MIN=0", mutate: func(c *client.Config) { c.LeaseMin = 0 }, lease: false},
		{name: "below the server's --direct", lease: false,
			mutate: func(c *client.Config) { c.LeaseMinLocal = 0 },
			opts:   testutil.Options{Mutate: func(_ int, c *server.Config) { c.DirectBytes = 8 << 20 }}},
		// On a local file system LeaseMinLocal applies instead (skipped
		// where the test's directory is on another).
		{name: "below the server's --direct, local file system", lease: true, local: true,
			opts: testutil.Options{Mutate: func(_ int, c *server.Config) { c.DirectBytes = 8 << 20 }}},
		{name: "below LeaseMinLocal", lease: false, local: true,
			mutate: func(c *client.Config) { c.LeaseMinLocal = leaseSize + 1 },
			opts:   testutil.Options{Mutate: func(_ int, c *server.Config) { c.DirectBytes = 8 << 20 }}},
		{name: "tcp", opts: testutil.Options{TCP: true}, lease: false},
		{name: "no ring", mutate: func(c *client.Config) { c.RingBytes = 0 }, lease: false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := testutil.Start(t, tc.opts)
			path := filepath.Join(c.Dir, "lease")
			var st unix.Statfs_t
			if tc.local && (unix.Statfs(c.Dir, &st) != nil || !client.LocalFS(st.Type)) {
				t.Skipf("%s is not on a local file system", c.Dir)
			}
			cl, ocl := c.Client(t, tc.mutate), c.Client(t, nil)
			mine := open(t, cl, path, wire.ORdwr|wire.OCreat, nil)
			other := open(t, ocl, path, wire.ORdwr|wire.OCreat, nil)
			if tc.prepare != nil {
				tc.prepare(t, mine, other)
			}
			data := pattern(leaseSize, 1)
			l0 := cl.Stats().LeaseWrites
			if tc.iwrite {
				r, err := mine.IWrite([][]byte{data}, []client.Extent{{Off: 0, Len: leaseSize}}, tc.io)
				if err != nil {
					t.Fatal(err)
				}
				if n, err := r.Wait(); err != nil || n != leaseSize {
					t.Fatalf("iwrite: %d, %v", n, err)
				}
			} else {
				writeAt(t, mine, 0, data, tc.io)
			}
			if got := cl.Stats().LeaseWrites - l0; got != map[bool]int64{false: 0, true: 1}[tc.lease] {
				t.Fatalf("%d lease writes, want lease %v", got, tc.lease)
			}
			// The barrier's fence (a lease write has nothing to wait
			// for), then another rank sees the bytes, wherever its read
			// goes.
			if err := mine.WaitAcked(); err != nil {
				t.Fatal(err)
			}
			if got := readAt(t, other, 0, leaseSize); !bytes.Equal(got, data) {
				t.Fatalf("the other rank read %d bytes, not the written ones", len(got))
			}
			if size, err := other.Size(); err != nil || size < leaseSize {
				t.Fatalf("size %d, %v: want at least %d", size, err, leaseSize)
			}
			if err := mine.Close(); err != nil {
				t.Fatal(err)
			}
			if err := other.Close(); err != nil {
				t.Fatal(err)
			}
			got, err := os.ReadFile(path)
			if err != nil || len(got) < leaseSize || !bytes.Equal(got[:leaseSize], data) {
				t.Fatalf("backend file: %d bytes, %v; the 4 MiB write's bytes expected", len(got), err)
			}
		})
	}
}

// TestLeaseThenNewerWrites: bytes written through a server after a lease
// write win, and reads see them, through a server and directly.
func TestLeaseThenNewerWrites(t *testing.T) {
	c := testutil.Start(t, testutil.Options{})
	path := filepath.Join(c.Dir, "newer")
	cl, ocl := c.Client(t, nil), c.Client(t, nil)
	mine := open(t, cl, path, wire.ORdwr|wire.OCreat, nil)
	other := open(t, ocl, path, wire.ORdwr, nil)
	data := pattern(leaseSize, 3)
	writeAt(t, mine, 0, data, client.IOOpts{})
	if cl.Stats().LeaseWrites != 1 {
		t.Fatal("the first write was not a lease write")
	}
	d0 := ocl.Stats().DirectReads
	if got := readAt(t, other, 4096, 100); !bytes.Equal(got, data[4096:4196]) || ocl.Stats().DirectReads != d0+1 {
		t.Fatalf("direct read after the lease write: %q (direct reads %d)", got, ocl.Stats().DirectReads-d0)
	}
	writeAt(t, other, 5000, []byte("newer"), client.IOOpts{Ack: true}) // buffered on the server
	copy(data[5000:], "newer")
	if got := readAt(t, mine, 4096, 2000); !bytes.Equal(got, data[4096:6096]) || cl.Stats().DirectReads != 0 {
		t.Fatalf("read through the server after a newer write: wrong bytes (direct reads %d)", cl.Stats().DirectReads)
	}
	// The server holds dirty data now: no lease, the write goes through it
	// and stays ordered after "newer" where it overlaps.
	more := pattern(leaseSize, 9)
	writeAt(t, mine, leaseSize, more, client.IOOpts{})
	if cl.Stats().LeaseWrites != 1 {
		t.Fatal("a lease write while the server held dirty data")
	}
	mine.Close()
	other.Close()
	got, err := os.ReadFile(path)
	if err != nil || !bytes.Equal(got, append(data, more...)) {
		t.Fatalf("backend file after close: %d bytes, %v", len(got), err)
	}
	// The server's summary of the file has the lease write, said at close.
	var sum *stats.File
	for _, fs := range c.Servers[0].Stats().Files {
		if fs.Path == path {
			sum = &fs
		}
	}
	if sum == nil || sum.LeaseWrites != 1 || sum.LeaseBytes != leaseSize || !strings.Contains(sum.String(), "lease    4.0 MiB") {
		t.Fatalf("the file's summary does not count the lease write: %+v", sum)
	}
}

// TestLeaseIWrites: a checkpoint's nonblocking writes, many in flight at
// once, lease while the file is clean and each reaches the backend file;
// its errors come from Wait (a full file system, ENOSPC).
func TestLeaseIWrites(t *testing.T) {
	c := testutil.Start(t, testutil.Options{})
	path := filepath.Join(c.Dir, "ckpt")
	cl, ocl := c.Client(t, nil), c.Client(t, nil)
	mine := open(t, cl, path, wire.ORdwr|wire.OCreat, nil)
	other := open(t, ocl, path, wire.ORdwr, nil)
	const n, piece = 8, 1 << 20
	data := pattern(n*piece, 4)
	reqs := make([]*client.Request, n)
	for i := range reqs {
		r, err := mine.IWrite([][]byte{data[i*piece : (i+1)*piece]}, []client.Extent{{Off: int64(i * piece), Len: piece}}, client.IOOpts{})
		if err != nil {
			t.Fatal(err)
		}
		reqs[i] = r
	}
	for i, r := range reqs {
		if m, err := r.Wait(); err != nil || m != piece {
			t.Fatalf("iwrite %d: %d, %v", i, m, err)
		}
	}
	if got := cl.Stats().LeaseWrites; got != n {
		t.Fatalf("%d of %d nonblocking writes leased", got, n)
	}
	if err := mine.WaitAcked(); err != nil {
		t.Fatal(err)
	}
	if got := readAt(t, other, 0, n*piece); !bytes.Equal(got, data) {
		t.Fatal("another rank read other bytes than the nonblocking writes'")
	}
	if err := mine.Sync(); err != nil || cl.Stats().LeaseSyncs != 1 {
		t.Fatalf("sync after leased nonblocking writes: %v, %d fsyncs", err, cl.Stats().LeaseSyncs)
	}
}

// TestLeaseIWriteQueue: a process's nonblocking lease writes are written
// in turn by one goroutine (the lease queue), as ROMIO's ufs: aio thread
// writes its requests: the posts start no goroutine each (a thread
// wake-up per post, on cores the computing ranks need), only one pwrite
// runs at a time, and every request completes with the right bytes.
func TestLeaseIWriteQueue(t *testing.T) {
	for _, n := range []int{1, 4, 12} {
		t.Run(fmt.Sprint(n, " requests"), func(t *testing.T) {
			c := testutil.Start(t, testutil.Options{})
			path := filepath.Join(c.Dir, "ckpt")
			cl := c.Client(t, nil)
			mine := open(t, cl, path, wire.ORdwr|wire.OCreat, nil)
			var in, peak atomic.Int32
			entered := make(chan struct{}, n)
			release := make(chan struct{})
			defer client.SetLeaseTurnHookForTest(func(turn bool) {
				if !turn {
					return
				}
				k := in.Add(1)
				for p := peak.Load(); k > p && !peak.CompareAndSwap(p, k); p = peak.Load() {
				}
				entered <- struct{}{}
				<-release
				in.Add(-1)
			})()
			const piece = 1 << 20
			data := pattern(n*piece, 9)
			reqs := make([]*client.Request, n)
			before := runtime.NumGoroutine()
			for i := range reqs {
				r, err := mine.IWrite([][]byte{data[i*piece : (i+1)*piece]}, []client.Extent{{Off: int64(i * piece), Len: piece}}, client.IOOpts{})
				if err != nil {
					t.Fatal(err)
				}
				reqs[i] = r
			}
			select {
			case <-entered:
			case <-time.After(10 * time.Second):
				close(release)
				t.Fatal("no lease write started")
			}
			// The first holds its pwrite: the others wait in the queue,
			// without a goroutine each, and none starts meanwhile.
			if g := runtime.NumGoroutine() - before; g > 2 {
				close(release)
				t.Fatalf("%d goroutines more after %d posts, want at most 2 (the queue's worker)", g, n)
			}
			select {
			case <-entered:
				close(release)
				t.Fatal("a second lease write started while the first held its pwrite")
			case <-time.After(100 * time.Millisecond):
			}
			close(release)
			for i, r := range reqs {
				if m, err := r.Wait(); err != nil || m != piece {
					t.Fatalf("iwrite %d: %d, %v", i, m, err)
				}
			}
			if p := peak.Load(); p != 1 {
				t.Fatalf("%d lease writes in their pwrite at once, want 1", p)
			}
			if got := cl.Stats().LeaseWrites; got != int64(n) {
				t.Fatalf("%d of %d nonblocking writes leased", got, n)
			}
			got, err := os.ReadFile(path)
			if err != nil || !bytes.Equal(got, data) {
				t.Fatalf("backend file: %d bytes, %v; not the requests' bytes", len(got), err)
			}
		})
	}
}

// TestLeaseSync: Sync fsyncs the backend file after lease writes (the
// servers may hold nothing), and only then.
func TestLeaseSync(t *testing.T) {
	c := testutil.Start(t, testutil.Options{})
	cl := c.Client(t, nil)
	f := open(t, cl, filepath.Join(c.Dir, "sync"), wire.ORdwr|wire.OCreat, nil)
	defer f.Close()
	steps := []struct {
		lease bool
		syncs int64
	}{{true, 1}, {false, 1}, {true, 2}, {true, 3}}
	for i, s := range steps {
		if s.lease {
			writeAt(t, f, int64(i)*leaseSize, pattern(leaseSize, byte(i)), client.IOOpts{})
		}
		if err := f.Sync(); err != nil {
			t.Fatal(err)
		}
		if got := cl.Stats().LeaseSyncs; got != s.syncs {
			t.Fatalf("step %d: %d fsyncs of lease writes, want %d", i, got, s.syncs)
		}
	}
}

// TestLeaseFullDisk: a lease write into a full backend fails with ENOSPC
// from the write call itself. Needs a small tmpfs (root).
func TestLeaseFullDisk(t *testing.T) {
	dir := t.TempDir()
	if err := exec.Command("mount", "-t", "tmpfs", "-o", "size=2m", "dlg-lease-test", dir).Run(); err != nil {
		t.Skipf("cannot mount a tmpfs (%v): not root?", err)
	}
	t.Cleanup(func() { exec.Command("umount", dir).Run() })
	c := testutil.Start(t, testutil.Options{Root: dir})
	cl := c.Client(t, nil)
	f := open(t, cl, filepath.Join(dir, "full"), wire.ORdwr|wire.OCreat, nil)
	_, err := f.Write([][]byte{pattern(leaseSize, 5)}, []client.Extent{{Off: 0, Len: leaseSize}}, client.IOOpts{})
	if wire.CodeOf(err) != wire.ENOSPC {
		t.Fatalf("write into a 2 MiB file system: %v (code %v), want ENOSPC from the call", err, wire.CodeOf(err))
	}
	// A nonblocking one's from its Wait.
	r, err := f.IWrite([][]byte{pattern(leaseSize, 6)}, []client.Extent{{Off: 0, Len: leaseSize}}, client.IOOpts{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := r.Wait(); wire.CodeOf(err) != wire.ENOSPC {
		t.Fatalf("nonblocking write into a 2 MiB file system: %v (code %v), want ENOSPC from Wait", err, wire.CodeOf(err))
	}
	if cl.Stats().LeaseWrites != 0 {
		t.Fatal("a failed lease write was counted")
	}
	// Nothing deferred: the next call does not report it again.
	if err := f.Sync(); err != nil && !errors.Is(err, os.ErrClosed) {
		t.Fatalf("sync after the failed write: %v", err)
	}
	if err := f.Close(); err != nil {
		t.Fatalf("close: %v", err)
	}
}

// TestReplacedPath: the path of an open file is replaced behind delegate's
// back (unlinked and re-created, or renamed over). The handle stays on the
// file its servers hold: a lease write or a direct read through a
// descriptor opened by path would reach the new file instead. A 4 MiB
// write and the reads after it must be the old file's; the new file must
// be untouched. readFirst: a direct read before the replacement opened the
// read descriptor (of the right file), so only the lease write's own open
// can go wrong.
func TestReplacedPath(t *testing.T) {
	recreate := func(p string) error {
		if err := os.Remove(p); err != nil {
			return err
		}
		return os.WriteFile(p, []byte("the new file"), 0o644)
	}
	tests := []struct {
		name      string
		servers   int
		readFirst bool
		replace   func(path string) error
	}{
		{name: "read first, unlink and re-create", servers: 1, readFirst: true, replace: recreate},
		{name: "unlink and re-create", servers: 1, replace: func(p string) error {
			if err := os.Remove(p); err != nil {
				return err
			}
			return os.WriteFile(p, []byte("the new file"), 0o644)
		}},
		{name: "renamed over", servers: 1, replace: func(p string) error {
			if err := os.WriteFile(p+".tmp", []byte("the new file"), 0o644); err != nil {
				return err
			}
			return os.Rename(p+".tmp", p)
		}},
		{name: "unlink and re-create, 3 servers", servers: 3, replace: func(p string) error {
			if err := os.Remove(p); err != nil {
				return err
			}
			return os.WriteFile(p, []byte("the new file"), 0o644)
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := testutil.Start(t, testutil.Options{Servers: tc.servers})
			path := filepath.Join(c.Dir, "replaced")
			cl := c.Client(t, nil)
			f := open(t, cl, path, wire.ORdwr|wire.OCreat, nil)
			// The old inode, to check afterwards.
			old, err := os.Open(path)
			if err != nil {
				t.Fatal(err)
			}
			defer old.Close()
			// Bytes on the old file's backend, for a read to find.
			head := pattern(8192, 11)
			writeAt(t, f, leaseSize, head, client.IOOpts{Ack: true})
			if err := f.Sync(); err != nil {
				t.Fatal(err)
			}
			if tc.readFirst {
				d0 := cl.Stats().DirectReads
				if got := readAt(t, f, leaseSize, len(head)); !bytes.Equal(got, head) || cl.Stats().DirectReads != d0+1 {
					t.Fatalf("direct read before the replacement: %d bytes (direct reads %d)", len(got), cl.Stats().DirectReads-d0)
				}
			}
			if err := tc.replace(path); err != nil {
				t.Fatal(err)
			}
			if got := readAt(t, f, leaseSize, len(head)); !bytes.Equal(got, head) {
				t.Fatalf("read of the old bytes after the path was replaced: %d bytes, not them (%q...)", len(got), got[:min(len(got), 12)])
			}
			data := pattern(leaseSize, 2)
			writeAt(t, f, 0, data, client.IOOpts{})
			if got := readAt(t, f, 0, leaseSize); !bytes.Equal(got, data) {
				t.Fatalf("read back %d bytes, not the written ones", len(got))
			}
			if got, err := os.ReadFile(path); err != nil || string(got) != "the new file" {
				t.Fatalf("the new file at the path: %q, %v; want it untouched", got[:min(len(got), 32)], err)
			}
			if err := f.Close(); err != nil {
				t.Fatal(err)
			}
			got := make([]byte, leaseSize+len(head))
			if n, err := old.ReadAt(got, 0); n != len(got) || !bytes.Equal(got[:leaseSize], data) || !bytes.Equal(got[leaseSize:], head) {
				t.Fatalf("the old file: %d bytes, %v; want the write and the bytes after it", n, err)
			}
		})
	}
}

// TestReplacedPathUpgrade: a server whose file is open read-only reopens
// the path for a writer; when the path names another file by now, the
// writer's open fails (EBUSY) instead of moving the readers to it.
func TestReplacedPathUpgrade(t *testing.T) {
	c := testutil.Start(t, testutil.Options{})
	path := filepath.Join(c.Dir, "upgrade")
	if err := os.WriteFile(path, []byte("the old file"), 0o644); err != nil {
		t.Fatal(err)
	}
	cl := c.Client(t, nil)
	r := open(t, cl, path, wire.ORdonly, nil)
	defer r.Close()
	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte("the new file"), 0o644); err != nil {
		t.Fatal(err)
	}
	w, err := cl.Open(t.Context(), path, wire.ORdwr, 0, nil)
	if err == nil {
		w.Close()
	}
	if wire.CodeOf(err) != wire.EBUSY {
		t.Fatalf("open for writing of a replaced path: %v, want EBUSY", err)
	}
	if got := readAt(t, r, 0, 64); string(got) != "the old file" {
		t.Fatalf("the reader reads %q, want the old file", got)
	}
}
