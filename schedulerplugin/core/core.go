package core

import (
	"fmt"
	"math"
	"time"

	"github.com/infera-io/temper/apis/wellknown"
)

// Scores are on the scheduler framework's scale, 0 to MaxScore.
const (
	MaxScore int64 = 100
	// NoOpinion is what Score returns for a node it cannot judge (its
	// annotation is missing, stale or malformed). Normalize turns it into
	// the cycle's neutral score.
	NoOpinion int64 = -1
	// NeutralScore is the neutral score of a cycle in which no node could
	// be judged: every node gets it, so the plugin changes nothing.
	NeutralScore = MaxScore / 2
)

// milliPerCore is one whole core; the critical tier is fenced in these.
const milliPerCore = 1000

// Status is what a node's tier-load annotation is worth right now.
type Status int

const (
	// Missing: the node has no tier-load annotation.
	Missing Status = iota
	// Malformed: the annotation does not parse (wellknown.ParseTierLoad).
	Malformed
	// Stale: the annotation parses but is older than the maximum age (or
	// dated implausibly far in the future).
	Stale
	// Fresh: the annotation parses and is recent; only this status scores
	// anything but neutral or filters anything.
	Fresh
)

func (s Status) String() string {
	switch s {
	case Missing:
		return "missing"
	case Malformed:
		return "malformed"
	case Stale:
		return "stale"
	case Fresh:
		return "fresh"
	}
	return fmt.Sprintf("Status(%d)", int(s))
}

// Assess parses a node's annotation value (present is false when the node
// has no annotation) and checks its age at now. The error explains a
// malformed or stale value.
func Assess(value string, present bool, now time.Time, maxAge time.Duration) (wellknown.TierLoad, Status, error) {
	if !present {
		return wellknown.TierLoad{}, Missing, nil
	}
	load, err := wellknown.ParseTierLoad(value)
	if err != nil {
		return wellknown.TierLoad{}, Malformed, err
	}
	if err := load.CheckFresh(now, maxAge); err != nil {
		return load, Stale, err
	}
	return load, Fresh, nil
}

// Params are the plugin's settings that scoring needs.
type Params struct {
	// FenceReserveMilli is the CPU a node keeps outside the critical fence
	// for the system layer and the minimum shared pool.
	FenceReserveMilli int64
}

// Pod is what placement needs of a pod: its tier and CPU request.
type Pod struct {
	Tier         wellknown.Tier
	RequestMilli int64
}

// Node is a node with a parsed tier-load: the annotation's figures plus
// the pods bound since its timestamp. Build it with Summarize.
type Node struct {
	// AllocatableMilli is the node's allocatable CPU.
	AllocatableMilli int64
	// Protects is true when the node's agent enforces the tiers (the
	// scx_layered or cgroup backend). An observe-only node, or one whose
	// agent stood down, protects nothing.
	Protects bool
	// Demoted is true when the agent reports critical pods but fences
	// fewer cores than their requests need: it could not fence them and
	// demoted the critical layer (DESIGN.md §2).
	Demoted bool
	// CriticalMilli is the CPU requested by critical pods.
	CriticalMilli int64
	// ProtectedSharedMilli is the CPU requested by the protected tiers that
	// run on the shared cores: system and high.
	ProtectedSharedMilli int64
	// BatchMilli is the CPU requested by normal, low and background pods.
	BatchMilli int64
	// ThreadsPerCore is the SMT threads of the node's cores (1 without
	// SMT): the critical fence takes whole physical cores.
	ThreadsPerCore int
}

// Summarize folds a parsed tier-load and the pods bound to the node since
// its timestamp into a Node. fallbackAllocMilli is the node's allocatable
// CPU from its status, used when the annotation carries none.
func Summarize(load wellknown.TierLoad, recent []Pod, fallbackAllocMilli int64) Node {
	n := Node{AllocatableMilli: load.AllocatableMilli, ThreadsPerCore: max(1, load.ThreadsPerCore)}
	if n.AllocatableMilli <= 0 {
		n.AllocatableMilli = fallbackAllocMilli
	}
	switch load.Backend {
	case wellknown.BackendSCXLayered, wellknown.BackendCgroup, wellknown.BackendTierSched:
		n.Protects = true
	}
	crit := load.Usage(wellknown.TierCritical)
	n.Demoted = crit.Pods > 0 && load.FencedMilli < n.fencedMilli(crit.RequestMilli)
	for t, u := range load.Tiers {
		n.add(t, u.RequestMilli)
	}
	for _, p := range recent {
		n.add(p.Tier, p.RequestMilli)
	}
	return n
}

