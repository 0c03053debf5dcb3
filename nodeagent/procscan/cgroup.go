package procscan

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"slices"

	"golang.org/x/sys/unix"
)

// maxCgroupDirs bounds the container cgroups read under one pod cgroup.
const maxCgroupDirs = 64

// maxProcsBytes bounds the bytes read of one cgroup.procs file.
const maxProcsBytes = 64 << 10

// maxListedDirs bounds the directory entries kept of one pod cgroup.
const maxListedDirs = 4096

// ReadCgroupProcs appends to dst the processes of the pod cgroup dir: its
// own cgroup.procs and those of its direct children (the kubelet puts
// containers one level below the pod), at most max pids and 64 children. The
// kernel may list a pid twice across a move; duplicates are dropped. A
// child that disappears while being read is skipped.
//
// It is CgroupReader.Read with a reader of its own; a caller that reads
// every pod at every tick keeps one CgroupReader instead.
func ReadCgroupProcs(dir string, maxPIDs int, dst []int) ([]int, error) {
	var r CgroupReader
	defer r.Close()
	return r.Read(dir, maxPIDs, dst)
}

// CgroupReader reads pods' cgroup.procs files with buffers it keeps, by
// plain system calls: no os.File (whose open registers the descriptor with
// the runtime's poller, two more system calls per file on cgroupfs), no
// directory entries built for the files of a cgroup. The observation layer
// reads every pod's cgroup at every tick, so the reader also keeps the
// cgroup directories and cgroup.procs files it read open and reads them
// again from offset 0 (the kernel renders them anew): Sweep closes those a
// tick did not read, Close all. A kept file of a removed cgroup fails
// (ENODEV) and is looked up again by path. Not safe for concurrent use.
type CgroupReader struct {
	buf   []byte       // file contents, grown up to maxProcsBytes
	dent  []byte       // getdents64 records
	seen  map[int]bool // pids already in dst
	path  []byte
	dirs  []string
	files map[string]*keptFile
	gen   uint64
}

type keptFile struct {
	fd  int
	gen uint64
}

// Sweep closes the files not read since the last Sweep (their pods are
// gone).
func (r *CgroupReader) Sweep() {
	for p, f := range r.files {
		if f.gen != r.gen {
			_ = unix.Close(f.fd)
			delete(r.files, p)
		}
	}
	r.gen++
}

// Close closes every kept file.
func (r *CgroupReader) Close() {
	for p, f := range r.files {
		_ = unix.Close(f.fd)
		delete(r.files, p)
	}
}

// open returns the kept descriptor of path, or opens and keeps it.
func (r *CgroupReader) open(path string, flags int) (int, error) {
	if f, ok := r.files[path]; ok {
		f.gen = r.gen
		return f.fd, nil
	}
	fd, err := openRetry(path, flags)
	if err != nil {
		return -1, err
	}
	if r.files == nil {
		r.files = map[string]*keptFile{}
	}
	r.files[path] = &keptFile{fd: fd, gen: r.gen}
	return fd, nil
}

// drop closes and forgets a kept descriptor that failed.
func (r *CgroupReader) drop(path string) {
	if f, ok := r.files[path]; ok {
		_ = unix.Close(f.fd)
		delete(r.files, path)
	}
}

// Read is ReadCgroupProcs with the reader's buffers.
func (r *CgroupReader) Read(dir string, maxPIDs int, dst []int) ([]int, error) {
	if r.seen == nil {
		r.seen = map[int]bool{}
	}
	clear(r.seen)
	for _, p := range dst {
		r.seen[p] = true
	}
	start := len(dst)
	dst, err := r.appendProcs(r.join(dir, "", "cgroup.procs"), start+maxPIDs, dst)
	if err != nil {
		return dst, err
	}
	dirs, err := r.subdirs(dir)
	if err != nil {
		return dst, fmt.Errorf("failed to list cgroup %s: %w", dir, err)
	}
	for i, name := range dirs {
		if len(dst)-start >= maxPIDs || i >= maxCgroupDirs {
			break
		}
		dst, err = r.appendProcs(r.join(dir, name, "cgroup.procs"), start+maxPIDs, dst)
		if err != nil && !errors.Is(err, os.ErrNotExist) {
			return dst, err
		}
	}
	return dst, nil
}

func (r *CgroupReader) join(dir, child, file string) string {
	r.path = append(r.path[:0], dir...)
	if child != "" {
		r.path = append(append(r.path, '/'), child...)
	}
	r.path = append(append(r.path, '/'), file...)
	return string(r.path)
}

