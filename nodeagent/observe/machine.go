package observe

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"github.com/infera-io/temper/nodeagent/cpuset"
)

// ReadMachine reads the CPU shape under sysRoot (/sys): online CPUs, SMT
// siblings, last-level caches and NUMA nodes. Only the online CPU list is
// required; without topology files each CPU is its own core, and missing
// cache or NUMA files leave those lists empty.
func ReadMachine(sysRoot string) (Machine, error) {
	cpuRoot := filepath.Join(sysRoot, "devices", "system", "cpu")
	online, cores, err := ReadCores(cpuRoot)
	if err != nil {
		return Machine{}, err
	}
	cpus := online.Sorted()
	m := Machine{CPUs: online.String(), CPUCount: len(cpus), SMTSiblings: cores, LLCs: []CPUGroup{}, NUMANodes: []CPUGroup{}}
	llcs := map[string]CPUGroup{}
	for _, c := range cpus {
		if g, ok := lastLevelCache(filepath.Join(cpuRoot, "cpu"+strconv.Itoa(c)), online); ok {
			llcs[g.CPUs] = g
		}
	}
	for _, g := range llcs {
		m.LLCs = append(m.LLCs, g)
	}
	slices.SortFunc(m.LLCs, func(a, b CPUGroup) int { return a.ID - b.ID })
	nodes, _ := filepath.Glob(filepath.Join(sysRoot, "devices", "system", "node", "node[0-9]*"))
	for _, n := range nodes {
		id, err := strconv.Atoi(strings.TrimPrefix(filepath.Base(n), "node"))
		if err != nil {
			continue
		}
		s, err := readList(filepath.Join(n, "cpulist"))
		if err != nil || len(s) == 0 {
			continue
		}
		m.NUMANodes = append(m.NUMANodes, CPUGroup{ID: id, CPUs: s.String()})
	}
	slices.SortFunc(m.NUMANodes, func(a, b CPUGroup) int { return a.ID - b.ID })
	return m, nil
}

// ReadCores reads the online CPUs under cpuRoot (/sys/devices/system/cpu)
// and groups them by physical core (SMT siblings), each group ascending,
// groups ordered by their first CPU. Without topology files each CPU is its
// own core. It is the one reader of the CPU topology: the agent sizes
// fences from it, the observation layer reports it.
func ReadCores(cpuRoot string) (online cpuset.Set, cores [][]int, err error) {
	online, err = readList(filepath.Join(cpuRoot, "online"))
	if err != nil {
		return nil, nil, fmt.Errorf("failed to read the machine shape: %w", err)
	}
	cores = [][]int{}
	seen := cpuset.Set{}
	for _, c := range online.Sorted() {
		if seen[c] {
			continue
		}
		core := cpuset.Set{c: true}
		if s, err := readList(filepath.Join(cpuRoot, "cpu"+strconv.Itoa(c), "topology", "thread_siblings_list")); err == nil && s[c] {
			core = intersect(s, online)
		}
		for x := range core {
			seen[x] = true
		}
		cores = append(cores, core.Sorted())
	}
	return online, cores, nil
}

// lastLevelCache returns the highest-level data or unified cache of one
// CPU. Its id is the cache's id file, or its lowest CPU when there is none.
func lastLevelCache(cpuDir string, online cpuset.Set) (CPUGroup, bool) {
	idx, _ := filepath.Glob(filepath.Join(cpuDir, "cache", "index[0-9]*"))
	best, level := CPUGroup{}, -1
	for _, d := range idx {
		typ, _ := os.ReadFile(filepath.Join(d, "type"))
		if t := strings.TrimSpace(string(typ)); t != "Unified" && t != "Data" {
			continue
		}
		lv, err := readInt(filepath.Join(d, "level"))
		if err != nil || lv <= level {
			continue
		}
		s, err := readList(filepath.Join(d, "shared_cpu_list"))
		if err != nil || len(s) == 0 {
			continue
		}
		s = intersect(s, online)
		id, err := readInt(filepath.Join(d, "id"))
		if err != nil {
			id = s.Sorted()[0]
		}
		best, level = CPUGroup{ID: id, CPUs: s.String()}, lv
	}
	return best, level >= 0
}

func intersect(a, b cpuset.Set) cpuset.Set {
	out := cpuset.Set{}
	for c := range a {
		if b[c] {
			out[c] = true
		}
	}
	return out
}

func readList(p string) (cpuset.Set, error) {
	b, err := os.ReadFile(p)
	if err != nil {
		return nil, err
	}
	s, err := cpuset.Parse(string(b))
	if err != nil {
		return nil, fmt.Errorf("failed to parse %s: %w", p, err)
	}
	return s, nil
}

func readInt(p string) (int, error) {
	b, err := os.ReadFile(p)
	if err != nil {
		return 0, err
	}
	return strconv.Atoi(strings.TrimSpace(string(b)))
}
