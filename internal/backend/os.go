package backend

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"
)

// OS is the operating system's file system, confined to Root. With Root
// "/" paths are opened as given. Otherwise every open resolves beneath the
// root with openat2(RESOLVE_BENEATH): "..", absolute symlinks and symlinks
// that leave the root fail with ErrPathEscape.
type OS struct {
	root   string
	rootFD int // -1 when root is "/"
}

// NewOS returns the file system under root, which must be an existing
// directory.
func NewOS(root string) (*OS, error) {
	abs, err := filepath.Abs(root)
	if err != nil {
		return nil, err
	}
	o := &OS{root: filepath.Clean(abs), rootFD: -1}
	if o.root == "/" {
		return o, nil
	}
	fd, err := unix.Open(o.root, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, &fs.PathError{Op: "open root", Path: o.root, Err: err}
	}
	o.rootFD = fd
	return o, nil
}

// Root returns the root directory.
func (o *OS) Root() string { return o.root }

// rel returns path relative to the root, or ErrPathEscape.
func (o *OS) rel(op, path string) (string, error) {
	if !filepath.IsAbs(path) || filepath.Clean(path) != path {
		return "", &fs.PathError{Op: op, Path: path, Err: errors.New("path is not absolute and clean")}
	}
	if o.root == "/" {
		return path, nil
	}
	r, err := filepath.Rel(o.root, path)
	if err != nil || r == ".." || strings.HasPrefix(r, "../") {
		return "", &fs.PathError{Op: op, Path: path, Err: fmt.Errorf("%w %s", ErrPathEscape, o.root)}
	}
	return r, nil
}

func (o *OS) escape(op, path string, err error) error {
	if errors.Is(err, unix.EXDEV) {
		err = fmt.Errorf("%w %s", ErrPathEscape, o.root)
	}
	return &fs.PathError{Op: op, Path: path, Err: err}
}

// OpenFile implements FS.
func (o *OS) OpenFile(path string, flag int, perm fs.FileMode) (File, error) {
	r, err := o.rel("open", path)
	if err != nil {
		return nil, err
	}
	if o.rootFD < 0 {
		f, err := os.OpenFile(r, flag, perm)
		if err != nil {
			return nil, err
		}
		return newOSFile(f), nil
	}
	how := unix.OpenHow{
		Flags:   uint64(flag | unix.O_CLOEXEC),
		Resolve: unix.RESOLVE_BENEATH | unix.RESOLVE_NO_MAGICLINKS,
	}
	if flag&(os.O_CREATE|unix.O_TMPFILE) != 0 {
		how.Mode = uint64(perm.Perm()) // openat2 refuses a mode otherwise
	}
	fd, err := unix.Openat2(o.rootFD, r, &how)
	if err != nil {
		return nil, o.escape("open", path, err)
	}
	return newOSFile(os.NewFile(uintptr(fd), path)), nil
}

// Remove implements FS.
func (o *OS) Remove(path string) error {
	r, err := o.rel("remove", path)
	if err != nil {
		return err
	}
	if o.rootFD < 0 {
		return os.Remove(r)
	}
	dir, base := filepath.Split(r)
	if dir == "" {
		dir = "."
	}
	how := unix.OpenHow{
		Flags:   unix.O_PATH | unix.O_DIRECTORY | unix.O_CLOEXEC,
		Resolve: unix.RESOLVE_BENEATH | unix.RESOLVE_NO_MAGICLINKS,
	}
	dfd, err := unix.Openat2(o.rootFD, dir, &how)
	if err != nil {
		return o.escape("remove", path, err)
	}
	defer unix.Close(dfd)
	if err := unix.Unlinkat(dfd, base, 0); err != nil {
		return &fs.PathError{Op: "remove", Path: path, Err: err}
	}
	return nil
}

// Close releases the root directory.
func (o *OS) Close() error {
	if o.rootFD >= 0 {
		unix.Close(o.rootFD)
		o.rootFD = -1
	}
	return nil
}

type osFile struct {
	f       *os.File
	writers int // concurrent writes a large write is split into (parallel.go)
}

