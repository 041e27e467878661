package extent

import (
	"bytes"
	"encoding/binary"
	"testing"
)

// FuzzIndex interprets the input as a sequence of operations and checks the
// index against the model after each.
func FuzzIndex(f *testing.F) {
	f.Add([]byte{0, 10, 0, 20, 1, 5, 0, 30, 2, 15, 0})
	f.Add(bytes.Repeat([]byte{0, 7, 3, 9}, 20))
	f.Add(append(bytes.Repeat([]byte{0, 7, 3, 3, 9, 1}, 10), 1))
	f.Add(append(bytes.Repeat([]byte{3, 40, 0x3a, 0, 5, 9, 2, 30, 0}, 6), 2))
	f.Fuzz(func(t *testing.T, ops []byte) {
		x := New(32, 4)
		// The last byte picks the buffers: heap, counting slots (items
		// without hole bitmaps), or counting slots with every third one
		// unavailable (heap and slot items mixed in a chunk).
		if n := len(ops); n%3 == 1 {
			if mode := ops[n-1] % 3; mode > 0 {
				x.UseSlots(&memSlots{chunk: 32, failEvery: 3 * int(mode-1)})
			}
			ops = ops[:n-1]
		}
		m := &model{}
		for len(ops) >= 3 {
			op, a, b := ops[0]%4, int64(binary.LittleEndian.Uint16([]byte{ops[1], 0})), int64(ops[2])
			ops = ops[3:]
			switch op {
			case 0:
				p := bytes.Repeat([]byte{byte(a ^ b)}, int(b%70)+1)
				x.Write(a, p)
				m.write(a, p)
			case 1:
				if got, want := readIndex(x, a, b), m.overlay(a, b); !bytes.Equal(got, want) {
					t.Fatalf("overlay %d+%d differs", a, b)
				}
			case 2:
				x.Truncate(a)
				m.truncate(a)
			case 3:
				// a strided run: b's bits give the piece, stride and count
				n, stride, count := b%7+1, int64(b>>3)%13, int64(a%9)+1
				p := bytes.Repeat([]byte{byte(a ^ b ^ 0x55)}, int(count*n))
				for i := range p {
					p[i] += byte(i)
				}
				x.WriteRun(a, n, stride, count, p)
				for i := int64(0); i < count; i++ {
					m.write(a+i*stride, p[i*n:(i+1)*n])
				}
			}
			if err := x.Check(); err != nil {
				t.Fatal(err)
			}
		}
	})
}
