package layered

import (
	"bytes"
	"encoding/json"
	"fmt"

	"github.com/infera-io/temper/apis/wellknown"
)

// scx_layered's limits (FORMAT.md §2).
const (
	maxLayers          = 16
	maxMatchesPerLayer = 32
)

// catchAllName is the last layer's name.
const catchAllName = "catch-all"

// Layer parameters that DESIGN.md §2 leaves open. They are starting points,
// not yet tuned on a sched_ext node: util_range is the per-CPU utilisation
// band within which a Confined or Grouped layer keeps its CPU count (it
// grows above the band and shrinks below it); weight only matters when
// Confined and Grouped layers compete for CPUs.
const (
	systemUtilLow, systemUtilHigh     = 0.3, 0.6
	criticalUtilLow, criticalUtilHigh = 0.5, 0.8
	highUtilLow, highUtilHigh         = 0.5, 0.7
	normalUtilLow, normalUtilHigh     = 0.6, 0.9
)

// band is a util_range value.
func band(low, high float64) *[2]float64 { return &[2]float64{low, high} }

const (
	systemWeight   = 10000
	criticalWeight = 1000
	highWeight     = 400
	normalWeight   = 100
)

// Generate builds the scx_layered config for the node (see the package doc
// and match.go for the matching scheme). It fails only for an invalid node
// or options, or when the pods need more than 16 layers (ErrTooManyLayers);
// a pod that cannot be matched is listed in Result.Skipped instead.
func Generate(node Node, pods []Pod, opts Options) (*Result, error) {
	sh, err := node.shape()
	if err != nil {
		return nil, fmt.Errorf("failed to generate scx_layered config: %w", err)
	}
	if err := opts.validate(); err != nil {
		return nil, fmt.Errorf("failed to generate scx_layered config: %w", err)
	}
	ms, skipped := members(pods)
	res := &Result{Skipped: skipped}

	comms := make([]match, len(opts.SystemComms))
	for i, c := range opts.SystemComms {
		comms[i] = match{PcommPrefix: c}
	}
	p := planMatches(ms, map[wellknown.Tier]int{wellknown.TierSystem: len(comms)})

	fence := sizeFence(sh, opts, p.tiers[wellknown.TierCritical])
	res.Demotion = fence.demotion
	res.FencedCPUs = fence.cpus
	res.FencedMilli = int64(fence.cpus) * 1000

	var specs []layerSpec
	var sums []LayerSummary
	emit := func(t wellknown.Tier, kind LayerKind, body kindBody, comment string, extra []match, tm *tierMatch) {
		blocks, summaries := chunk(t, extra, tm)
		for i, b := range blocks {
			name := string(t)
			if len(blocks) > 1 {
				name = fmt.Sprintf("%s-%d", t, i+1)
			}
			s := summaries[i]
			s.Name, s.Tier, s.Kind, s.Matches = name, t, kind, len(b)
			if body.CPUsRange != nil {
				s.MinCPUs, s.MaxCPUs = body.CPUsRange[0], body.CPUsRange[1]
			}
			specs = append(specs, layerSpec{Name: name, Comment: comment, Matches: b, Kind: body.as(kind)})
			sums = append(sums, s)
		}
	}

	// The system layer is always there, even without system pods.
	sys := kindBody{UtilRange: band(systemUtilLow, systemUtilHigh), Protected: true, Weight: systemWeight}
	if sysCores := min(opts.SystemCores, max(0, sh.cores-opts.MinSharedCores)); sysCores > 0 {
		sys.CPUsRange = &[2]int{sysCores * sh.perCore, sh.cpus}
	}
	if d, ok := opts.Slices[wellknown.TierSystem]; ok {
		sys.SliceUS = uint64(d.Microseconds())
	}
	sysMatch := p.tiers[wellknown.TierSystem]
	if sysMatch == nil {
		sysMatch = &tierMatch{tier: wellknown.TierSystem}
	}
	emit(wellknown.TierSystem, KindGrouped, sys, "Temper: agent and scheduler threads and system-tier pods; owns its cores", comms, sysMatch)

	for _, t := range p.order {
		tm := p.tiers[t]
		switch t {
		case wellknown.TierCritical:
			body := kindBody{UtilRange: band(criticalUtilLow, criticalUtilHigh), Protected: true, Preempt: true, Exclusive: opts.ExclusiveCores,
				SliceUS: uint64(opts.slice(t).Microseconds()), Weight: criticalWeight, CPUsRange: fence.cpusRange}
			if fence.demotion == nil {
				emit(t, KindConfined, body, "Temper: critical tier, fenced whole cores", nil, tm)
			} else {
				emit(t, KindGrouped, body, "Temper: critical tier, demoted to Grouped (the node cannot fence it)", nil, tm)
			}
		case wellknown.TierHigh:
			emit(t, KindGrouped, kindBody{UtilRange: band(highUtilLow, highUtilHigh), Protected: true, Preempt: true,
				SliceUS: uint64(opts.slice(t).Microseconds()), Weight: highWeight}, "Temper: high tier", nil, tm)
		case wellknown.TierNormal:
			emit(t, KindGrouped, kindBody{UtilRange: band(normalUtilLow, normalUtilHigh),
				SliceUS: uint64(opts.slice(t).Microseconds()), Weight: normalWeight}, "Temper: normal tier", nil, tm)
		case wellknown.TierLow:
			emit(t, KindOpen, kindBody{SliceUS: uint64(opts.slice(t).Microseconds())}, "Temper: low tier", nil, tm)
		case wellknown.TierBackground:
			emit(t, KindOpen, kindBody{SliceUS: uint64(opts.slice(t).Microseconds())}, "Temper: background tier", nil, tm)
		}
	}

	specs = append(specs, layerSpec{Name: catchAllName, Comment: "Temper: everything else (kubelet, node daemons, unknown pods)",
		Matches: [][]match{{}}, Kind: kindBody{}.as(KindOpen)})
	sums = append(sums, LayerSummary{Name: catchAllName, Kind: KindOpen, Matches: 1})
	if len(specs) > maxLayers {
		return nil, fmt.Errorf("failed to generate scx_layered config: %d pods need %d layers, more than %d: %w",
			len(ms), len(specs), maxLayers, ErrTooManyLayers)
	}

	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	enc.SetIndent("", "  ")
	if err := enc.Encode(specs); err != nil {
		return nil, fmt.Errorf("failed to encode scx_layered config: %w", err)
	}
	res.Config = buf.Bytes()
	res.Layers = sums
	return res, nil
}