func newOSFile(f *os.File) *osFile {
	return &osFile{f: f, writers: writersFor()}
}

func (f *osFile) ReadAt(p []byte, off int64) (int, error) { return f.f.ReadAt(p, off) }

// WriteAt writes p at off; a large p is written by several concurrent
// pwrites when DELEGATE_BACKEND_WRITERS asks for them (parallel.go).
func (f *osFile) WriteAt(p []byte, off int64) (int, error) {
	if f.writers > 1 && len(p) >= 2*splitBytes {
		n, err := f.writeParallel([][]byte{p}, off)
		return int(n), err
	}
	return f.f.WriteAt(p, off)
}
func (f *osFile) Truncate(size int64) error { return f.f.Truncate(size) }
func (f *osFile) Sync() error               { return f.f.Sync() }
func (f *osFile) Close() error              { return f.f.Close() }

// Identity implements Identifier.
func (f *osFile) Identity() (dev, ino uint64, err error) {
	st, err := f.f.Stat()
	if err != nil {
		return 0, 0, err
	}
	sys, ok := st.Sys().(*syscall.Stat_t)
	if !ok {
		return 0, 0, errors.ErrUnsupported
	}
	return uint64(sys.Dev), sys.Ino, nil
}

// Birth implements Birther (statx of the descriptor; 0 when the file
// system keeps no birth time).
func (f *osFile) Birth() (uint64, error) {
	var stx unix.Statx_t
	if err := unix.Statx(int(f.f.Fd()), "", unix.AT_EMPTY_PATH, unix.STATX_BTIME, &stx); err != nil {
		return 0, err
	}
	if stx.Mask&unix.STATX_BTIME == 0 {
		return 0, nil
	}
	return uint64(stx.Btime.Sec)*1e9 + uint64(stx.Btime.Nsec), nil
}

// SyscallConn implements FDFile.
func (f *osFile) SyscallConn() (syscall.RawConn, error) { return f.f.SyscallConn() }

// maxIOV is the kernel's limit on iovecs per pwritev (IOV_MAX).
const maxIOV = 1024

// WriteAtv implements VectorWriter with pwritev, looping over short writes
// and the iovec limit.
func (f *osFile) WriteAtv(bufs [][]byte, off int64) (int64, error) {
	if f.writers > 1 {
		var total int64
		for _, b := range bufs {
			total += int64(len(b))
		}
		if total >= 2*splitBytes {
			return f.writeParallel(bufs, off)
		}
	}
	return f.pwritev(bufs, off)
}

// pwritev is WriteAtv in one thread.
func (f *osFile) pwritev(bufs [][]byte, off int64) (int64, error) {
	fd := int(f.f.Fd())
	var total int64
	for len(bufs) > 0 {
		batch := bufs[:min(len(bufs), maxIOV)]
		n, err := unix.Pwritev(fd, batch, off)
		if err != nil {
			return total, &fs.PathError{Op: "pwritev", Path: f.f.Name(), Err: err}
		}
		total += int64(n)
		off += int64(n)
		// Drop what was written; a short write resumes mid-buffer.
		for n > 0 && len(bufs) > 0 {
			if n >= len(bufs[0]) {
				n -= len(bufs[0])
				bufs = bufs[1:]
			} else {
				bufs = append([][]byte{bufs[0][n:]}, bufs[1:]...)
				n = 0
			}
		}
	}
	return total, nil
}

func (f *osFile) Size() (int64, error) {
	st, err := f.f.Stat()
	if err != nil {
		return 0, err
	}
	return st.Size(), nil
}

func (f *osFile) Allocate(size int64) error {
	cur, err := f.Size()
	if err != nil || cur >= size {
		return err
	}
	err = unix.Fallocate(int(f.f.Fd()), 0, 0, size)
	if errors.Is(err, unix.EOPNOTSUPP) || errors.Is(err, unix.ENOSYS) {
		return f.f.Truncate(size) // the file system cannot allocate: extend
	}
	if err != nil {
		return &fs.PathError{Op: "fallocate", Path: f.f.Name(), Err: err}
	}
	return nil
}
