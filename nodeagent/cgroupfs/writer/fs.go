package writer

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"

	"github.com/infera-io/temper/nodeagent/keptfile"
)

// ErrGone means the cgroup no longer exists: its pod went away, maybe in the
// middle of a write. The writer forgets the cgroup; callers treat it as done,
// not as a failure to retry.
var ErrGone = errors.New("cgroup is gone")

// ErrMissingFile means the cgroup exists but has no such file: the
// controller is not enabled there (v2 subtree_control, an unmounted v1
// hierarchy) or the kernel predates the file (cpu.idle before 5.15).
var ErrMissingFile = errors.New("cgroup file missing")

// ErrNotWritable means the cgroup filesystem refuses writes: mounted
// read-only (EROFS) or the agent lacks the privilege (EACCES, EPERM).
var ErrNotWritable = errors.New("cgroup filesystem not writable")

// ErrRejected means the kernel refused the value (EINVAL, EBUSY, ERANGE for an out-of-range v2 weight; EACCES on
// a v1 cpuset file). Known causes: a weight written while cpu.idle=1, a
// cpuset narrowed below a child's, a v1 cpuset not a subset of its
// parent's, a value out of range.
var ErrRejected = errors.New("kernel rejected the value")

// fileSystem is the file access of the writer, so tests can inject kernel
// errors (ENODEV, EROFS, EBUSY) that a faked tree cannot produce.
type fileSystem interface {
	ReadFile(name string) ([]byte, error)
	// WriteFile writes to an existing file; it never creates one.
	WriteFile(name string, data []byte) error
	Stat(name string) (fs.FileInfo, error)
}

// osFS is the real file system. Reads keep files on a cgroup file system
// open and read them anew from offset 0 next time (keptfile): the drift
// check reads every enforced file once per reconcile interval, and the open
// (a path walk through the cgroup tree) was most of its cost. A kept file
// of a removed cgroup fails its read (ENODEV) and its path is looked up
// again, so a gone cgroup still reads as missing. Files on other file
// systems (the faked trees of tests) are opened for every read.
type osFS struct {
	mu    sync.Mutex
	files keptfile.Files
}

// maxKeptFiles bounds the files osFS keeps open (a node of 250 pods with a
// few enforced files each stays well under it).
const maxKeptFiles = 4096

func newOSFS() *osFS {
	return &osFS{files: keptfile.Files{Keep: keptfile.OnCgroupFS, Max: maxKeptFiles}}
}

// ReadFile reads a file by plain system calls. Errors are *fs.PathError, as
// os.ReadFile's.
func (o *osFS) ReadFile(name string) ([]byte, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	b, err := o.files.ReadPath(name)
	return bytes.Clone(b), err
}

// forget closes the kept files in dir and below.
func (o *osFS) forget(dir string) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.files.Forget(dir)
}

// close closes every kept file.
func (o *osFS) close() {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.files.Close()
}

func (*osFS) Stat(name string) (fs.FileInfo, error) { return os.Stat(name) }

func (*osFS) WriteFile(name string, data []byte) error {
	// No O_CREATE: a missing cgroup file must fail, not appear. O_TRUNC is
	// ignored by cgroupfs and keeps faked trees exact.
	f, err := os.OpenFile(name, os.O_WRONLY|os.O_TRUNC, 0)
	if err != nil {
		return err
	}
	_, werr := f.Write(data)
	cerr := f.Close()
	if werr != nil {
		return werr
	}
	return cerr
}

// classify turns a file error on path/file into the writer's sentinels.
// verb is "read" or "write".
func classify(fsys fileSystem, verb, path, file string, err error) error {
	p := filepath.Join(path, file)
	// The message names the file once; the errno stays in the chain.
	var pe *fs.PathError
	if errors.As(err, &pe) {
		err = pe.Err
	}
	switch {
	case errors.Is(err, syscall.ENODEV):
		// A write through a file of a cgroup removed after the open.
		return fmt.Errorf("failed to %s %s: %w: %w", verb, p, ErrGone, err)
	case errors.Is(err, fs.ErrNotExist):
		if _, serr := fsys.Stat(path); serr != nil && errors.Is(serr, fs.ErrNotExist) {
			return fmt.Errorf("failed to %s %s: %w: %w", verb, p, ErrGone, err)
		}
		return fmt.Errorf("failed to %s %s: %w (controller not enabled there, or the kernel lacks the file): %w", verb, p, ErrMissingFile, err)
	case errors.Is(err, syscall.EACCES) && strings.HasPrefix(file, "cpuset."):
		// cgroup v1 answers EACCES to a cpuset that is not a subset of its
		// parent's, not to a lack of privilege.
		return fmt.Errorf("failed to %s %s: %w (a v1 cpuset must be a subset of its parent's): %w", verb, p, ErrRejected, err)
	case errors.Is(err, syscall.EROFS), errors.Is(err, syscall.EACCES), errors.Is(err, syscall.EPERM):
		return fmt.Errorf("failed to %s %s: %w (mount the cgroup filesystem read-write and run the agent privileged): %w", verb, p, ErrNotWritable, err)
	case errors.Is(err, syscall.EINVAL), errors.Is(err, syscall.EBUSY), errors.Is(err, syscall.ERANGE):
		return fmt.Errorf("failed to %s %s: %w: %w", verb, p, ErrRejected, err)
	default:
		return fmt.Errorf("failed to %s %s: %w", verb, p, err)
	}
}

// retryable reports whether a failed restore may succeed once other files
// are restored: a cpuset narrower than a child's or wider than the
// parent's, a weight written while cpu.idle is still set.
func retryable(err error) bool { return errors.Is(err, ErrRejected) }
