package layered

import (
	"errors"
	"fmt"
	"time"

	"github.com/infera-io/temper/apis/wellknown"
)

// Node is the CPU shape of the node.
type Node struct {
	// CPUs is the number of online logical CPUs. scx_layered needs their
	// ids to be 0..CPUs-1 and supports at most 512.
	CPUs int
	// Cores lists the logical CPU ids of each physical core (the SMT
	// siblings of /sys/devices/system/cpu/cpuN/topology/thread_siblings_list).
	// Nil means no SMT: every CPU is a core. When set, every CPU id
	// 0..CPUs-1 must appear in exactly one core.
	Cores [][]int
}

// MaxCPUs is scx_layered's MAX_CPUS.
const MaxCPUs = 512

// shape is what the generator needs from a Node.
type shape struct {
	cpus, cores int
	// perCore is scx_layered's allocation unit: it owns CPUs in whole
	// cores (unless run with --allow-partial-core), and takes the size of
	// the core holding the lowest CPU id as the unit.
	perCore int
}

func (n Node) shape() (shape, error) {
	if n.CPUs < 1 || n.CPUs > MaxCPUs {
		return shape{}, fmt.Errorf("node has %d CPUs; want 1 to %d", n.CPUs, MaxCPUs)
	}
	if len(n.Cores) == 0 {
		return shape{cpus: n.CPUs, cores: n.CPUs, perCore: 1}, nil
	}
	seen := make([]bool, n.CPUs)
	unit, lowest := 0, n.CPUs
	for i, core := range n.Cores {
		if len(core) == 0 {
			return shape{}, fmt.Errorf("core %d has no CPUs", i)
		}
		for _, c := range core {
			if c < 0 || c >= n.CPUs {
				return shape{}, fmt.Errorf("core %d lists CPU %d, outside 0..%d", i, c, n.CPUs-1)
			}
			if seen[c] {
				return shape{}, fmt.Errorf("CPU %d is in more than one core", c)
			}
			seen[c] = true
			if c < lowest {
				lowest, unit = c, len(core)
			}
		}
	}
	for c, ok := range seen {
		if !ok {
			return shape{}, fmt.Errorf("CPU %d is in no core", c)
		}
	}
	return shape{cpus: n.CPUs, cores: len(n.Cores), perCore: unit}, nil
}

// Pod is one pod of the node as the generator needs it.
type Pod struct {
	// Name identifies the pod in the result, e.g. "namespace/name".
	Name string
	// Tier is the pod's tier (apis/tiering.Classify).
	Tier wellknown.Tier
	// CgroupPath is the pod's cgroup relative to the cgroup v2 root, as
	// scx_layered sees it (nodeagent/cgroup's Pod.RelPath), e.g.
	// "kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod<uid>.slice".
	// Leading and trailing slashes are ignored.
	CgroupPath string
	// RequestMilli and LimitMilli are the pod's CPU request and limit
	// (apis/tiering.PodCPU); a limit of 0 means unlimited.
	RequestMilli, LimitMilli int64
}

// Options tune the generated layers. Start from DefaultOptions.
type Options struct {
	// Slices is the time slice of each tier's layer. A tier missing from
	// the map uses DefaultSlices; the system tier's default is
	// scx_layered's own (--slice-us, 20 ms).
	Slices map[wellknown.Tier]time.Duration
	// SystemCores is how many whole cores the system layer always owns,
	// so agent and scheduler threads run even when the node is saturated.
	SystemCores int
	// MinSharedCores is how many whole cores must stay outside the
	// critical fence and the system layer for every other tier. Critical
	// is demoted when fencing it would leave fewer.
	MinSharedCores int
	// ExclusiveCores sets scx_layered's `exclusive` on the critical layer:
	// a running critical thread keeps its SMT sibling idle. Each requested
	// CPU then needs a whole physical core, so on an SMT node the fence is
	// sized in cores = ceil(request / 1000m) instead of
	// ceil(request / (1000m × threads per core)). No difference without SMT.
	ExclusiveCores bool
	// SystemComms are thread-group leader names (PcommPrefix, at most 15
	// bytes) that always join the system layer, for the agent and
	// scx_layered when they do not run in a system-tier pod.
	SystemComms []string
}

// DefaultSlices are the time slices of DESIGN.md §2.
func DefaultSlices() map[wellknown.Tier]time.Duration {
	return map[wellknown.Tier]time.Duration{
		wellknown.TierCritical:   5 * time.Millisecond,
		wellknown.TierHigh:       10 * time.Millisecond,
		wellknown.TierNormal:     20 * time.Millisecond,
		wellknown.TierLow:        30 * time.Millisecond,
		wellknown.TierBackground: 5 * time.Millisecond,
	}
}

// DefaultOptions returns the options the agent runs with.
func DefaultOptions() Options {
	return Options{
		Slices:         DefaultSlices(),
		SystemCores:    1,
		MinSharedCores: 1,
		ExclusiveCores: true,
		SystemComms:    []string{"infera-agent", "scx_layered"},
	}
}

