package observe

import (
	"time"

	"github.com/infera-io/temper/nodeagent/lint"
)

// SchemaVersion is the version of the Snapshot schema. It changes only when
// a field changes meaning or is removed, which the stability promise of
// docs/observe.md rules out within a version; added fields do not change it.
const SchemaVersion = 1

// Snapshot is the body of GET /observe.
type Snapshot struct {
	SchemaVersion int    `json:"schema_version"`
	Node          string `json:"node"`
	// Time is when the snapshot was built.
	Time        time.Time   `json:"time"`
	Machine     Machine     `json:"machine"`
	Enforcement Enforcement `json:"enforcement"`
	Layers      []Layer     `json:"layers"`
	// ReserveCPUs are the CPUs Open-layer work must leave free, as a
	// kernel CPU list; empty when none is promised.
	ReserveCPUs string         `json:"reserve_cpus"`
	TopThreads  []Thread       `json:"top_threads"`
	CPUs        []CPU          `json:"cpus"`
	PSI         PSI            `json:"psi"`
	Lint        []lint.Verdict `json:"lint"`
	Sample      SampleInfo     `json:"sample"`
	Overhead    Overhead       `json:"overhead"`
}

// Machine is the node's CPU shape as sysfs reports it.
type Machine struct {
	// CPUs are the online CPUs, as a kernel CPU list.
	CPUs     string `json:"cpus"`
	CPUCount int    `json:"cpu_count"`
	// SMTSiblings groups the online CPUs by physical core.
	SMTSiblings [][]int `json:"smt_siblings"`
	// LLCs are the last-level caches and the CPUs sharing each.
	LLCs []CPUGroup `json:"llcs"`
	// NUMANodes are the NUMA nodes with CPUs.
	NUMANodes []CPUGroup `json:"numa_nodes"`
}

// CPUGroup is a set of CPUs sharing something.
type CPUGroup struct {
	ID   int    `json:"id"`
	CPUs string `json:"cpus"`
}

// Enforcement summarises what enforces the tiers.
type Enforcement struct {
	// Backend is the backend as tier-load names it: "scx_layered",
	// "cgroup" or "observe-only".
	Backend string `json:"backend"`
	// Status is the agent status (the infera.io/agent-status value).
	Status string `json:"status"`
	// Suppression is the cgroup backend's dynamic CPU suppression; nil
	// when that lever is off or another backend enforces.
	Suppression *Suppression `json:"suppression,omitempty"`
}

// Suppression is what low and background pods are held to so that a
// critical wake-up finds an idle CPU.
type Suppression struct {
	Active bool `json:"active"`
	// BudgetMilliCPU is the CPU the held pods may use together.
	BudgetMilliCPU int64 `json:"budget_milli_cpu"`
	// ProtectedMilliCPU is what critical and high pods used in the last
	// second.
	ProtectedMilliCPU int64 `json:"protected_milli_cpu"`
	Pods              int   `json:"pods"`
}

// Layer is one layer of the promise with what was observed of it.
type Layer struct {
	Name  string   `json:"name"`
	Kind  string   `json:"kind"`
	Tiers []string `json:"tiers"`
	// CPUs are the CPUs the layer's threads may use, as a kernel CPU list.
	CPUs string `json:"cpus"`
	// Util is the layer's threads' CPU use as a fraction of its CPUs.
	Util float64 `json:"util"`
	// MilliCPU is that use in ms per second.
	MilliCPU float64 `json:"milli_cpu"`
	Pods     int     `json:"pods"`
	// Threads counts the layer's threads that ran in the last sample.
	Threads int `json:"threads"`
}

// Thread is one of the busiest threads.
type Thread struct {
	TID      int     `json:"tid"`
	PID      int     `json:"pid"`
	Comm     string  `json:"comm"`
	Pod      string  `json:"pod"`
	Tier     string  `json:"tier"`
	Layer    string  `json:"layer"`
	CPU      int     `json:"cpu"`
	MilliCPU float64 `json:"milli_cpu"`
}

// CPU is the observed use of one CPU by sampled pod threads.
type CPU struct {
	CPU      int     `json:"cpu"`
	MilliCPU float64 `json:"milli_cpu"`
}

// PSI is the node's CPU pressure (/proc/pressure/cpu).
type PSI struct {
	Available bool `json:"available"`
	// Reason says why PSI is not available.
	Reason string     `json:"reason,omitempty"`
	Some   *PSIRecord `json:"some,omitempty"`
	Full   *PSIRecord `json:"full,omitempty"`
}

// PSIRecord is one line of a pressure file.
type PSIRecord struct {
	Avg10   float64 `json:"avg10"`
	Avg60   float64 `json:"avg60"`
	Avg300  float64 `json:"avg300"`
	TotalUS uint64  `json:"total_us"`
}

// SampleInfo describes the thread sample the snapshot is built from.
type SampleInfo struct {
	// Time is when the sample was taken (zero before the first).
	Time            time.Time `json:"time"`
	IntervalSeconds float64   `json:"interval_seconds"`
	Pods            int       `json:"pods"`
	Processes       int       `json:"processes"`
	ProcessesIdle   int       `json:"processes_idle"`
	ThreadsRead     int       `json:"threads_read"`
	ThreadsBusy     int       `json:"threads_busy"`
	Capped          []Cap     `json:"capped"`
	Vanished        int       `json:"vanished"`
	Errors          int       `json:"errors"`
	FirstError      string    `json:"first_error,omitempty"`
}

// Cap is a pod whose threads were not all read.
type Cap struct {
	Pod     string `json:"pod"`
	Threads int    `json:"threads"`
	Read    int    `json:"read"`
	Idle    int    `json:"idle"`
	NodeCap bool   `json:"node_cap"`
}

// Overhead is what the observation layer costs, measured.
type Overhead struct {
	// Ticks counts samples taken.
	Ticks uint64 `json:"ticks"`
	// CPUSeconds is the CPU time spent sampling, linting and building
	// snapshots, measured with the thread CPU clock.
	CPUSeconds float64 `json:"cpu_seconds"`
	// ObservedSeconds is the time since the observer started;
	// CoreFraction = CPUSeconds / ObservedSeconds.
	ObservedSeconds float64 `json:"observed_seconds"`
	CoreFraction    float64 `json:"core_fraction"`
	// LastTickSeconds and MaxTickSeconds are wall times of one tick.
	LastTickSeconds    float64 `json:"last_tick_seconds"`
	MaxTickSeconds     float64 `json:"max_tick_seconds"`
	LastTickCPUSeconds float64 `json:"last_tick_cpu_seconds"`
	// AgentCPUSeconds and AgentRSSBytes are the whole agent's, from
	// /proc/self/stat.
	AgentCPUSeconds float64 `json:"agent_cpu_seconds"`
	AgentRSSBytes   int64   `json:"agent_rss_bytes"`
}
