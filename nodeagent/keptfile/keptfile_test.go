package keptfile

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func write(t *testing.T, p, s string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte(s), 0o644); err != nil {
		t.Fatal(err)
	}
}

// Files stay open between reads and are read anew; a round closes what it
// did not read; Forget closes a directory's files; Max and Keep bound what
// stays open; a missing file is a not-exist *fs.PathError.
func TestFiles(t *testing.T) {
	dir := t.TempDir()
	a, b := filepath.Join(dir, "a"), filepath.Join(dir, "b")
	write(t, filepath.Join(a, "x"), "1\n")
	write(t, filepath.Join(b, "x"), "2\n")
	var f Files
	defer f.Close()

	f.Begin()
	for _, d := range []string{a, b} {
		if _, err := f.Read(d, "x"); err != nil {
			t.Fatal(err)
		}
	}
	f.End()
	if f.Len() != 2 {
		t.Fatalf("%d files kept after reading two; want 2", f.Len())
	}
	write(t, filepath.Join(a, "x"), "10\n") // same inode: os.WriteFile truncates
	if got, err := f.ReadPath(filepath.Join(a, "x")); err != nil || string(got) != "10\n" {
		t.Errorf("re-read of a kept file = %q, %v; want 10", got, err)
	}

	f.Begin()
	if _, err := f.Read(a, "x"); err != nil {
		t.Fatal(err)
	}
	f.End()
	if f.Len() != 1 {
		t.Errorf("%d files kept after a round that read only a's; want 1", f.Len())
	}
	f.Forget(a)
	if f.Len() != 0 {
		t.Errorf("%d files kept after Forget(a); want 0", f.Len())
	}

	_, err := f.Read(dir, "missing")
	var pe *fs.PathError
	if !errors.As(err, &pe) || pe.Op != "open" || !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("reading a missing file: %v, want an open *fs.PathError that is not-exist", err)
	}

	g := Files{Max: 1}
	defer g.Close()
	for _, d := range []string{a, b} {
		if _, err := g.Read(d, "x"); err != nil {
			t.Fatal(err)
		}
	}
	if g.Len() != 1 {
		t.Errorf("Max 1 kept %d files", g.Len())
	}
	h := Files{Keep: func(int) bool { return false }}
	if got, err := h.Read(b, "x"); err != nil || string(got) != "2\n" || h.Len() != 0 {
		t.Errorf("Keep false: read %q, %v, kept %d; want 2 and nothing kept", got, err, h.Len())
	}
	if OnCgroupFS(-1) {
		t.Error("OnCgroupFS of a bad descriptor is true")
	}
}

// MaxSize bounds what one read returns.
func TestMaxSize(t *testing.T) {
	p := filepath.Join(t.TempDir(), "big")
	write(t, p, string(make([]byte, 5000)))
	f := Files{MaxSize: 2048}
	defer f.Close()
	got, err := f.ReadPath(p)
	if err != nil || len(got) != 2048 {
		t.Errorf("read %d bytes, %v; want 2048", len(got), err)
	}
	var all Files
	defer all.Close()
	if got, err := all.ReadPath(p); err != nil || len(got) != 5000 {
		t.Errorf("unbounded read %d bytes, %v; want 5000", len(got), err)
	}
}

// A read stops at the first short read: files of exactly the buffer's
// size, larger ones, and a kernel-rendered file come back whole.
func TestReadWhole(t *testing.T) {
	dir := t.TempDir()
	var f Files
	defer f.Close()
	for _, size := range []int{0, 1, 1023, 1024, 1025, 2048, 5000} {
		p := filepath.Join(dir, fmt.Sprint(size))
		want := strings.Repeat("x", size)
		write(t, p, want)
		if got, err := f.ReadPath(p); err != nil || string(got) != want {
			t.Errorf("%d bytes: read %d, %v", size, len(got), err)
		}
	}
	want, err := os.ReadFile("/proc/self/limits") // ~1.3 KB, larger than the first buffer
	if err != nil {
		t.Skip(err)
	}
	if got, err := f.ReadPath("/proc/self/limits"); err != nil || string(got) != string(want) {
		t.Errorf("/proc/self/limits: read %q, %v; want %q", got, err, want)
	}
}
