package writer

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// FuzzLoadState feeds arbitrary state files to loadState (what a crash, a
// full disk or another agent version leaves in the state directory): it
// never panics, never errors on content (only on I/O), adopts only
// originals of valid targets, and a file it does not adopt is moved aside.
func FuzzLoadState(f *testing.F) {
	f.Add([]byte(`{"version":2,"minReaderVersion":2,"bootID":"b1","written":"2026-01-01T00:00:00Z","originals":[{"path":"/sys/fs/cgroup/cpu/kubepods/pod1","file":"cpu.shares","value":"1024\n","recorded":"2026-01-01T00:00:00Z"}]}`))
	f.Add([]byte(`{"version":1,"bootID":"b1","originals":[]}`))
	f.Add([]byte(`{"version":3,"minReaderVersion":2,"bootID":"b1","originalsUnknown":true}`))
	f.Add([]byte(`{"version":9,"minReaderVersion":9,"bootID":"b1"}`))
	f.Add([]byte(`{"version":2,"bootID":"b2"}`))
	f.Add([]byte(`{"version":2,"bootID":"b1","originals":[{"path":"rel","file":"cpu.shares"}]}`))
	f.Add([]byte(`{`))
	f.Fuzz(func(t *testing.T, b []byte) {
		dir := t.TempDir()
		p := filepath.Join(dir, stateFileName)
		if err := os.WriteFile(p, b, 0o600); err != nil {
			t.Fatal(err)
		}
		m, rep, err := loadState(dir, "b1", time.Unix(0, 0))
		if err != nil {
			t.Fatalf("loadState error on content: %v", err)
		}
		if rep.SetAside != "" {
			if len(m) != 0 || rep.Adopted != 0 {
				t.Fatalf("set aside but adopted %d originals", len(m))
			}
			if _, err := os.Stat(p); !errors.Is(err, fs.ErrNotExist) {
				t.Fatalf("set aside but still in place: %v", err)
			}
			return
		}
		if rep.Adopted != len(m) {
			t.Fatalf("Adopted = %d, have %d", rep.Adopted, len(m))
		}
		for k := range m {
			if err := validTarget(k.path, k.file); err != nil {
				t.Fatalf("adopted an invalid target %s/%s: %v", k.path, k.file, err)
			}
		}
	})
}
