package nodeagent

import (
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/infera-io/temper/nodeagent/cpuset"
)

// Machine is the CPU shape of the node as the kernel reports it.
type Machine struct {
	// CPUs are the online logical CPU ids, ascending.
	CPUs []int
	// Cores groups the online CPUs by physical core (SMT siblings share a
	// core), each group ascending, groups ordered by their first CPU.
	Cores [][]int
}

// ReadMachine reads the online CPUs and their SMT siblings under root
// (/sys/devices/system/cpu). On error it returns what it has, with one core
// per CPU.
func ReadMachine(root string) (Machine, error) {
	var m Machine
	b, err := os.ReadFile(filepath.Join(root, "online"))
	if err != nil {
		return m, fmt.Errorf("failed to read online CPUs: %w", err)
	}
	cpus, err := ParseCPUList(strings.TrimSpace(string(b)))
	if err != nil {
		return m, fmt.Errorf("failed to parse online CPUs: %w", err)
	}
	m.CPUs = cpus
	seen := map[int]bool{}
	for _, c := range cpus {
		if seen[c] {
			continue
		}
		sib := []int{c}
		if b, err := os.ReadFile(filepath.Join(root, fmt.Sprintf("cpu%d", c), "topology", "thread_siblings_list")); err == nil {
			if s, err := ParseCPUList(strings.TrimSpace(string(b))); err == nil && len(s) > 0 {
				sib = s
			}
		}
		for _, s := range sib {
			seen[s] = true
		}
		m.Cores = append(m.Cores, sib)
	}
	sort.Slice(m.Cores, func(i, j int) bool { return m.Cores[i][0] < m.Cores[j][0] })
	return m, nil
}

// ParseCPUList parses the kernel's CPU list format ("0-3,8,10-11") into
// ascending CPU ids.
func ParseCPUList(s string) ([]int, error) {
	set, err := cpuset.Parse(s)
	if err != nil {
		return nil, err
	}
	return set.Sorted(), nil
}
