// Package sharedtest finds the steering repository's shared directory
// (../shared next to the repository root) for the few tests that compare
// the repository's own copies with it. The repository's tests never need
// it: a plain clone has no ../shared, so those comparisons skip, saying so,
// and everything else runs on the fixtures under testdata/. Test support
// only.
package sharedtest

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"
)

const moduleLine = "module github.com/infera-io/temper"

// Dir returns the absolute path of ../shared relative to the repository
// root, found by walking up from the working directory to the go.mod of
// github.com/infera-io/temper.
func Dir(t testing.TB) string {
	t.Helper()
	wd, err := os.Getwd()
	if err != nil {
		t.Fatalf("failed to get the working directory: %v", err)
	}
	for dir := wd; ; dir = filepath.Dir(dir) {
		b, err := os.ReadFile(filepath.Join(dir, "go.mod"))
		if err == nil && isTemperModule(b) {
			shared := filepath.Join(filepath.Dir(dir), "shared")
			if st, err := os.Stat(shared); err != nil || !st.IsDir() {
				t.Skipf("skipped: %s is not beside this clone, so there is no outside copy to compare with (the repository's own fixtures are tested elsewhere)", shared)
			}
			return shared
		}
		if filepath.Dir(dir) == dir {
			t.Fatalf("no go.mod with %q above %s", moduleLine, wd)
		}
	}
}

// Path returns Dir joined with elem. It skips the test when ../shared is
// absent and fails it when ../shared is there but lacks the file.
func Path(t testing.TB, elem ...string) string {
	t.Helper()
	p := filepath.Join(append([]string{Dir(t)}, elem...)...)
	if _, err := os.Stat(p); err != nil {
		t.Fatalf("missing shared file: %v", err)
	}
	return p
}

func isTemperModule(gomod []byte) bool {
	for _, line := range bytes.Split(gomod, []byte("\n")) {
		if string(bytes.TrimSpace(line)) == moduleLine {
			return true
		}
	}
	return false
}
