package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

const lock = `{"lockfileVersion": 3, "packages": {
  "": {"dependencies": {"preact": "11.2.0"}},
  "node_modules/preact": {"version": "11.2.0", "integrity": "sha512-/HfHI/7N84e6GrWBJ3J280z3mLaRJiDcSvj/A+y/4AbLnND/1UlGHe1sR6oYuTGwId0nP7dqDU9OnLxMPZ7xBg==", "license": "MIT"}}}`

func TestReadLock(t *testing.T) {
	pkgs, err := readLock([]byte(lock))
	if err != nil {
		t.Fatal(err)
	}
	if len(pkgs) != 1 || pkgs[0].tarballName() != "preact-11.2.0.tgz" {
		t.Fatalf("readLock = %+v, want preact 11.2.0", pkgs)
	}
	bad := map[string]string{
		"range":    strings.Replace(lock, `"preact": "11.2.0"}}`, `"preact": "^11.2.0"}}`, 1),
		"unlocked": strings.Replace(lock, `"node_modules/preact"`, `"node_modules/other"`, 1),
		"sha1":     strings.Replace(lock, `sha512-`, `sha1-`, 1),
		"v2":       strings.Replace(lock, `"lockfileVersion": 3`, `"lockfileVersion": 2`, 1),
	}
	for name, l := range bad {
		if _, err := readLock([]byte(l)); err == nil {
			t.Errorf("%s: readLock accepted %s", name, l)
		}
	}
}

// TestVerify: the committed tarball matches the committed lockfile, and a
// single changed byte is caught.
func TestVerify(t *testing.T) {
	web := filepath.Join("..", "..", "..", "gateway", "dashboard", "web")
	l, err := os.ReadFile(filepath.Join(web, "package-lock.json"))
	if err != nil {
		t.Fatal(err)
	}
	pkgs, err := readLock(l)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range pkgs {
		tgz, err := os.ReadFile(filepath.Join(web, "npm", p.tarballName()))
		if err != nil {
			t.Fatal(err)
		}
		if err := verify(p, tgz); err != nil {
			t.Errorf("committed tarball: %v", err)
		}
		tgz[len(tgz)/2] ^= 1
		if err := verify(p, tgz); err == nil || !strings.Contains(err.Error(), p.tarballName()) {
			t.Errorf("a tampered %s: verify = %v, want an error naming it", p.tarballName(), err)
		}
	}
}
