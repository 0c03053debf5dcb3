// Package keptfile reads small kernel-rendered files (cgroupfs, procfs)
// that the agent reads again and again, keeping each one open between
// reads and reading it anew from offset 0: the kernel renders such a file
// on every read from 0, and re-reading an open file costs a fraction of
// looking its path up, opening and closing it. Reads are plain system calls
// (os.ReadFile would also stat the file and register it with the runtime's
// poller).
//
// A kept file that fails to read (its cgroup removed: ENODEV; its process
// gone) is closed and its path opened once more, so a path that no longer
// exists reads as missing, and one made again is read afresh.
//
// The files must be ones the kernel renders as a single record (a cgroup
// interface file, /proc/<pid>/stat or statm, a pressure file, a
// single_open procfs file such as net/netstat): a read that returns less
// than asked for is taken as the end of the file. A seq_file of many
// records (cgroup.procs, /proc/<pid>/maps) may return less at a record
// boundary before its end; read those otherwise.
package keptfile

import (
	"errors"
	"io/fs"
	"strings"
	"syscall"
)

// Files is a set of kept files. It is not safe for concurrent use; its
// users serialise their reads.
type Files struct {
	// Keep decides, after the first read, whether a file stays open; nil
	// keeps every file.
	Keep func(fd int) bool
	// Max bounds how many files stay open (0: no bound); a file past it is
	// read and closed.
	Max int
	// MaxSize bounds what is read of one file (0: the whole file).
	MaxSize int

	buf  []byte
	path []byte
	fds  map[string]*kept
	gen  uint64
}

type kept struct {
	fd  int
	gen uint64 // the last round that read it
}

// Read returns the contents of dir/file. The slice is valid until the next
// Read. Errors are *fs.PathError with the system call's errno.
func (f *Files) Read(dir, file string) ([]byte, error) {
	f.path = append(append(append(f.path[:0], dir...), '/'), file...)
	if k, ok := f.fds[string(f.path)]; ok {
		if b, err := f.readAt0(k.fd); err == nil {
			k.gen = f.gen
			return b, nil
		}
		_ = syscall.Close(k.fd)
		delete(f.fds, string(f.path))
	}
	path := string(f.path)
	fd, err := open(path)
	if err != nil {
		return nil, &fs.PathError{Op: "open", Path: path, Err: err}
	}
	b, err := f.readAt0(fd)
	if err != nil {
		_ = syscall.Close(fd)
		return nil, &fs.PathError{Op: "read", Path: path, Err: err}
	}
	if (f.Max <= 0 || len(f.fds) < f.Max) && (f.Keep == nil || f.Keep(fd)) {
		if f.fds == nil {
			f.fds = map[string]*kept{}
		}
		f.fds[path] = &kept{fd: fd, gen: f.gen}
	} else {
		_ = syscall.Close(fd)
	}
	return b, nil
}

// ReadPath is Read of a full path.
func (f *Files) ReadPath(path string) ([]byte, error) {
	i := strings.LastIndexByte(path, '/')
	if i < 0 {
		return f.Read(".", path)
	}
	return f.Read(path[:i], path[i+1:])
}

// Begin starts a round of reads; End then closes the files the round did
// not read (their pods are gone).
func (f *Files) Begin() { f.gen++ }

// End closes the files not read since Begin.
func (f *Files) End() {
	for p, k := range f.fds {
		if k.gen != f.gen {
			_ = syscall.Close(k.fd)
			delete(f.fds, p)
		}
	}
}

// Forget closes the kept files in dir and below.
func (f *Files) Forget(dir string) {
	for p, k := range f.fds {
		if strings.HasPrefix(p, dir+"/") {
			_ = syscall.Close(k.fd)
			delete(f.fds, p)
		}
	}
}

// Close closes every kept file.
func (f *Files) Close() {
	for p, k := range f.fds {
		_ = syscall.Close(k.fd)
		delete(f.fds, p)
	}
}

// Len is the number of files kept open.
func (f *Files) Len() int { return len(f.fds) }

// readAt0 reads the file from offset 0 into the shared buffer.
func (f *Files) readAt0(fd int) ([]byte, error) {
	if f.buf == nil {
		f.buf = make([]byte, 1024)
	}
	n := 0
	for {
		if n == len(f.buf) {
			if f.MaxSize > 0 && n >= f.MaxSize {
				return f.buf[:n], nil
			}
			f.buf = append(f.buf, make([]byte, n)...)
		}
		want := len(f.buf) - n
		m, err := syscall.Pread(fd, f.buf[n:], int64(n))
		if errors.Is(err, syscall.EINTR) {
			continue
		}
		if err != nil {
			return nil, err
		}
		n += max(m, 0)
		// A short read is the end: a single-record file (the package's
		// contract) is rendered whole by the kernel, and a read that could
		// not fill the buffer has taken all there is. Not asking again for
		// the 0 that says so halves the system calls of a scrape.
		if m < want {
			return f.buf[:n], nil
		}
	}
}

func open(path string) (int, error) {
	for {
		fd, err := syscall.Open(path, syscall.O_RDONLY|syscall.O_CLOEXEC, 0)
		if !errors.Is(err, syscall.EINTR) {
			return fd, err
		}
	}
}

// Magic numbers of statfs(2) for cgroup v1 and v2 (linux/magic.h).
const (
	cgroupSuperMagic  = 0x27e0eb
	cgroup2SuperMagic = 0x63677270
)

// OnCgroupFS is a Keep that keeps only files on a cgroup file system (not
// the faked trees of tests, where a file may be replaced by another inode
// that a kept descriptor would not see).
func OnCgroupFS(fd int) bool {
	var st syscall.Statfs_t
	if err := syscall.Fstatfs(fd, &st); err != nil {
		return false
	}
	t := int64(st.Type) //nolint:unconvert // Statfs_t.Type is int32 on some architectures.
	return t == cgroupSuperMagic || t == cgroup2SuperMagic
}
