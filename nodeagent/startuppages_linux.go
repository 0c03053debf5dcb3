package nodeagent

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// releaseStartupPages unmaps the resident pages of the agent binary's
// read-only mappings (its code and read-only data): [release_startup_pages].
//
// Start-up runs the package initialisation of everything linked in (the
// Kubernetes client's API types, TLS, gRPC, Prometheus, ...) and the kernel
// maps the surrounding pages of the binary too (fault-around), so about
// 40 MiB of the binary stays mapped though steady state runs a small part
// of it. MADV_DONTNEED drops those mappings; the pages stay in the page
// cache and whatever the agent runs next maps back in on first use (a
// minor fault). Only private mappings that are not writable and hold no
// anonymous (copied-on-write) page are touched, so no byte of the
// process's state can be lost: what is dropped is the file's content.
//
// It returns the resident bytes released.
func releaseStartupPages() (int64, error) {
	var exe unix.Stat_t
	if err := unix.Stat("/proc/self/exe", &exe); err != nil {
		return 0, fmt.Errorf("failed to stat /proc/self/exe: %w", err)
	}
	f, err := os.Open("/proc/self/smaps")
	if err != nil {
		return 0, fmt.Errorf("failed to read /proc/self/smaps: %w", err)
	}
	defer f.Close()
	var ms []exeMapping
	var cur *exeMapping
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := sc.Bytes()
		if m, ok := parseMapsLine(line, exe.Ino); ok {
			ms = append(ms, m)
			cur = &ms[len(ms)-1]
			continue
		}
		if isMapsHeader(line) {
			cur = nil
			continue
		}
		if cur == nil {
			continue
		}
		if v, ok := bytes.CutPrefix(line, []byte("Rss:")); ok {
			cur.rss = kbField(v)
		} else if v, ok := bytes.CutPrefix(line, []byte("Anonymous:")); ok {
			cur.anon = kbField(v)
		}
	}
	if err := sc.Err(); err != nil {
		return 0, fmt.Errorf("failed to read /proc/self/smaps: %w", err)
	}
	var released int64
	for _, m := range ms {
		if m.anon != 0 || m.rss == 0 {
			continue // a copied page (a breakpoint, a relocation): keep it
		}
		if _, _, errno := unix.Syscall(unix.SYS_MADVISE, m.start, m.end-m.start, unix.MADV_DONTNEED); errno != 0 {
			return released, fmt.Errorf("failed to release %#x-%#x: %w", m.start, m.end, errno)
		}
		released += m.rss
	}
	return released, nil
}

// exeMapping is one read-only private mapping of the agent's binary.
type exeMapping struct {
	start, end uintptr
	rss, anon  int64 // bytes
}

// parseMapsLine parses a /proc/self/smaps header line ("start-end perms
// offset dev inode path"); ok when it maps the file with inode ino
// privately and without write permission.
func parseMapsLine(line []byte, ino uint64) (m exeMapping, ok bool) {
	f := strings.Fields(string(line))
	if len(f) < 6 || !isMapsHeader(line) {
		return m, false
	}
	perms := f[1]
	if len(perms) != 4 || perms[1] == 'w' || perms[3] != 'p' {
		return m, false
	}
	if n, err := strconv.ParseUint(f[4], 10, 64); err != nil || n != ino {
		return m, false
	}
	lo, hi, found := strings.Cut(f[0], "-")
	if !found {
		return m, false
	}
	s, err1 := strconv.ParseUint(lo, 16, 64)
	e, err2 := strconv.ParseUint(hi, 16, 64)
	if err1 != nil || err2 != nil || e <= s {
		return m, false
	}
	m.start, m.end = uintptr(s), uintptr(e)
	return m, true
}

// isMapsHeader: smaps header lines start with the address range; field
// lines with a name and a colon.
func isMapsHeader(line []byte) bool {
	i := bytes.IndexByte(line, ' ')
	return i > 0 && bytes.IndexByte(line[:i], '-') > 0 && bytes.IndexByte(line[:i], ':') < 0
}

func kbField(v []byte) int64 {
	n, _ := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(string(v)), " kB"), 10, 64)
	return n << 10
}
