package nodeagent

import (
	"os"
	"strconv"
	"strings"
	"testing"
)

func rssFileBytes(t *testing.T) int64 {
	t.Helper()
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		t.Fatal(err)
	}
	for line := range strings.Lines(string(b)) {
		if v, ok := strings.CutPrefix(line, "RssFile:"); ok {
			n, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			if err != nil {
				t.Fatal(err)
			}
			return n << 10
		}
	}
	t.Skip("no RssFile in /proc/self/status")
	return 0
}

// TestReleaseStartupPages runs on this test binary: the resident pages of
// its code and read-only data are released, and the code still runs.
func TestReleaseStartupPages(t *testing.T) {
	before := rssFileBytes(t)
	released, err := releaseStartupPages()
	if err != nil {
		t.Fatal(err)
	}
	after := rssFileBytes(t)
	if released <= 0 {
		t.Fatalf("released %d bytes; want the binary's resident code pages", released)
	}
	if after >= before {
		t.Errorf("RssFile %d kB before, %d kB after releasing %d kB; want it lower", before>>10, after>>10, released>>10)
	}
	// Everything still works: code and read-only data fault back in.
	if got := strconv.Itoa(12345) + strings.ToUpper("ok"); got != "12345OK" {
		t.Errorf("after the release: %q", got)
	}
	t.Logf("RssFile %d kB -> %d kB (released %d kB)", before>>10, after>>10, released>>10)
}

func TestParseMapsLine(t *testing.T) {
	for _, c := range []struct {
		line string
		ok   bool
	}{
		{"00400000-01ed1000 r-xp 00000000 fe:00 42   /usr/bin/infera-agent", true},
		{"01ed1000-0400a000 r--p 01ad1000 fe:00 42   /usr/bin/infera-agent", true},
		{"0400a000-040cb000 rw-p 03c0a000 fe:00 42   /usr/bin/infera-agent", false}, // writable data
		{"7f00-7f10 r-xs 00000000 fe:00 42   /usr/bin/infera-agent", false},         // shared
		{"7f00-7f10 r-xp 00000000 fe:00 43   /usr/lib/libc.so.6", false},            // another file
		{"Rss:                 128 kB", false},
	} {
		m, ok := parseMapsLine([]byte(c.line), 42)
		if ok != c.ok {
			t.Errorf("parseMapsLine(%q) ok = %v, want %v", c.line, ok, c.ok)
		}
		if ok && m.end <= m.start {
			t.Errorf("parseMapsLine(%q) = %+v", c.line, m)
		}
	}
}
