package server_test

import (
	"bytes"
	"context"
	"encoding/binary"
	"io"
	"math/rand/v2"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/delegate-io/delegate/internal/client"
	"github.com/delegate-io/delegate/internal/route"
	"github.com/delegate-io/delegate/internal/server"
	"github.com/delegate-io/delegate/internal/testutil"
	"github.com/delegate-io/delegate/internal/transport"
	"github.com/delegate-io/delegate/internal/wire"
	"github.com/hashicorp/yamux"
)

// stormDuration is how long TestMutatedFrameStorm throws frames: 20 s, 3 s
// with -short, or DELEGATE_STORM_SECONDS (60 for the fault suite).
func stormDuration(t *testing.T) time.Duration {
	if v := os.Getenv("DELEGATE_STORM_SECONDS"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n <= 0 {
			t.Fatalf("DELEGATE_STORM_SECONDS=%q: want a number of seconds", v)
		}
		return time.Duration(n) * time.Second
	}
	if testing.Short() {
		return 3 * time.Second
	}
	return 20 * time.Second
}

// stormSeeds returns valid frames of every request type the storm mutates
// (alloc excepted: a mutated size would preallocate disk for real). Paths
// lie under dir.
func stormSeeds(dir string) [][]byte {
	var xb wire.Builder
	xb.Add(0, 100)
	xb.Add(4096, 100)
	x := xb.Bytes()
	var sb wire.Builder
	for i := int64(0); i < 64; i++ {
		sb.Add(i*64, 8)
	}
	strided := sb.Bytes()
	p := filepath.Join(dir, "storm-1")
	msgs := []struct {
		t       wire.Type
		d       any
		payload []byte
	}{
		{wire.TOpen, &wire.Open{Path: p, Flags: wire.ORdwr | wire.OCreat, RegionSize: 1 << 20}, nil},
		{wire.TOpen, &wire.Open{Path: filepath.Join(dir, "storm-2"), Flags: wire.ORdwr | wire.OCreat, RegionSize: 1 << 20}, nil},
		{wire.TWrite, &wire.Write{File: 1, Ext: x}, bytes.Repeat([]byte{0xab}, 200)},
		{wire.TWrite, &wire.Write{File: 2, Ext: strided}, bytes.Repeat([]byte{0xcd}, 512)},
		{wire.TWrite, &wire.Write{File: 1, Ext: x, Flags: wire.IOAtomic}, bytes.Repeat([]byte{0xef}, 200)},
		{wire.TWrite, &wire.Write{File: 1, Ext: x, RingOff: 4096, RingLen: 200}, nil},
		{wire.TRead, &wire.Read{File: 1, Ext: x}, nil},
		{wire.TRead, &wire.Read{File: 2, Ext: strided}, nil},
		{wire.TCollEnd, &wire.CollEnd{File: 1, CollTag: wire.CollTag{Size: 1}}, nil},
		{wire.TStat, &wire.FileOp{File: 1}, nil},
		{wire.TResize, &wire.Resize{File: 1, Size: 5000}, nil},
		{wire.TSync, &wire.FileOp{File: 1}, nil},
		{wire.TFlush, &wire.FileOp{File: 2}, nil},
		{wire.TCounter, &wire.Counter{File: 1, Key: "k", Op: wire.CounterFetchAdd, Value: 1}, nil},
		{wire.TStats, &wire.Stats{}, nil},
		{wire.TClose, &wire.Close{File: 2}, nil},
		{wire.TDelete, &wire.Delete{Path: filepath.Join(dir, "storm-3")}, nil},
	}
	var out [][]byte
	for _, compress := range []bool{false, true} {
		for i, m := range msgs {
			e := wire.NewEncoder(wire.Compression{})
			if compress {
				e.Policy = wire.Compression{MinBytes: 1, MinSavingsPct: -1000}
			}
			if err := e.Append(m.t, uint32(i+1), m.d, m.payload); err != nil {
				panic(err)
			}
			out = append(out, append([]byte(nil), e.Bytes()...))
		}
	}
	return append(out, lz4ZeroFrame())
}

