// Package shm is the same-host data path: a shared-memory region (a sealed
// memfd) that a client creates, passes once to a server over the Unix
// socket, and then fills with write data and reads results from. The
// client's Ring allocates slots in it; requests name slots by offset and
// length, and a slot belongs to the server from the request to its reply.
//
// DESIGN.md §4 measured it: 1.08-1.46x a raw Unix socket for bulk data and
// 2.5x at 4 KiB pieces, where yamux manages 0.27-0.39x.
package shm

import (
	"fmt"
	"sync/atomic"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Region is a mapped shared-memory region.
type Region struct {
	mem []byte
	fd  int // -1 once closed or after Attach
}

// Create makes a region of size bytes, sealed so that nobody can shrink or
// grow it (a shrink would turn the server's accesses into SIGBUS).
func Create(name string, size int) (*Region, error) {
	if size <= 0 {
		return nil, fmt.Errorf("shm: size %d", size)
	}
	fd, err := unix.MemfdCreate(name, unix.MFD_CLOEXEC|unix.MFD_ALLOW_SEALING)
	if err != nil {
		return nil, fmt.Errorf("shm: memfd_create: %w", err)
	}
	fail := func(op string, err error) (*Region, error) {
		unix.Close(fd)
		return nil, fmt.Errorf("shm: %s: %w", op, err)
	}
	if err := unix.Ftruncate(fd, int64(size)); err != nil {
		return fail("ftruncate", err)
	}
	seals := unix.F_SEAL_SHRINK | unix.F_SEAL_GROW | unix.F_SEAL_SEAL
	if _, err := unix.FcntlInt(uintptr(fd), unix.F_ADD_SEALS, seals); err != nil {
		return fail("seal", err)
	}
	// MAP_POPULATE allocates and maps every page now, once per session:
	// first-touch faults in the write path cost more (measured: a 47 KB
	// write took 27 us instead of 14 while the ring was fresh). Prefault
	// then writes each page once, for the machines where a mapped page's
	// first write still costs a trap (Prefault).
	mem, err := unix.Mmap(fd, 0, size, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED|unix.MAP_POPULATE)
	if err != nil {
		return fail("mmap", err)
	}
	Prefault(mem, true)
	return &Region{mem: mem, fd: fd}, nil
}

// Attach maps a region received from a client. It checks that the memfd is
// sealed against shrinking and has the announced size, and closes fd.
func Attach(fd int, size uint64) (*Region, error) {
	defer unix.Close(fd)
	seals, err := unix.FcntlInt(uintptr(fd), unix.F_GET_SEALS, 0)
	if err != nil {
		return nil, fmt.Errorf("shm: ring is not a sealable memfd: %w", err)
	}
	if seals&unix.F_SEAL_SHRINK == 0 {
		return nil, fmt.Errorf("shm: ring is not sealed against shrinking")
	}
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return nil, fmt.Errorf("shm: fstat: %w", err)
	}
	if st.Size <= 0 || uint64(st.Size) != size || size > 1<<40 {
		return nil, fmt.Errorf("shm: ring is %d bytes, hello says %d", st.Size, size)
	}
	mem, err := unix.Mmap(fd, 0, int(size), unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED|unix.MAP_POPULATE)
	if err != nil {
		return nil, fmt.Errorf("shm: mmap: %w", err)
	}
	// The server's copies out of the ring (and the kernel's, for pwritev
	// from it) read it; a read touch costs a third of a write's trap
	// (Prefault), and the server writes into the ring only for reads that
	// are not served direct.
	Prefault(mem, false)
	return &Region{mem: mem, fd: -1}, nil
}

// Prefault touches every page of mem once, so that the accesses of the
// I/O path find it mapped in every layer of page tables; with write, it
// writes each page without changing a byte (an atomic add of zero to its
// first word: safe while another process or thread uses the page).
// MAP_POPULATE and MADV_POPULATE_WRITE fill the kernel's page tables only;
// under a hypervisor that shadows them (this project's test machines: a
// paravirtualized guest), the first user write to each page of a mapping
// still traps to the hypervisor: measured there, about 4 us a page against
// 0.03 us once written, and 1.4 us for a first read (a write after it
// traps again). A 16 MiB ring is 4,096 such traps, about 19 ms per rank
// by arithmetic, which fell in the timed writes (ior-hard: 108 ms against
// 29 with the rings prefaulted). On bare metal the loop costs a load or a
// store per page. mem must start on a page boundary.
func Prefault(mem []byte, write bool) {
	var sum uint32
	for i := 0; i+4 <= len(mem); i += pageBytes {
		w := (*atomic.Uint32)(unsafe.Pointer(&mem[i]))
		if write {
			w.Add(0)
		} else {
			sum += w.Load()
		}
	}
	prefaultSink.Store(sum)
}

// prefaultSink keeps the read touches from being optimized away.
var prefaultSink atomic.Uint32

const pageBytes = 4096

// Bytes returns the mapped memory.
func (r *Region) Bytes() []byte { return r.mem }

// FD returns the memfd of a created region (until CloseFD), else -1.
func (r *Region) FD() int { return r.fd }

// CloseFD closes the memfd once it has been passed on; the mapping stays.
func (r *Region) CloseFD() {
	if r.fd >= 0 {
		unix.Close(r.fd)
		r.fd = -1
	}
}

// Slice returns mem[off:off+n] if that lies inside the region.
func (r *Region) Slice(off, n uint64) ([]byte, bool) {
	if off > uint64(len(r.mem)) || n > uint64(len(r.mem))-off {
		return nil, false
	}
	return r.mem[off : off+n : off+n], true
}

// Word returns the 64-bit word at off (8-byte aligned, inside the region)
// for atomic access by both processes: the control page's slots.
func (r *Region) Word(off uint64) *atomic.Uint64 {
	if off%8 != 0 || off+8 > uint64(len(r.mem)) {
		panic("shm: word outside the region or unaligned")
	}
	return (*atomic.Uint64)(unsafe.Pointer(&r.mem[off]))
}

// Close unmaps the region. No slice of it may be used afterwards.
func (r *Region) Close() error {
	r.CloseFD()
	if r.mem == nil {
		return nil
	}
	err := unix.Munmap(r.mem)
	r.mem = nil
	return err
}