// chunk turns a tier's rules into OR blocks of at most 32 per layer: extra
// rules first, then prefixes, then pods, each pod counted in the layer
// whose rule matches it.
func chunk(t wellknown.Tier, extra []match, tm *tierMatch) ([][][]match, []LayerSummary) {
	type rule struct {
		m     match
		group bool
		pods  []*member
	}
	var rules []rule
	for _, e := range extra {
		rules = append(rules, rule{m: e})
	}
	for _, g := range tm.groups {
		rules = append(rules, rule{m: match{CgroupPrefix: g.prefix}, group: true, pods: g.pods})
	}
	for _, m := range tm.explicit {
		rules = append(rules, rule{m: match{CgroupPrefix: m.match}, pods: []*member{m}})
	}
	var blocks [][][]match
	var sums []LayerSummary
	for i, r := range rules {
		if i%maxMatchesPerLayer == 0 {
			blocks = append(blocks, nil)
			sums = append(sums, LayerSummary{})
		}
		last := len(blocks) - 1
		blocks[last] = append(blocks[last], []match{r.m})
		s := &sums[last]
		if r.group {
			s.GroupPrefixes = append(s.GroupPrefixes, r.m.CgroupPrefix)
		}
		for _, m := range r.pods {
			s.Pods++
			s.RequestMilli += m.RequestMilli
			s.LimitMilli += m.LimitMilli
		}
	}
	return blocks, sums
}