// mutate returns a damaged copy of frame f.
func mutate(r *rand.Rand, f []byte) []byte {
	b := append([]byte(nil), f...)
	put32 := func(off int, v uint32) {
		if len(b) >= off+4 {
			binary.LittleEndian.PutUint32(b[off:], v)
		}
	}
	lengths := []uint32{0, 1, 2, 15, 16, 255, 4095, 65536, wire.MaxDesc - 1, wire.MaxDesc, wire.MaxDesc + 1, 1 << 31, 1<<32 - 1}
	switch r.IntN(12) {
	case 0, 1: // flip a few bytes anywhere
		for i := r.IntN(4); i >= 0; i-- {
			b[r.IntN(len(b))] ^= byte(1 + r.IntN(255))
		}
	case 2: // lie about the description length
		put32(8, lengths[r.IntN(len(lengths))])
	case 3: // lie about the payload length
		put32(12, lengths[r.IntN(len(lengths))])
	case 4: // claim lz4, or random flags
		if r.IntN(2) == 0 {
			b[2] |= byte(wire.FlagLZ4)
		} else {
			b[2], b[3] = byte(r.Uint32()), byte(r.Uint32())
		}
	case 5: // truncate
		b = b[:r.IntN(len(b))]
	case 6: // another type, replies included
		b[1] = byte(r.IntN(256))
	case 7: // a compressed description with a lying length
		desc := binary.AppendUvarint(nil, uint64(lengths[r.IntN(len(lengths))]))
		desc = append(desc, make([]byte, r.IntN(40))...)
		for i := range desc[1:] {
			desc[1+i] = byte(r.Uint32())
		}
		h := make([]byte, wire.HeaderSize)
		(&wire.Header{Type: wire.Type(b[1]), Flags: wire.FlagLZ4, ID: 9, DescLen: uint32(len(desc))}).Put(h)
		b = append(h, desc...)
	case 8: // random bytes in the description
		if len(b) > wire.HeaderSize {
			i := wire.HeaderSize + r.IntN(len(b)-wire.HeaderSize)
			junk := make([]byte, 1+r.IntN(8))
			for k := range junk {
				junk[k] = byte(r.Uint32())
			}
			b = append(b[:i], append(junk, b[i:]...)...)
		}
	case 9: // pure garbage
		b = make([]byte, r.IntN(64))
		for k := range b {
			b[k] = byte(r.Uint32())
		}
	default: // left valid, so that the handlers run too
	}
	if len(b) > 1 && wire.Type(b[1]).Request() == wire.TAlloc {
		b[1] = byte(wire.TStat)
	}
	return b
}

// storm throws mutated frames at the server at a until stop: each round a
// new connection, sometimes a mangled hello, else a real hello, then a few
// streams of mutated frames, all under a deadline.
func storm(r *rand.Rand, a transport.Addr, hash uint64, seeds [][]byte, stop <-chan struct{}, rounds *int64, mu *sync.Mutex) {
	for {
		select {
		case <-stop:
			return
		default:
		}
		conn, err := net.Dial(a.Net, a.Addr)
		if err != nil {
			time.Sleep(10 * time.Millisecond)
			continue
		}
		conn.SetDeadline(time.Now().Add(time.Duration(200+r.IntN(800)) * time.Millisecond))
		hello := frame(wire.THello, &wire.Hello{Client: "storm", Servers: 1, ListHash: hash})
		if r.IntN(8) == 0 {
			conn.Write(mutate(r, hello))
			io.Copy(io.Discard, conn)
			conn.Close()
			continue
		}
		if _, err := transport.ClientHello(conn, &wire.Hello{Client: "storm", Servers: 1, ListHash: hash}, -1, time.Second, ""); err != nil {
			conn.Close()
			continue
		}
		ymx, err := yamux.Client(conn, transport.YamuxConfig(nil, 0))
		if err != nil {
			conn.Close()
			continue
		}
		var wg sync.WaitGroup
		for s := 1 + r.IntN(3); s > 0; s-- {
			st, err := ymx.OpenStream()
			if err != nil {
				break
			}
			var out []byte
			for k := 1 + r.IntN(20); k > 0; k-- {
				f := seeds[r.IntN(len(seeds))]
				if r.IntN(4) != 0 {
					f = mutate(r, f)
				}
				out = append(out, f...)
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				io.Copy(io.Discard, st)
			}()
			st.Write(out)
		}
		time.Sleep(time.Duration(r.IntN(50)) * time.Millisecond)
		ymx.Close()
		conn.Close()
		wg.Wait()
		mu.Lock()
		*rounds++
		mu.Unlock()
	}
}

