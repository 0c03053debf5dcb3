package writer

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"
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

type osFS struct{}

// ReadFile reads a cgroup file by plain system calls: os.ReadFile would
// also stat it and register the descriptor with the runtime's poller (two
// more system calls on cgroupfs), and the drift check reads every enforced
// file on every reconcile interval. Errors are *fs.PathError, as
// os.ReadFile's.
func (osFS) ReadFile(name string) ([]byte, error) {
	var fd int
	var err error
	for {
		if fd, err = syscall.Open(name, syscall.O_RDONLY|syscall.O_CLOEXEC, 0); err != syscall.EINTR {
			break
		}
	}
	if err != nil {
		return nil, &fs.PathError{Op: "open", Path: name, Err: err}
	}
	defer func() { _ = syscall.Close(fd) }()
	// Cgroup files hold a value or a few lines; grow for the rest.
	b := make([]byte, 0, 512)
	for {
		if len(b) == cap(b) {
			b = append(b, 0)[:len(b)]
		}
		n, err := syscall.Read(fd, b[len(b):cap(b)])
		if err == syscall.EINTR {
			continue
		}
		if err != nil {
			return nil, &fs.PathError{Op: "read", Path: name, Err: err}
		}
		if n <= 0 {
			return b, nil
		}
		b = b[:len(b)+n]
	}
}

func (osFS) Stat(name string) (fs.FileInfo, error) { return os.Stat(name) }

func (osFS) WriteFile(name string, data []byte) error {
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