// subdirs lists the directories in dir sorted by name (as os.ReadDir
// would), at most maxListedDirs.
func (r *CgroupReader) subdirs(dir string) ([]string, error) {
	for retry := true; ; retry = false {
		dirs, err := r.listDirs(dir)
		if err == nil || !retry {
			return dirs, err
		}
		r.drop(dir) // a kept directory that was removed: look it up again
	}
}

func (r *CgroupReader) listDirs(dir string) ([]string, error) {
	fd, err := r.open(dir, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC)
	if err != nil {
		return nil, &fs.PathError{Op: "open", Path: dir, Err: err}
	}
	if _, err := unix.Seek(fd, 0, 0); err != nil {
		return nil, &fs.PathError{Op: "seek", Path: dir, Err: err}
	}
	if r.dent == nil {
		r.dent = make([]byte, 8<<10)
	}
	r.dirs = r.dirs[:0]
	for len(r.dirs) < maxListedDirs {
		n, err := unix.Getdents(fd, r.dent)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return nil, &fs.PathError{Op: "readdirent", Path: dir, Err: err}
		}
		if n <= 0 {
			break
		}
		r.dirs = appendDirs(r.dirs, r.dent[:n])
	}
	slices.Sort(r.dirs)
	return r.dirs, nil
}

// appendDirs appends the names of the directories (but . and ..) among the
// linux_dirent64 records in b: ino u64, off s64, reclen u16, type u8, name.
func appendDirs(dst []string, b []byte) []string {
	for len(b) >= 19 {
		reclen := int(b[16]) | int(b[17])<<8
		if reclen < 19 || reclen > len(b) {
			break
		}
		if b[18] == unix.DT_DIR {
			name := b[19:reclen]
			if i := bytes.IndexByte(name, 0); i >= 0 {
				name = name[:i]
			}
			if s := string(name); s != "." && s != ".." {
				dst = append(dst, s)
			}
		}
		b = b[reclen:]
	}
	return dst
}

// appendProcs appends the pids of one cgroup.procs file, up to limit
// entries in dst, reading at most 64 KiB.
func (r *CgroupReader) appendProcs(path string, limit int, dst []int) ([]int, error) {
	b, err := r.readFile(path)
	if err != nil {
		return dst, fmt.Errorf("failed to read %s: %w", path, err)
	}
	if len(b) == maxProcsBytes {
		// Cut mid-file: drop the partial last line.
		b = b[:bytes.LastIndexByte(b, '\n')+1]
	}
	for line := range bytes.Lines(b) {
		if len(dst) >= limit {
			break
		}
		pid, ok := parseUint(bytes.TrimSpace(line))
		if !ok || pid == 0 || pid > 1<<31 {
			continue
		}
		if !r.seen[int(pid)] {
			r.seen[int(pid)] = true
			dst = append(dst, int(pid))
		}
	}
	return dst, nil
}

// readFile reads up to maxProcsBytes of path into the reader's buffer.
func (r *CgroupReader) readFile(path string) ([]byte, error) {
	for retry := true; ; retry = false {
		b, err := r.readKept(path)
		if err == nil || !retry {
			return b, err
		}
		var pe *fs.PathError
		if errors.As(err, &pe) && pe.Op == "open" {
			return nil, err // not kept: nothing to look up again
		}
		r.drop(path)
	}
}

func (r *CgroupReader) readKept(path string) ([]byte, error) {
	fd, err := r.open(path, unix.O_RDONLY|unix.O_CLOEXEC)
	if err != nil {
		return nil, &fs.PathError{Op: "open", Path: path, Err: err}
	}
	if r.buf == nil {
		r.buf = make([]byte, 4<<10)
	}
	n := 0
	for {
		if n == len(r.buf) {
			if len(r.buf) >= maxProcsBytes {
				return r.buf[:n], nil
			}
			r.buf = append(r.buf, make([]byte, len(r.buf))...)[:min(2*len(r.buf), maxProcsBytes)]
		}
		m, err := unix.Pread(fd, r.buf[n:], int64(n))
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return nil, &fs.PathError{Op: "read", Path: path, Err: err}
		}
		if m <= 0 {
			return r.buf[:n], nil
		}
		n += m
	}
}

func openRetry(path string, flags int) (int, error) {
	for {
		fd, err := unix.Open(path, flags, 0)
		if err != unix.EINTR {
			return fd, err
		}
	}
}