// TestMutatedFrameStorm: a live server takes mutated frames over many
// connections for stormDuration, then still answers a real client's write
// and read correctly, and the bytes a real client wrote before the storm
// (synced, and only buffered) are intact, in the server and on disk.
func TestMutatedFrameStorm(t *testing.T) {
	seed := uint64(time.Now().UnixNano())
	if v := os.Getenv("DELEGATE_STORM_SEED"); v != "" {
		seed, _ = strconv.ParseUint(v, 10, 64)
	}
	t.Logf("seed %d (DELEGATE_STORM_SEED reproduces the frames, not their timing)", seed)
	root := t.TempDir()
	stormDir := filepath.Join(root, "storm")
	realDir := filepath.Join(root, "real-"+strconv.FormatUint(seed, 16))
	for _, d := range []string{stormDir, realDir} {
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	c := testutil.Start(t, testutil.Options{Root: root, Mutate: func(i int, cfg *server.Config) {
		cfg.BufferBytes = 64 << 20
		cfg.Logger = nil // thousands of warnings: keep the test log readable
	}})
	ctx := context.Background()
	cl := c.Client(t, nil)

	// Before the storm: one file synced to disk, one only buffered.
	rnd := rand.New(rand.NewPCG(seed, 1))
	pattern := func(n int) []byte {
		b := make([]byte, n)
		for i := range b {
			b[i] = byte(rnd.Uint32())
		}
		return b
	}
	files := []struct {
		name string
		data []byte
		sync bool
	}{{"synced", pattern(1 << 20), true}, {"buffered", pattern(300 << 10), false}}
	handles := make([]*client.File, len(files))
	for i, f := range files {
		h, err := cl.Open(ctx, filepath.Join(realDir, f.name), wire.ORdwr|wire.OCreat, 0, nil)
		if err != nil {
			t.Fatal(err)
		}
		handles[i] = h
		for off := 0; off < len(f.data); off += 64 << 10 {
			end := min(off+64<<10, len(f.data))
			if _, err := h.Write([][]byte{f.data[off:end]}, []client.Extent{{Off: int64(off), Len: int64(end - off)}}, client.IOOpts{Ack: true}); err != nil {
				t.Fatal(err)
			}
		}
		if f.sync {
			if err := h.Sync(); err != nil {
				t.Fatal(err)
			}
		}
	}

	// The storm.
	seeds := stormSeeds(stormDir)
	hash := route.ListHash(transport.Strings(c.Addrs))
	stop := make(chan struct{})
	var wg sync.WaitGroup
	var mu sync.Mutex
	var rounds int64
	for w := 0; w < 4; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			storm(rand.New(rand.NewPCG(seed, uint64(w+2))), c.Addrs[0], hash, seeds, stop, &rounds, &mu)
		}()
	}
	time.Sleep(stormDuration(t))
	close(stop)
	wg.Wait()
	s := c.Servers[0].Stats()
	t.Logf("%d connections; server counted %d bad frames, %d refused, %d panics, requests %v", rounds, s.BadFrames, s.Rejected, s.Panics, s.Requests)
	if s.BadFrames == 0 || rounds < 10 {
		t.Fatalf("the storm did not reach the server (%d rounds, %d bad frames)", rounds, s.BadFrames)
	}
	if s.Panics != 0 {
		t.Errorf("%d panics recovered: a decoder or handler still panics on some input", s.Panics)
	}

	// After: the pre-storm client reads its bytes back, a new client writes
	// and reads correctly.
	for i, f := range files {
		got := make([]byte, len(f.data))
		if _, err := handles[i].Read([][]byte{got}, []client.Extent{{Off: 0, Len: int64(len(got))}}, client.IOOpts{}); err != nil {
			t.Fatalf("read %s after the storm: %v", f.name, err)
		}
		if !bytes.Equal(got, f.data) {
			t.Fatalf("%s changed during the storm", f.name)
		}
	}
	cl2 := c.Client(t, nil)
	h, err := cl2.Open(ctx, filepath.Join(realDir, "after"), wire.ORdwr|wire.OCreat, 0, nil)
	if err != nil {
		t.Fatalf("server stopped serving: %v", err)
	}
	after := pattern(200 << 10)
	if _, err := h.Write([][]byte{after}, []client.Extent{{Off: 4096, Len: int64(len(after))}}, client.IOOpts{Ack: true}); err != nil {
		t.Fatal(err)
	}
	got := make([]byte, len(after))
	if _, err := h.Read([][]byte{got}, []client.Extent{{Off: 4096, Len: int64(len(got))}}, client.IOOpts{}); err != nil || !bytes.Equal(got, after) {
		t.Fatalf("write then read after the storm: %v, equal %v", err, bytes.Equal(got, after))
	}
	h.Close()

	// Memory: what the storm made the server allocate is not kept.
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	if ms.HeapAlloc > 256<<20 {
		t.Errorf("heap %d MiB after the storm (buffer limit 64 MiB)", ms.HeapAlloc>>20)
	}

	// On disk after a drain: every byte written before the storm.
	for _, h := range handles {
		h.Close()
	}
	sctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if err := c.Servers[0].Shutdown(sctx); err != nil {
		t.Fatalf("shutdown: %v", err)
	}
	for _, f := range files {
		b, err := os.ReadFile(filepath.Join(realDir, f.name))
		if err != nil || !bytes.Equal(b, f.data) {
			t.Fatalf("%s on disk: %v, %d bytes, equal %v", f.name, err, len(b), bytes.Equal(b, f.data))
		}
	}
}
