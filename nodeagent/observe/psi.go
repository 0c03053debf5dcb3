package observe

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// ReadPSI reads the node's CPU pressure from procRoot/pressure/cpu. When
// the file is missing (a kernel without CONFIG_PSI, or booted without
// psi=1 where it defaults off) or unreadable, PSI is not available and
// Reason says why.
func ReadPSI(procRoot string) PSI {
	return ReadPSIFile(filepath.Join(procRoot, "pressure", "cpu"))
}

// ReadPSIFile reads one pressure file: the node's (/proc/pressure/cpu) or
// a cgroup v2 cgroup's cpu.pressure, which share the format.
func ReadPSIFile(p string) PSI { return ReadPSIWith(os.ReadFile, p) }

// ReadPSIWith reads the pressure file p with read (a keptfile.Files'
// ReadPath, where the file is read again and again).
func ReadPSIWith(read func(string) ([]byte, error), p string) PSI {
	b, err := read(p)
	switch {
	case errors.Is(err, os.ErrNotExist):
		return PSI{Reason: fmt.Sprintf("%s does not exist: the kernel has no PSI (CONFIG_PSI off, or psi=0 on its command line)", p)}
	case err != nil:
		// EOPNOTSUPP when PSI is compiled in but disabled at boot.
		return PSI{Reason: fmt.Sprintf("failed to read %s: %v", p, err)}
	}
	return ParsePSI(p, b)
}

// ParsePSI reads the content b of the pressure file p (p only names it in
// Reason).
func ParsePSI(p string, b []byte) PSI {
	out := PSI{Available: true}
	for _, line := range strings.Split(string(b), "\n") {
		kind, rest, ok := strings.Cut(strings.TrimSpace(line), " ")
		if !ok {
			continue
		}
		r, err := parsePSIRecord(rest)
		if err != nil {
			return PSI{Reason: fmt.Sprintf("failed to parse %s: %v", p, err)}
		}
		switch kind {
		case "some":
			out.Some = &r
		case "full":
			out.Full = &r
		}
	}
	if out.Some == nil {
		return PSI{Reason: fmt.Sprintf("failed to parse %s: no \"some\" line", p)}
	}
	return out
}

func parsePSIRecord(s string) (PSIRecord, error) {
	var r PSIRecord
	for _, kv := range strings.Fields(s) {
		k, v, ok := strings.Cut(kv, "=")
		if !ok {
			return r, fmt.Errorf("field %q is not key=value", kv)
		}
		var err error
		switch k {
		case "avg10":
			r.Avg10, err = parsePercent(v)
		case "avg60":
			r.Avg60, err = parsePercent(v)
		case "avg300":
			r.Avg300, err = parsePercent(v)
		case "total":
			r.TotalUS, err = strconv.ParseUint(v, 10, 64)
		}
		if err != nil {
			return r, fmt.Errorf("field %s: %w", k, err)
		}
	}
	return r, nil
}

// parsePercent reads a PSI average: a share of time in [0, 100]. NaN and
// infinities are refused (they would also make /observe unencodable).
func parsePercent(v string) (float64, error) {
	f, err := strconv.ParseFloat(v, 64)
	if err != nil {
		return 0, err
	}
	if !(f >= 0 && f <= 100) {
		return 0, fmt.Errorf("%q is not a percentage in [0, 100]", v)
	}
	return f, nil
}
