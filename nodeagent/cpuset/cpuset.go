package cpuset

import (
	"fmt"
	"slices"
	"strconv"
	"strings"
)

// Set is a set of CPU numbers.
type Set map[int]bool

// Parse parses a kernel CPU list ("0-2,5").
func Parse(s string) (Set, error) {
	set := Set{}
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
func (c Set) String() string {
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

// Minus returns the CPUs of c that are not in o.
func (c Set) Minus(o Set) Set {
	out := Set{}
	for n := range c {
		if !o[n] {
			out[n] = true
		}
	}
	return out
}

// Union returns the CPUs in c or o.
func (c Set) Union(o Set) Set {
	out := Set{}
	for n := range c {
		out[n] = true
	}
	for n := range o {
		out[n] = true
	}
	return out
}

// SubsetOf reports whether every CPU of c is in o.
func (c Set) SubsetOf(o Set) bool {
	for n := range c {
		if !o[n] {
			return false
		}
	}
	return true
}

// Sorted returns the CPUs in ascending order.
func (c Set) Sorted() []int {
	out := make([]int, 0, len(c))
	for n := range c {
		out = append(out, n)
	}
	slices.Sort(out)
	return out
}
