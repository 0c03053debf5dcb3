package writer

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"
	"testing"

	"github.com/infera-io/temper/nodeagent/cgroupfs/cgrouptest/hostcg"
)

// On the real kernel's cgroupfs a read keeps its descriptor: the next read
// sees a value written through another descriptor; once the cgroup is
// removed the read fails as a missing file (so the writer reports it gone),
// not with a stale value; a cgroup made again at the same path is read
// afresh. Runs on this machine's cgroup v1 cpu hierarchy (or the v2 tree).
func TestPrivilegedKeptDescriptors(t *testing.T) {
	hostcg.RequireRoot(t)
	parent, file := "/sys/fs/cgroup/cpu", "cpu.shares"
	if _, err := os.Stat(filepath.Join(parent, file)); err != nil {
		parent, file = "/sys/fs/cgroup", "cpu.weight"
		if _, err := os.Stat(filepath.Join(parent, "cgroup.controllers")); err != nil {
			t.Skip("no cgroup v1 cpu hierarchy and no cgroup v2 tree here")
		}
	}
	sb := hostcg.New(t)
	dir := filepath.Join(parent, hostcg.RandomName(t))
	sb.Mkdir(dir, false)
	p := filepath.Join(dir, file)
	o := newOSFS()
	defer o.close()

	if err := o.WriteFile(p, []byte("300")); err != nil {
		t.Fatal(err)
	}
	read := func() (string, error) {
		t.Helper()
		b, err := o.ReadFile(p)
		return string(b), err
	}
	if v, err := read(); err != nil || v != "300\n" {
		t.Fatalf("first read = %q, %v; want 300", v, err)
	}
	if o.files.Len() != 1 {
		t.Fatalf("a read on cgroupfs did not keep its descriptor (kept: %d)", o.files.Len())
	}
	if err := os.WriteFile(p, []byte("700"), 0); err != nil {
		t.Fatal(err)
	}
	if v, err := read(); err != nil || v != "700\n" {
		t.Fatalf("read through the kept descriptor after another write = %q, %v; want 700", v, err)
	}

	if err := syscall.Rmdir(dir); err != nil {
		t.Fatal(err)
	}
	_, err := read()
	if !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("read after the cgroup was removed: %v, want a not-exist error", err)
	}
	if c := classify(o, "read", dir, file, err); !errors.Is(c, ErrGone) {
		t.Errorf("the writer classifies it as %v, want ErrGone", c)
	}
	if o.files.Len() != 0 {
		t.Error("the descriptor of a removed cgroup is still kept")
	}

	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte("500"), 0); err != nil {
		t.Fatal(err)
	}
	if v, err := read(); err != nil || v != "500\n" {
		t.Errorf("read of the cgroup made again at the same path = %q, %v; want 500", v, err)
	}
	o.forget(dir)
	if n := o.files.Len(); n != 0 {
		t.Errorf("forget(%s) left %d descriptors kept", dir, n)
	}
}

// Files outside a cgroup file system (faked trees) are not kept: a test may
// replace one by another inode, which a kept descriptor would not see.
func TestOrdinaryFilesAreNotKept(t *testing.T) {
	p := filepath.Join(t.TempDir(), "cpu.weight")
	if err := os.WriteFile(p, []byte("100\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	o := newOSFS()
	if b, err := o.ReadFile(p); err != nil || string(b) != "100\n" {
		t.Fatalf("ReadFile = %q, %v", b, err)
	}
	if o.files.Len() != 0 {
		t.Errorf("an ordinary file's descriptor was kept")
	}
}