// Slice bounds: scx_layered takes any u64, but a slice under 100 µs is
// mostly scheduling overhead and one over a second starves interactive work.
const (
	minSlice = 100 * time.Microsecond
	maxSlice = time.Second
)

func (o Options) validate() error {
	for t, d := range o.Slices {
		if !t.Valid() {
			return fmt.Errorf("slice for unknown tier %q", t)
		}
		if d < minSlice || d > maxSlice {
			return fmt.Errorf("slice of tier %s: %s is out of range [%s, %s]", t, d, minSlice, maxSlice)
		}
	}
	if o.SystemCores < 0 || o.MinSharedCores < 0 {
		return fmt.Errorf("system cores (%d) and minimum shared cores (%d) must not be negative", o.SystemCores, o.MinSharedCores)
	}
	for _, c := range o.SystemComms {
		if c == "" || len(c) > 15 || !printableASCII(c) {
			return fmt.Errorf("system comm %q: want 1 to 15 printable ASCII bytes", c)
		}
	}
	return nil
}

func (o Options) slice(t wellknown.Tier) time.Duration {
	if d, ok := o.Slices[t]; ok {
		return d
	}
	return DefaultSlices()[t]
}

// Result is a generated config and what the agent reports about it.
type Result struct {
	// Config is the scx_layered config document (a JSON array of layers,
	// indented, newline-terminated), ready for `scx_layered f:<file>`.
	Config []byte
	// Layers summarises each layer, in config order.
	Layers []LayerSummary
	// FencedCPUs is the number of logical CPUs the critical layer owns
	// exclusively (0 when there is no critical layer or it was demoted),
	// and FencedMilli the same in millicores, for infera.io/tier-load.
	FencedCPUs  int
	FencedMilli int64
	// Demotion is set when critical pods exist but could not be fenced.
	Demotion *Demotion
	// Skipped lists pods that could not be matched; their tasks fall to
	// the catch-all layer. Sorted by name.
	Skipped []SkippedPod
}

// LayerKind is an scx_layered layer kind.
type LayerKind string

// The layer kinds.
const (
	KindConfined LayerKind = "Confined"
	KindGrouped  LayerKind = "Grouped"
	KindOpen     LayerKind = "Open"
)

// LayerSummary describes one generated layer.
type LayerSummary struct {
	// Name is the layer name, the key of scx_layered's per-layer stats.
	Name string `json:"name"`
	// Tier is the tier whose pods the layer holds; empty for the catch-all.
	Tier wellknown.Tier `json:"tier,omitempty"`
	Kind LayerKind      `json:"kind"`
	// Pods counts the known pods the layer matches; RequestMilli and
	// LimitMilli sum their CPU (limits of unlimited pods count as 0).
	Pods         int   `json:"pods"`
	RequestMilli int64 `json:"requestMilli"`
	LimitMilli   int64 `json:"limitMilli"`
	// Matches is the number of OR blocks (at most 32), and GroupPrefixes
	// the cgroup prefixes among them that match a whole QoS group of pods.
	Matches       int      `json:"matches"`
	GroupPrefixes []string `json:"groupPrefixes,omitempty"`
	// MinCPUs and MaxCPUs are the layer's cpus_range (both 0 when unset).
	MinCPUs int `json:"minCPUs,omitempty"`
	MaxCPUs int `json:"maxCPUs,omitempty"`
}

// DemotionCause says why critical was not fenced.
type DemotionCause string

// The causes of a demotion.
const (
	// DemotionCapacity: the node has too few cores for the fence plus the
	// system layer and the minimum shared pool.
	DemotionCapacity DemotionCause = "capacity"
	// DemotionNoRequests: the critical pods request no CPU, so there is
	// nothing to size a fence from.
	DemotionNoRequests DemotionCause = "no-requests"
	// DemotionTooManyPods: more critical pods than one layer can match
	// (32 OR blocks); a fence must be one layer.
	DemotionTooManyPods DemotionCause = "too-many-pods"
)

// Demotion reports that the critical tier runs as a Grouped layer.
type Demotion struct {
	Cause DemotionCause `json:"cause"`
	// WantCores is what the fence needed; FenceableCores what the node
	// could give it (cores minus the system and minimum shared cores).
	WantCores      int `json:"wantCores"`
	FenceableCores int `json:"fenceableCores"`
	// Reason is a sentence for agent-status and events.
	Reason string `json:"reason"`
}

// SkippedPod is a pod the generator could not place.
type SkippedPod struct {
	Name   string `json:"name"`
	Reason string `json:"reason"`
}

// ErrTooManyLayers is returned when the pods cannot be matched within
// scx_layered's 16 layers. That takes more than 290 explicitly matched pods;
// the agent keeps the previous config and reports degraded.
var ErrTooManyLayers = errors.New("too many layers for scx_layered")

func printableASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < 0x21 || s[i] > 0x7e {
			return false
		}
	}
	return true
}
