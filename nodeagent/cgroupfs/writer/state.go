package writer

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"time"
)

const (
	stateFileName = "cgroup-originals.json"
	lockFileName  = "cgroup-writer.lock"
	stateVersion  = 1
)

// ErrLocked means another writer (another agent on this node) holds the
// state directory. Two writers would record each other's values as
// originals.
var ErrLocked = errors.New("cgroup writer state is locked by another process")

// stateFile is the on-disk form of the originals.
type stateFile struct {
	Version int       `json:"version"`
	BootID  string    `json:"bootID"`
	Written time.Time `json:"written"`
	// Originals are the values found before the first write to each file.
	Originals []Original `json:"originals"`
}

// Original is the value of a cgroup file before the writer first changed it.
type Original struct {
	Path string `json:"path"`
	File string `json:"file"`
	// Value is the file's content exactly as read, trailing newline
	// included.
	Value    string    `json:"value"`
	Recorded time.Time `json:"recorded"`
}

// StateReport says what New found in the state directory.
type StateReport struct {
	// Path is the state file.
	Path string
	// Adopted is the number of originals taken over from a previous run in
	// this boot (an agent restart or crash).
	Adopted int
	// SetAside is where an untrusted state file was moved, with the Reason;
	// both empty when there was none.
	SetAside string
	Reason   string
}

// loadState reads the state file. A missing file is an empty state. A file
// that cannot be trusted (corrupt, unknown version, another boot) is moved
// aside and reported; its originals are not used.
func loadState(dir, bootID string, now time.Time) (map[key]Original, StateReport, error) {
	p := filepath.Join(dir, stateFileName)
	rep := StateReport{Path: p}
	b, err := os.ReadFile(p)
	if errors.Is(err, fs.ErrNotExist) {
		return map[key]Original{}, rep, nil
	}
	if err != nil {
		return nil, rep, fmt.Errorf("failed to read cgroup state file %s: %w", p, err)
	}
	var st stateFile
	reason, tag := "", ""
	if err := json.Unmarshal(b, &st); err != nil {
		reason, tag = fmt.Sprintf("corrupt: %v", err), "corrupt"
	} else if st.Version != stateVersion {
		reason, tag = fmt.Sprintf("unknown version %d (this agent reads %d)", st.Version, stateVersion), "corrupt"
	} else if st.BootID != bootID {
		reason, tag = fmt.Sprintf("written in boot %q, this is boot %q: the cgroups it describes were recreated at boot", st.BootID, bootID), "other-boot"
	} else if bad := invalidOriginal(st.Originals); bad != "" {
		reason, tag = "corrupt: "+bad, "corrupt"
	}
	if reason != "" {
		aside := fmt.Sprintf("%s.%s-%s", p, tag, now.UTC().Format("20060102T150405.000000000Z"))
		if err := os.Rename(p, aside); err != nil {
			return nil, rep, fmt.Errorf("failed to set aside untrusted cgroup state file %s (%s): %w", p, reason, err)
		}
		rep.SetAside, rep.Reason = aside, reason
		return map[key]Original{}, rep, nil
	}
	m := make(map[key]Original, len(st.Originals))
	for _, o := range st.Originals {
		m[key{o.Path, o.File}] = o
	}
	rep.Adopted = len(m)
	return m, rep, nil
}

func invalidOriginal(origs []Original) string {
	for _, o := range origs {
		if err := validTarget(o.Path, o.File); err != nil {
			return err.Error()
		}
	}
	return ""
}

// saveState persists the originals atomically: a temporary file in the same
// directory, fsynced, renamed over the state file, then the directory
// fsynced so the rename survives a crash. With no originals the file is
// removed.
func saveState(dir, bootID string, now time.Time, originals map[key]Original) error {
	p := filepath.Join(dir, stateFileName)
	if len(originals) == 0 {
		if err := os.Remove(p); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("failed to remove cgroup state file %s: %w", p, err)
		}
		return syncDir(dir)
	}
	st := stateFile{Version: stateVersion, BootID: bootID, Written: now.UTC()}
	for _, o := range originals {
		st.Originals = append(st.Originals, o)
	}
	sort.Slice(st.Originals, func(i, j int) bool {
		a, b := st.Originals[i], st.Originals[j]
		if a.Path != b.Path {
			return a.Path < b.Path
		}
		return a.File < b.File
	})
	b, err := json.MarshalIndent(st, "", "  ")
	if err != nil {
		return fmt.Errorf("failed to encode cgroup state: %w", err)
	}
	tmp, err := os.CreateTemp(dir, stateFileName+".tmp-*")
	if err != nil {
		return fmt.Errorf("failed to create temporary cgroup state file in %s: %w", dir, err)
	}
	defer os.Remove(tmp.Name()) // no-op after the rename
	if _, err := tmp.Write(append(b, '\n')); err != nil {
		tmp.Close()
		return fmt.Errorf("failed to write %s: %w", tmp.Name(), err)
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return fmt.Errorf("failed to sync %s: %w", tmp.Name(), err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("failed to close %s: %w", tmp.Name(), err)
	}
	if err := os.Rename(tmp.Name(), p); err != nil {
		return fmt.Errorf("failed to rename %s to %s: %w", tmp.Name(), p, err)
	}
	return syncDir(dir)
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("failed to open state dir %s: %w", dir, err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("failed to sync state dir %s: %w", dir, err)
	}
	return nil
}

// lockDir takes an exclusive, non-blocking flock on the state directory's
// lock file. The kernel drops it when the process dies.
func lockDir(dir string) (*os.File, error) {
	p := filepath.Join(dir, lockFileName)
	f, err := os.OpenFile(p, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("failed to open lock file %s: %w", p, err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			return nil, fmt.Errorf("failed to lock %s: %w", p, ErrLocked)
		}
		return nil, fmt.Errorf("failed to lock %s: %w", p, err)
	}
	return f, nil
}

func readBootID(p string) (string, error) {
	b, err := os.ReadFile(p)
	if err != nil {
		return "", fmt.Errorf("failed to read boot ID from %s: %w", p, err)
	}
	id := strings.TrimSpace(string(b))
	if id == "" {
		return "", fmt.Errorf("failed to read boot ID from %s: empty", p)
	}
	return id, nil
}
