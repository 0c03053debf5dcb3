package server

import (
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"syscall"
	"time"
)

// Socket permissions: the directory keeps other users from even reaching
// the socket; the socket lets the owner and the group connect.
const (
	socketDirMode fs.FileMode = 0o750
	socketMode    fs.FileMode = 0o660
)

// staleDialTimeout bounds the probe that decides whether an existing socket
// still has a listener.
const staleDialTimeout = time.Second

// listenUnix listens on path with mode 0660 (and group gid when gid > 0),
// creating the parent directory with mode 0750 when it is missing. An
// existing socket at path is removed only when nothing accepts connections
// on it; anything else at path is an error. The socket is bound under a
// temporary name, given its mode, then renamed into place, so it is never
// reachable with the wrong permissions. It returns the listener and the
// socket's file info, to tell later whether path is still this socket.
func listenUnix(path string, gid int) (*net.UnixListener, os.FileInfo, error) {
	if path == "" {
		return nil, nil, errors.New("socket path is empty")
	}
	dir := filepath.Dir(path)
	if _, err := os.Stat(dir); errors.Is(err, fs.ErrNotExist) {
		if err := os.MkdirAll(dir, socketDirMode); err != nil {
			return nil, nil, fmt.Errorf("failed to create socket directory %s: %w", dir, err)
		}
		// MkdirAll applies the umask; say what we mean.
		if err := os.Chmod(dir, socketDirMode); err != nil {
			return nil, nil, fmt.Errorf("failed to set mode of socket directory %s: %w", dir, err)
		}
	} else if err != nil {
		return nil, nil, fmt.Errorf("failed to stat socket directory %s: %w", dir, err)
	}

	if err := removeStaleSocket(path); err != nil {
		return nil, nil, err
	}

	tmp := path + ".tmp." + strconv.Itoa(os.Getpid())
	if err := os.Remove(tmp); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return nil, nil, fmt.Errorf("failed to remove leftover socket %s: %w", tmp, err)
	}
	l, err := net.ListenUnix("unix", &net.UnixAddr{Name: tmp, Net: "unix"})
	if err != nil {
		return nil, nil, fmt.Errorf("failed to listen on %s: %w", tmp, err)
	}
	// The name changes below; the server removes the final name itself.
	l.SetUnlinkOnClose(false)
	fail := func(err error) (*net.UnixListener, os.FileInfo, error) {
		_ = l.Close()
		_ = os.Remove(tmp)
		return nil, nil, err
	}
	if err := os.Chmod(tmp, socketMode); err != nil {
		return fail(fmt.Errorf("failed to set mode of socket %s: %w", tmp, err))
	}
	if gid > 0 {
		if err := os.Lchown(tmp, -1, gid); err != nil {
			return fail(fmt.Errorf("failed to set group %d of socket %s: %w", gid, tmp, err))
		}
	}
	if err := os.Rename(tmp, path); err != nil {
		return fail(fmt.Errorf("failed to move socket %s into place at %s: %w", tmp, path, err))
	}
	fi, err := os.Lstat(path)
	if err != nil {
		_ = l.Close()
		return nil, nil, fmt.Errorf("failed to stat socket %s: %w", path, err)
	}
	return l, fi, nil
}

// removeStaleSocket removes the socket at path if nothing listens on it. It
// refuses to touch a file that is not a socket, and a socket that accepts
// connections (another agent is running).
func removeStaleSocket(path string) error {
	fi, err := os.Lstat(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("failed to stat socket %s: %w", path, err)
	}
	if fi.Mode()&fs.ModeSocket == 0 {
		return fmt.Errorf("refusing to replace %s: it is a %s, not a socket", path, fi.Mode().Type())
	}
	c, err := net.DialTimeout("unix", path, staleDialTimeout)
	if err == nil {
		_ = c.Close()
		return fmt.Errorf("socket %s is in use: another process listens on it", path)
	}
	if !errors.Is(err, syscall.ECONNREFUSED) {
		return fmt.Errorf("failed to probe socket %s for a listener: %w", path, err)
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("failed to remove stale socket %s: %w", path, err)
	}
	return nil
}

// removeSocket removes path if it is still the socket described by fi (not
// one a newer process put there).
func removeSocket(path string, fi os.FileInfo) error {
	cur, err := os.Lstat(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("failed to stat socket %s: %w", path, err)
	}
	if !os.SameFile(cur, fi) {
		return nil
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("failed to remove socket %s: %w", path, err)
	}
	return nil
}