// AddPod counts a pod bound since the annotation: Summarize(load, recent,
// alloc) equals Summarize(load, nil, alloc) with AddPod for each of recent.
func (n *Node) AddPod(p Pod) { n.add(p.Tier, p.RequestMilli) }

func (n *Node) add(t wellknown.Tier, milli int64) {
	switch t {
	case wellknown.TierCritical:
		n.CriticalMilli = sat(n.CriticalMilli, milli)
	case wellknown.TierSystem, wellknown.TierHigh:
		n.ProtectedSharedMilli = sat(n.ProtectedSharedMilli, milli)
	case wellknown.TierNormal, wellknown.TierLow, wellknown.TierBackground:
		n.BatchMilli = sat(n.BatchMilli, milli)
	}
}

// FenceCores is how many whole physical cores the node can fence for the
// critical tier: its allocatable CPU in cores minus the reserve, rounded
// down. The reserve is in core equivalents (1000 per core kept), as the
// agent keeps whole cores for the system layer and the shared pool: 2000
// keeps two physical cores on an SMT node too.
func (p Params) FenceCores(n Node) int64 {
	tpc := int64(max(1, n.ThreadsPerCore))
	return max(0, (n.AllocatableMilli/tpc-p.FenceReserveMilli)/milliPerCore)
}

// fenceCores is the physical cores the agent fences for critical requests
// of milli on n (wellknown.FenceCores, with the default exclusive cores).
func (n Node) fenceCores(milli int64) int64 {
	return wellknown.FenceCores(milli, n.ThreadsPerCore, true)
}

// fencedMilli is the logical CPU those cores take from the node.
func (n Node) fencedMilli(milli int64) int64 {
	return n.fenceCores(milli) * int64(max(1, n.ThreadsPerCore)) * milliPerCore
}

// CanFence reports whether pod's whole-core request can be fenced on a node
// whose tier-load has the given status. Only a critical pod on a node with
// a fresh annotation from an enforcing agent can fail: the node must not
// have demoted its critical layer, and the critical tier's requests with the
// pod's, rounded up to cores, must fit in FenceCores. The reason says why not.
//
// An agent that does not enforce (observe-only, safe mode) never fences
// anything; filtering on it would turn an operator's observe-only rollout
// into unschedulable pods, so such nodes only score low (see Score).
func CanFence(p Params, pod Pod, status Status, n Node) (bool, string) {
	v := CheckFence(p, pod, status, n)
	return v.OK, v.Reason()
}

// FenceVerdict is CanFence's answer before it is put into words, so a
// caller on the hot path can reuse the words of an equal verdict.
type FenceVerdict struct {
	OK bool
	// Demoted: the node's agent demoted its critical layer.
	Demoted bool
	// NeedCores and HaveCores are the whole cores the critical tier would
	// need with the pod and the cores the node can fence (when not OK and
	// not Demoted).
	NeedCores, HaveCores int64
}

// CheckFence is CanFence without the reason's text.
func CheckFence(p Params, pod Pod, status Status, n Node) FenceVerdict {
	if pod.Tier != wellknown.TierCritical || status != Fresh || !n.Protects || n.AllocatableMilli <= 0 {
		return FenceVerdict{OK: true}
	}
	if n.Demoted {
		return FenceVerdict{Demoted: true}
	}
	need := n.fenceCores(sat(n.CriticalMilli, pod.RequestMilli))
	if have := p.FenceCores(n); need > have {
		return FenceVerdict{NeedCores: need, HaveCores: have}
	}
	return FenceVerdict{OK: true}
}

// Reason says why the pod cannot be fenced ("" when it can).
func (v FenceVerdict) Reason() string {
	switch {
	case v.OK:
		return ""
	case v.Demoted:
		return "node's agent could not fence its critical pods (critical layer demoted)"
	}
	return fmt.Sprintf("critical tier would need %d whole cores, node can fence %d", v.NeedCores, v.HaveCores)
}

