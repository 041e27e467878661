package journal

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"testing"
)

const chunk = 4096

// crash stands for a SIGKILL: the process's mappings and lock go, the files
// stay. (Close(false) keeps every file as it is.)
func crash(t *testing.T, j *Journal) {
	t.Helper()
	if removed, err := j.Close(false); removed || err != nil {
		t.Fatalf("close: removed %v, %v", removed, err)
	}
}

func open(t *testing.T, dir string, keep int) (*Journal, []*Pending) {
	t.Helper()
	j, pend, err := Open(dir, chunk, keep)
	if err != nil {
		t.Fatal(err)
	}
	return j, pend
}

// write copies p into s at i and marks it, as an extent.Index does.
func write(s *Slot, i int64, p []byte) {
	copy(s.Data()[i:], p)
	s.Mark(i, int64(len(p)))
}

// replay applies pending slots in the order Open gave them to files in
// memory: what the server's recovery writes.
func replay(t *testing.T, pend []*Pending) map[string][]byte {
	t.Helper()
	files := map[string][]byte{}
	for _, p := range pend {
		err := p.Runs(func(off int64, b []byte) error {
			f := files[p.Path]
			for int64(len(f)) < off+int64(len(b)) {
				f = append(f, '.')
			}
			copy(f[off:], b)
			files[p.Path] = f
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	return files
}

func TestCrashKeepsMarkedBytes(t *testing.T) {
	dir := t.TempDir()
	j, pend := open(t, dir, 4)
	if len(pend) != 0 {
		t.Fatalf("%d pending slots in a new directory", len(pend))
	}
	a := j.Acquire("/data/a", FileID{}, 0)
	b := j.Acquire("/data/b", FileID{}, 2*chunk)
	write(a, 10, []byte("hello"))
	write(a, 100, []byte("world"))
	copy(a.Data()[200:], "never marked: not acknowledged") // J2: no mark, no replay
	write(b, 0, []byte("bee"))
	done := j.Acquire("/data/c", FileID{}, 0)
	write(done, 0, []byte("flushed"))
	done.Release() // on the backend: not replayed
	crash(t, j)

	j, pend = open(t, dir, 4)
	defer j.Close(true)
	got := replay(t, pend)
	want := map[string][]byte{
		"/data/a": []byte(".........." + "hello" + string(bytes.Repeat([]byte("."), 85)) + "world"),
		"/data/b": []byte(string(bytes.Repeat([]byte("."), 2*chunk)) + "bee"),
	}
	if len(got) != len(want) {
		t.Fatalf("recovered %d files, want %d", len(got), len(want))
	}
	for p, w := range want {
		if !bytes.Equal(got[p], w) {
			t.Errorf("%s: recovered %q, want %q", p, got[p], w)
		}
	}
	if n := pend[0].Bytes() + pend[1].Bytes(); n != 13 {
		t.Errorf("%d bytes marked, want 13", n)
	}
	for _, p := range pend {
		p.Release()
	}
	if st := j.Stats(); st.InUse != 0 {
		t.Fatalf("%d slots in use after recovery", st.InUse)
	}
}

func TestNewerSlotWins(t *testing.T) {
	// An older slot being flushed and the newer one later writes landed in
	// cover the same bytes: recovery writes the newer last (J4), whatever
	// the slots' places in the segment.
	for _, olderFirst := range []bool{true, false} {
		dir := t.TempDir()
		j, _ := open(t, dir, 4)
		// Take two slots, and use them in the order the case wants, so
		// that the slot position does not decide.
		s1, s2 := j.Acquire("/f", FileID{}, 0), j.Acquire("/f", FileID{}, 0)
		older, newer := s1, s2
		if !olderFirst {
			// Re-commit s1 after s2: s1 becomes the newer one.
			writeHeader(s1.hdr, header{seq: j.seq.Add(1), off: 0, path: "/f"})
			older, newer = s2, s1
		}
		write(older, 0, []byte("old-old-old"))
		write(newer, 4, []byte("NEW"))
		crash(t, j)
		j, pend := open(t, dir, 4)
		if got := string(replay(t, pend)["/f"]); got != "old-NEW-old" {
			t.Errorf("olderFirst=%v: recovered %q, want %q", olderFirst, got, "old-NEW-old")
		}
		j.Close(false)
	}
}

func TestTornHeaderIgnored(t *testing.T) {
	dir := t.TempDir()
	j, _ := open(t, dir, 4)
	good := j.Acquire("/good", FileID{}, 0)
	write(good, 0, []byte("kept"))
	// A header whose commit word was never stored: the server died while
	// taking the slot, before any byte of it was written or acknowledged.
	torn := j.Acquire("/torn", FileID{}, 0)
	write(torn, 0, []byte("lost"))
	clearHeader(torn.hdr)
	// A header torn in its path (the CRC no longer matches).
	bad := j.Acquire("/bad", FileID{}, 0)
	write(bad, 0, []byte("lost"))
	bad.hdr[hdrFixed] ^= 0xFF
	crash(t, j)
	j, pend := open(t, dir, 4)
	defer j.Close(false)
	got := replay(t, pend)
	if len(got) != 1 || string(got["/good"]) != "kept" {
		t.Fatalf("recovered %q, want only /good", got)
	}
}

func TestReusedSlotForgetsStaleMarks(t *testing.T) {
	for _, keep := range []int{0, 4} { // punched, or kept resident
		dir := t.TempDir()
		j, _ := open(t, dir, keep)
		s := j.Acquire("/old", FileID{}, 0)
		write(s, 0, bytes.Repeat([]byte("x"), chunk))
		s.Release()
		if n := j.Trim(); n != 1-min(keep, 1) {
			t.Fatalf("keep %d: trim punched %d slots", keep, n)
		}
		s = j.Acquire("/new", FileID{}, chunk)
		write(s, 8, []byte("y"))
		crash(t, j)
		j, pend := open(t, dir, keep)
		got := replay(t, pend)
		if len(got) != 1 || len(got["/new"]) != chunk+9 || got["/new"][chunk+8] != 'y' || pend[0].Bytes() != 1 {
			t.Fatalf("keep %d: recovered %d files, %q...", keep, len(got), got["/old"])
		}
		j.Close(false)
	}
}

func TestOtherChunkSizeRecoveredThenRemoved(t *testing.T) {
	dir := t.TempDir()
	j, _ := open(t, dir, 4)
	write(j.Acquire("/f", FileID{}, chunk), 1, []byte("z"))
	crash(t, j)
	j2, pend, err := Open(dir, 2*chunk, 4)
	if err != nil {
		t.Fatal(err)
	}
	if got := replay(t, pend); string(got["/f"][chunk+1:]) != "z" {
		t.Fatalf("recovered %q", got["/f"])
	}
	pend[0].Release()
	j2.Close(false)
	j3, pend, err := Open(dir, 2*chunk, 4)
	if err != nil || len(pend) != 0 {
		t.Fatalf("%d pending, %v", len(pend), err)
	}
	if segs, _ := filepath.Glob(filepath.Join(dir, "seg-*")); len(segs) != 0 {
		t.Fatalf("segments of the old chunk size left: %v", segs)
	}
	if removed, err := j3.Close(true); !removed || err != nil {
		t.Fatalf("close: removed %v, %v", removed, err)
	}
	if _, err := os.Stat(dir); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("state directory still there: %v", err)
	}
}

func TestOneServerPerDirectory(t *testing.T) {
	dir := t.TempDir()
	j, _ := open(t, dir, 4)
	defer j.Close(true)
	if _, _, err := Open(dir, chunk, 4); !errors.Is(err, ErrLocked) {
		t.Fatalf("second Open: %v, want ErrLocked", err)
	}
}

func TestManySegmentsAndLongPaths(t *testing.T) {
	dir := t.TempDir()
	j, _ := open(t, dir, 2)
	var slots []*Slot
	n := j.geo.n + 3 // spills into a second segment
	for i := 0; i < n; i++ {
		s := j.Acquire("/f", FileID{}, int64(i)*chunk)
		if s == nil {
			t.Fatalf("slot %d: none", i)
		}
		slots = append(slots, s)
	}
	if j.Acquire(string(bytes.Repeat([]byte("p"), PathMax+1)), FileID{}, 0) != nil || j.Stats().Fails != 1 {
		t.Fatal("a path longer than PathMax got a slot")
	}
	for _, s := range slots {
		s.Release()
	}
	if st := j.Stats(); st.InUse != 0 || st.Resident != n {
		t.Fatalf("stats %+v after releasing all", st)
	}
	if k := j.Trim(); k != n-2 || j.Stats().Resident != 2 {
		t.Fatalf("trim punched %d, stats %+v", k, j.Stats())
	}
	if removed, err := j.Close(true); !removed || err != nil {
		t.Fatalf("close: %v %v", removed, err)
	}
}

// A slot taken again clears only the marks of the pages it marked (or all
// of them when it came from a previous server): no stale mark survives, in
// any page, whichever way the slot was last used.
func TestReusedSlotClearsTouchedPages(t *testing.T) {
	const big = 16 * pageBytes
	for _, tc := range []struct {
		name    string
		recover bool // the slot was pending at Open, then released
		marks   [][2]int64
	}{
		{"pages", false, [][2]int64{{0, pageBytes}, {5 * pageBytes, pageBytes}, {big - 1, 1}}},
		{"across pages", false, [][2]int64{{pageBytes - 3, 7}, {3*pageBytes + 100, 2*pageBytes + 5}}},
		{"whole chunk", false, [][2]int64{{0, big}}},
		{"recovered", true, [][2]int64{{7 * pageBytes, 3}, {12 * pageBytes, pageBytes}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			j, _, err := Open(dir, big, 4)
			if err != nil {
				t.Fatal(err)
			}
			s := j.Acquire("/old", FileID{}, 0)
			for _, m := range tc.marks {
				write(s, m[0], bytes.Repeat([]byte("x"), int(m[1])))
			}
			if tc.recover {
				crash(t, j)
				var pend []*Pending
				if j, pend, err = Open(dir, big, 4); err != nil || len(pend) != 1 {
					t.Fatalf("open: %d pending, %v", len(pend), err)
				}
				pend[0].Release() // resident, its marks as they were
			} else {
				s.Release()
			}
			s = j.Acquire("/new", FileID{}, big)
			write(s, 2*pageBytes+8, []byte("y"))
			crash(t, j)
			j, pend, err := Open(dir, big, 4)
			if err != nil {
				t.Fatal(err)
			}
			defer j.Close(false)
			if len(pend) != 1 || pend[0].Path != "/new" || pend[0].Bytes() != 1 {
				t.Fatalf("recovered %d slots, first with %d bytes", len(pend), pend[0].Bytes())
			}
		})
	}
}

// Released slots stay resident; Trim punches those beyond keep, oldest
// released first, and a punched slot is reserved again when taken.
func TestTrimKeepsKeep(t *testing.T) {
	for _, tc := range []struct{ keep, slots, trimmed int }{{0, 3, 3}, {1, 3, 2}, {4, 3, 0}} {
		dir := t.TempDir()
		j, _ := open(t, dir, tc.keep)
		var ss []*Slot
		for i := 0; i < tc.slots; i++ {
			s := j.Acquire("/f", FileID{}, int64(i)*chunk)
			write(s, 0, []byte("a"))
			ss = append(ss, s)
		}
		for _, s := range ss {
			s.Release()
		}
		if st := j.Stats(); st.Resident != tc.slots || j.Surplus() != tc.trimmed {
			t.Fatalf("keep %d: %d resident, surplus %d after release", tc.keep, st.Resident, j.Surplus())
		}
		if n := j.Trim(); n != tc.trimmed || j.Stats().Resident != tc.slots-tc.trimmed || j.Surplus() != 0 {
			t.Fatalf("keep %d: trimmed %d, %d resident", tc.keep, n, j.Stats().Resident)
		}
		for i := 0; i < tc.slots; i++ {
			s := j.Acquire("/g", FileID{}, int64(i)*chunk)
			write(s, 1, []byte("b"))
		}
		crash(t, j)
		j, pend := open(t, dir, tc.keep)
		if got := replay(t, pend); len(pend) != tc.slots || len(got) != 1 || len(got["/g"]) != (tc.slots-1)*chunk+2 {
			t.Fatalf("keep %d: recovered %d slots, files %v", tc.keep, len(pend), got)
		}
		for _, p := range pend {
			if p.Bytes() != 1 {
				t.Fatalf("keep %d: slot at %d has %d marked bytes", tc.keep, p.Off, p.Bytes())
			}
		}
		j.Close(false)
	}
}

// MarkRunCount marks and counts what MarkCount does piece by piece, and
// records the same touched pages (which a reuse clears), over marks that
// were partly set before: its word-a-piece path for 64-byte pieces and its
// general one.
func TestMarkRunCountIsMarkCount(t *testing.T) {
	const big = 16 * pageBytes
	for _, tc := range []struct {
		name                string
		i, n, stride, count int64
		pre                 [][2]int64 // marked before the run
	}{
		{"64 aligned", 64, 64, 128, 200, [][2]int64{{64, 64}, {300, 5}}},
		{"64 adjacent", 0, 64, 64, 512, [][2]int64{{1000, 3000}}},
		{"64 unaligned", 32, 64, 128, 100, nil},
		{"64 odd stride", 0, 64, 96, 100, [][2]int64{{0, 10}}},
		{"1 KiB", 512, 1024, 2048, 20, [][2]int64{{600, 100}}},
		{"pages apart", 100, 300, 3 * pageBytes, 5, [][2]int64{{3*pageBytes + 150, 10}}},
		{"across pages", pageBytes - 10, 20, pageBytes, 10, nil},
		{"one piece", 7, 5, 5, 1, [][2]int64{{9, 1}}},
		{"nothing", 0, 0, 64, 10, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			j, _, err := Open(t.TempDir(), big, 4)
			if err != nil {
				t.Fatal(err)
			}
			defer j.Close(true)
			run, each := j.Acquire("/run", FileID{}, 0), j.Acquire("/each", FileID{}, 0)
			for _, s := range []*Slot{run, each} {
				for _, p := range tc.pre {
					s.Mark(p[0], p[1])
				}
			}
			got := run.MarkRunCount(tc.i, tc.n, tc.stride, tc.count)
			var want int64
			for k := int64(0); k < tc.count; k++ {
				want += each.MarkCount(tc.i+k*tc.stride, tc.n)
			}
			if got != want {
				t.Errorf("counted %d newly marked bytes, want %d", got, want)
			}
			if !slices.Equal(run.marks, each.marks) {
				t.Errorf("marks differ from piece-by-piece marking")
			}
			if !slices.Equal(run.touched, each.touched) {
				t.Errorf("touched pages %x, want %x", run.touched, each.touched)
			}
		})
	}
}