// fence is the sizing of the critical layer.
type fence struct {
	cpus      int
	cpusRange *[2]int
	demotion  *Demotion
}

// sizeFence sizes critical in whole cores from its requests, rounded up
// (DESIGN.md §2), and demotes it when the node cannot fence that many cores
// and still give the system layer and the minimum shared pool theirs.
func sizeFence(sh shape, opts Options, tm *tierMatch) fence {
	if tm == nil {
		return fence{}
	}
	var req int64
	for _, m := range tm.explicit {
		req += m.RequestMilli
	}
	if n := len(tm.explicit); n > maxMatchesPerLayer {
		return demoted(sh, DemotionTooManyPods, wantCores(sh, opts, req), fenceableCores(sh, opts),
			fmt.Sprintf("%d critical pods are more than the %d one fenced layer can match", n, maxMatchesPerLayer))
	}
	return sizeByRequests(sh, opts, req, len(tm.explicit))
}

// wantCores is how many whole cores req millicores need, by the rule the
// scheduler plugin places by (wellknown.FenceCores).
func wantCores(sh shape, opts Options, req int64) int {
	return int(wellknown.FenceCores(req, sh.perCore, opts.ExclusiveCores))
}

func fenceableCores(sh shape, opts Options) int {
	return max(0, sh.cores-opts.SystemCores-opts.MinSharedCores)
}

func demoted(sh shape, cause DemotionCause, want, fenceable int, reason string) fence {
	f := fence{demotion: &Demotion{Cause: cause, WantCores: want, FenceableCores: fenceable, Reason: reason}}
	if fenceable > 0 {
		// Demoted, it may still own up to what a fence could have had.
		f.cpusRange = &[2]int{0, fenceable * sh.perCore}
	}
	return f
}

// sizeByRequests sizes a fence for n critical pods requesting req
// millicores in total.
func sizeByRequests(sh shape, opts Options, req int64, n int) fence {
	want := wantCores(sh, opts, req)
	fenceable := fenceableCores(sh, opts)
	switch {
	case req == 0:
		return demoted(sh, DemotionNoRequests, want, fenceable, fmt.Sprintf("%d critical pods request no CPU, so there is no fence to size", n))
	case want > fenceable:
		return demoted(sh, DemotionCapacity, want, fenceable, fmt.Sprintf("critical requests %dm, which needs %d whole cores; the node has %d, of which %d must stay with the system layer and %d with the shared pool",
			req, want, sh.cores, opts.SystemCores, opts.MinSharedCores))
	}
	cpus := want * sh.perCore
	return fence{cpus: cpus, cpusRange: &[2]int{cpus, cpus}}
}

// Fence is the size of the critical fence.
type Fence struct {
	// Cores is the number of whole cores fenced, CPUs the logical CPUs in
	// them; both 0 when Demotion is set.
	Cores, CPUs int
	// Demotion says why the node cannot fence the critical pods.
	Demotion *Demotion
}

// CriticalFence sizes the critical fence for pods critical pods requesting
// requestMilli in total, exactly as Generate sizes the Confined layer, for
// backends that fence by other means (the cgroup backend's cpusets). It
// fails only for an invalid node or options.
func CriticalFence(node Node, requestMilli int64, pods int, opts Options) (Fence, error) {
	sh, err := node.shape()
	if err != nil {
		return Fence{}, fmt.Errorf("failed to size the critical fence: %w", err)
	}
	if err := opts.validate(); err != nil {
		return Fence{}, fmt.Errorf("failed to size the critical fence: %w", err)
	}
	if pods == 0 {
		return Fence{}, nil
	}
	f := sizeByRequests(sh, opts, requestMilli, pods)
	if f.demotion != nil {
		return Fence{Demotion: f.demotion}, nil
	}
	return Fence{Cores: f.cpus / sh.perCore, CPUs: f.cpus}, nil
}
