package cgroupfs

import (
	"errors"
	"strings"
	"testing"
)

// FuzzParseContainerID feeds arbitrary container IDs, as a pod's status
// could carry them, to ParseContainerID. An accepted ID is a safe path
// element (no '/', '.', NUL or space, at most 128 bytes) and, with its
// scheme, spells the input back; a rejected one wraps ErrInvalid and quotes
// the input.
func FuzzParseContainerID(f *testing.F) {
	for _, s := range []string{
		"containerd://0123abcd", "cri-o://deadbeef", "docker://x", "abc", "", "containerd://",
		"containerd://../../etc", "containerd://a/b", "://x", "a://b://c", "containerd://" + strings.Repeat("a", 129),
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		rt, id, err := ParseContainerID(s)
		if err != nil {
			if !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), "container ID") {
				t.Fatalf("rejection of %q: %v", s, err)
			}
			return
		}
		if id == "" || len(id) > 128 || strings.ContainsAny(id, "/.\x00 \n") || id == ".." {
			t.Fatalf("accepted %q with an unsafe ID %q", s, id)
		}
		back := id
		if rt != "" || strings.Contains(s, "://") {
			back = string(rt) + "://" + id
		}
		if back != s {
			t.Fatalf("%q parsed as runtime %q, ID %q, which spells %q", s, rt, id, back)
		}
	})
}
