package nodeagent

import (
	"os"
	"testing"

	"github.com/go-logr/logr/testr"

	"github.com/infera-io/temper/test/testcerts"
)

// TestKeyPairReload: a rotated Secret (new files) is served from the next
// handshake; a broken rotation keeps the last good pair; no good pair at
// all is an error.
func TestKeyPairReload(t *testing.T) {
	dir := t.TempDir()
	first, err := testcerts.Write(dir, "a.example")
	if err != nil {
		t.Fatal(err)
	}
	kp := &keyPair{certFile: first.Cert, keyFile: first.Key, log: testr.New(t)}
	c1, err := kp.get(nil)
	if err != nil || len(c1.Certificate) == 0 {
		t.Fatalf("first load: %v", err)
	}
	if c, _ := kp.get(nil); c != c1 {
		t.Error("unchanged files were loaded again")
	}
	if _, err := testcerts.Write(dir, "b.example"); err != nil { // rotate in place
		t.Fatal(err)
	}
	c2, err := kp.get(nil)
	if err != nil || c2 == c1 {
		t.Fatalf("after rotation: same pair %v, err %v", c2 == c1, err)
	}
	if err := os.WriteFile(first.Key, []byte("garbage"), 0o600); err != nil {
		t.Fatal(err)
	}
	if c, err := kp.get(nil); err != nil || c != c2 {
		t.Errorf("a broken key replaced the good pair (err %v)", err)
	}
	empty := &keyPair{certFile: first.Cert, keyFile: first.Key, log: testr.New(t)}
	if _, err := empty.get(nil); err == nil {
		t.Error("a broken pair with nothing to fall back on loaded")
	}
}
