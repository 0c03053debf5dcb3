package cgroup

import (
	"fmt"
	"slices"
	"strconv"
	"strings"
)

// cpuSet is a set of CPU numbers.
type cpuSet map[int]bool

// parseCPUs parses a kernel CPU list ("0-2,5").
func parseCPUs(s string) (cpuSet, error) {
	set := cpuSet{}
	s = strings.TrimSpace(s)
	if s == "" {
		return set, nil
	}
	for _, part := range strings.Split(s, ",") {
		lo, hi, isRange := strings.Cut(strings.TrimSpace(part), "-")
		a, err := strconv.Atoi(lo)
		if err != nil || a < 0 {
			return nil, fmt.Errorf("failed to parse CPU list %q: bad CPU %q", s, lo)
		}
		b := a
		if isRange {
			if b, err = strconv.Atoi(hi); err != nil || b < a || b-a > 1<<16 {
				return nil, fmt.Errorf("failed to parse CPU list %q: bad range %q", s, part)
			}
		}
		for i := a; i <= b; i++ {
			set[i] = true
		}
	}
	return set, nil
}

// String formats the set as the kernel does ("0-2,5").
func (c cpuSet) String() string {
	cpus := make([]int, 0, len(c))
	for n := range c {
		cpus = append(cpus, n)
	}
	slices.Sort(cpus)
	var parts []string
	for i := 0; i < len(cpus); {
		j := i
		for j+1 < len(cpus) && cpus[j+1] == cpus[j]+1 {
			j++
		}
		if i == j {
			parts = append(parts, strconv.Itoa(cpus[i]))
		} else {
			parts = append(parts, strconv.Itoa(cpus[i])+"-"+strconv.Itoa(cpus[j]))
		}
		i = j + 1
	}
	return strings.Join(parts, ",")
}

func (c cpuSet) minus(o cpuSet) cpuSet {
	out := cpuSet{}
	for n := range c {
		if !o[n] {
			out[n] = true
		}
	}
	return out
}

func (c cpuSet) union(o cpuSet) cpuSet {
	out := cpuSet{}
	for n := range c {
		out[n] = true
	}
	for n := range o {
		out[n] = true
	}
	return out
}

func (c cpuSet) subsetOf(o cpuSet) bool {
	for n := range c {
		if !o[n] {
			return false
		}
	}
	return true
}