// Score rates a node for pod, 0 to MaxScore, or returns NoOpinion for a
// node that is not Fresh or has no known allocatable CPU, and for
// system-tier pods.
//
//   - critical: half fence headroom (the share of fenceable cores still free
//     after the pod), half low protected load (1 − (fenced cores + system +
//     high requests) / allocatable). 0 where the pod cannot be fenced or the
//     agent does not enforce.
//   - high: 1 − the protected tiers' share of the shared cores after the
//     pod: (system + high requests) / (allocatable − fenced cores). Fenced
//     critical pods and preemptible batch pods do not contend with a high
//     pod; system and other high pods do. 0 where the agent does not
//     enforce.
//   - normal, low, background: the batch tiers' share of the node's
//     allocatable CPU after the pod, where the pod fits in the idle headroom
//     (all requests after the pod within allocatable); 0 where it does not.
//     Batch fills the nodes that already run batch work one after another,
//     and leaves the room on the other nodes to the protected tiers.
func Score(p Params, pod Pod, status Status, n Node) int64 {
	if status != Fresh || n.AllocatableMilli <= 0 {
		return NoOpinion
	}
	alloc := float64(n.AllocatableMilli)
	fenced := n.fencedMilli(n.CriticalMilli)
	switch pod.Tier {
	case wellknown.TierCritical:
		if ok, _ := CanFence(p, pod, status, n); !ok || !n.Protects {
			return 0
		}
		need := n.fenceCores(sat(n.CriticalMilli, pod.RequestMilli))
		fenced = n.fencedMilli(sat(n.CriticalMilli, pod.RequestMilli))
		headroom := 0.0
		if capCores := p.FenceCores(n); capCores > 0 {
			headroom = float64(capCores-need) / float64(capCores)
		}
		protected := float64(sat(fenced, n.ProtectedSharedMilli)) / alloc
		return scale(0.5*headroom + 0.5*(1-protected))
	case wellknown.TierHigh:
		shared := n.AllocatableMilli - fenced
		if !n.Protects || shared <= 0 {
			return 0
		}
		return scale(1 - float64(sat(n.ProtectedSharedMilli, pod.RequestMilli))/float64(shared))
	case wellknown.TierNormal, wellknown.TierLow, wellknown.TierBackground:
		batch := sat(n.BatchMilli, pod.RequestMilli)
		if sat(sat(fenced, n.ProtectedSharedMilli), batch) > n.AllocatableMilli {
			return 0
		}
		return scale(float64(batch) / alloc)
	}
	return NoOpinion
}

// Normalize replaces every NoOpinion in scores (one cycle's scores, one per
// node) with the median of the other scores, or with NeutralScore when no
// node could be judged. A node the plugin cannot judge then sits in the
// middle of the nodes it can, so the other plugins decide about it. A
// fixed middle value would not be neutral: once the fleet is half loaded,
// every judged node scores below it and the unjudged nodes would draw the
// latency-critical pods of a whole burst.
func Normalize(scores []int64) {
	NormalizeBy(scores, func(s *int64) *int64 { return s })
}

// NormalizeBy is Normalize over the scores that score points to in each
// element of list, so a caller's score list is normalized in place.
func NormalizeBy[E any](list []E, score func(*E) *int64) {
	// Scores are 0..MaxScore, so a histogram finds the median without
	// sorting or allocating; this runs every scheduling cycle.
	var count [MaxScore + 1]int
	judged, unjudged := 0, 0
	for i := range list {
		switch s := *score(&list[i]); {
		case s == NoOpinion:
			unjudged++
		case s >= 0 && s <= MaxScore:
			count[s]++
			judged++
		}
	}
	if unjudged == 0 {
		return
	}
	neutral := NeutralScore
	if judged > 0 {
		// The lower and upper middle values (equal for an odd count).
		lo, hi := int64(-1), int64(-1)
		seen := 0
		for v, c := range count {
			seen += c
			if lo < 0 && seen > (judged-1)/2 {
				lo = int64(v)
			}
			if seen > judged/2 {
				hi = int64(v)
				break
			}
		}
		neutral = (lo + hi + 1) / 2
	}
	for i := range list {
		if s := score(&list[i]); *s == NoOpinion {
			*s = neutral
		}
	}
}

// scale maps a fraction to a score, clamped to [0, MaxScore].
func scale(f float64) int64 {
	return int64(math.Round(min(max(f, 0), 1) * float64(MaxScore)))
}

// maxMilli bounds the sums: a million cores. Annotation values are
// validated non-negative but not bounded, so sums saturate instead of
// overflowing.
const maxMilli int64 = 1_000_000_000

func sat(a, b int64) int64 {
	if s := a + b; s >= a && s <= maxMilli {
		return s
	}
	return maxMilli
}
