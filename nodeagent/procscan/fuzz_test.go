package procscan

import (
	"errors"
	"strings"
	"testing"
)

// FuzzParseStat checks ParseStat two ways: a line built like the kernel's
// (statLine) from arbitrary values (a comm may hold spaces and parentheses) must give
// those values back, with the comm printable and at most maxComm bytes; and
// arbitrary bytes must never panic and be either parsed or ErrMalformed.
func FuzzParseStat(f *testing.F) {
	f.Add("bash", uint64(15), uint64(1), uint64(12345), uint64(1), []byte("1 (x) S"))
	f.Add("a) (b", uint64(1<<64-1), uint64(1<<40), uint64(0), uint64(1<<40), []byte(statLine(1, "q", 3, 3, 4, 5)))
	f.Add("\x00\xff tab\t", uint64(0), uint64(0), uint64(0), uint64(0), []byte("((()))"))
	f.Fuzz(func(t *testing.T, comm string, ticks, threads, start, cpu uint64, raw []byte) {
		if _, err := ParseStat(raw); err != nil && !errors.Is(err, ErrMalformed) {
			t.Fatalf("ParseStat(%q) = %v, not ErrMalformed", raw, err)
		}
		if strings.ContainsAny(comm, "\n") {
			return // the kernel's comm is a task name; it never holds a newline
		}
		st, err := ParseStat([]byte(statLine(4242, comm, ticks, threads, start, cpu)))
		if err != nil {
			t.Fatalf("a well-formed line with comm %q: %v", comm, err)
		}
		if st.ticks != ticks || st.start != start || st.threads != int(min(threads, 1<<31)) || st.cpu != int(min(cpu, 1<<31)) {
			t.Fatalf("comm %q: got %+v, want ticks %d start %d threads %d cpu %d", comm, st, ticks, start, threads, cpu)
		}
		if len(st.comm) > maxComm || strings.ContainsFunc(st.comm, func(r rune) bool { return r < 0x20 || r > 0x7e }) {
			t.Fatalf("comm %q came back as %q: not printable or too long", comm, st.comm)
		}
		if want := sanitize([]byte(comm)); st.comm != want {
			t.Fatalf("comm %q came back as %q, want %q", comm, st.comm, want)
		}
	})
}
