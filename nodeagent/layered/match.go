package layered

import (
	"cmp"
	"fmt"
	"slices"
	"strings"

	"github.com/infera-io/temper/apis/wellknown"
)

// How pods are matched to layers
//
// scx_layered matches a task against the layers in file order, first match
// wins, on rules that are OR lists (at most 32 per layer) of AND blocks, with
// at most 16 layers. We use one rule kind only, CgroupPrefix, present in
// every scx_layered since 1.0.0 and checked in BPF at every cgroup
// migration, exec and nice change, so new containers are matched at once:
//
//   - Every pod can be matched by its own cgroup: CgroupPrefix "<pod
//     cgroup>/" (the trailing slash keeps pod...ab from matching pod...abc).
//   - A QoS group — the pods whose cgroups share the kubelet's name prefix,
//     "kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod" or
//     "kubepods.slice/kubepods-pod" (Guaranteed), "kubepods/besteffort/pod"
//     with cgroupfs — can be matched by that prefix in one block, by one
//     tier, if every known pod under it of another tier is matched by an
//     earlier layer. Pods of other tiers are then listed explicitly in their
//     (earlier) layers, and the prefix catches the rest.
//   - Only normal, low and background take prefixes. A prefix also catches
//     pods the agent does not know yet, and those must never land in a
//     protected layer or inside the critical fence. System, critical and
//     high are always matched pod by pod.
//   - The file order of the normal, low and background layers is free
//     (scx_layered consumes same-class layers in a per-CPU shuffled order,
//     not file order), so the generator tries all orders and keeps the one
//     with the fewest layers, then the fewest blocks, then tier order.
//   - A tier that still needs more than 32 blocks is split into layers
//     "<tier>-1", "<tier>-2", … with the same parameters.
//
// With 6 tiers, each needs at most ceil(blocks/32) layers, so even with no
// prefix at all 250 pods plus the system layer's name rules need at most
// 13 layers plus the catch-all: every tier distribution of 250 pods fits,
// and up to 290 pods always fit. On a typical node (most pods normal or
// background by QoS class) the prefixes cut this to a handful of blocks and
// pods joining a prefixed group do not change the config at all, so they
// cost no scheduler restart. CgroupRegex is not used: it is newer (crate
// 1.0.18), matched in userspace by an inotify watcher that aborts the
// scheduler beyond 16384 cgroups, and limited to 16 rules.

// member is a validated pod.
type member struct {
	Pod
	// match is the string scx_layered compares: the pod cgroup plus "/".
	match string
}

// maxMatchBytes is the longest CgroupPrefix scx_layered copies safely.
const maxMatchBytes = 4095

// members validates and sorts the pods. Pods that cannot be matched are
// returned as skipped: one bad pod must not stop the others' enforcement.
func members(pods []Pod) ([]*member, []SkippedPod) {
	var ok []*member
	var skipped []SkippedPod
	for _, p := range pods {
		path := strings.Trim(p.CgroupPath, "/")
		reason := ""
		switch {
		case !p.Tier.Valid():
			reason = fmt.Sprintf("unknown tier %q", p.Tier)
		case path == "":
			reason = "no cgroup path"
		case len(path)+1 > maxMatchBytes:
			reason = fmt.Sprintf("cgroup path is %d bytes; scx_layered matches at most %d", len(path), maxMatchBytes-1)
		case !printableASCII(path):
			reason = "cgroup path has bytes other than printable ASCII"
		case slices.ContainsFunc(strings.Split(path, "/"), func(e string) bool { return e == "" || e == "." || e == ".." }):
			reason = fmt.Sprintf("cgroup path %q is not clean", path)
		case p.RequestMilli < 0 || p.LimitMilli < 0:
			reason = "negative CPU request or limit"
		}
		if reason != "" {
			skipped = append(skipped, SkippedPod{Name: p.Name, Reason: reason})
			continue
		}
		m := &member{Pod: p, match: path + "/"}
		m.CgroupPath = path
		ok = append(ok, m)
	}
	slices.SortFunc(ok, func(a, b *member) int {
		return cmp.Or(strings.Compare(a.match, b.match), strings.Compare(a.Name, b.Name))
	})
	// Two pods in one cgroup, or a pod cgroup inside another's, would match
	// each other's rules: keep the first (outermost) and skip the rest.
	kept := ok[:0]
	paths := map[string]string{}
	for _, m := range ok {
		if other, same, dup := firstAncestor(m.CgroupPath, paths); dup {
			where := "inside"
			if same {
				where = "also"
			}
			skipped = append(skipped, SkippedPod{Name: m.Name, Reason: fmt.Sprintf("cgroup path %q is %s pod %s's cgroup", m.CgroupPath, where, other)})
			continue
		}
		paths[m.CgroupPath] = m.Name
		kept = append(kept, m)
	}
	slices.SortFunc(skipped, func(a, b SkippedPod) int {
		return cmp.Or(strings.Compare(a.Name, b.Name), strings.Compare(a.Reason, b.Reason))
	})
	return kept, skipped
}

// firstAncestor finds path itself (same) or one of its parent directories
// among the known pod cgroups.
func firstAncestor(path string, known map[string]string) (name string, same, found bool) {
	for p := path; ; {
		if name, ok := known[p]; ok {
			return name, p == path, true
		}
		i := strings.LastIndexByte(p, '/')
		if i < 0 {
			return "", false, false
		}
		p = p[:i]
	}
}

// groupPrefix is the candidate prefix of the pod's QoS group: its cgroup up
// to and including the last "pod" of the last element (the kubelet names
// pod cgroups "<qos prefix>pod<uid>…"), or else its parent directory.
func groupPrefix(path string) string {
	dir, base := "", path
	if i := strings.LastIndexByte(path, '/'); i >= 0 {
		dir, base = path[:i+1], path[i+1:]
	}
	if i := strings.LastIndex(base, "pod"); i >= 0 && i+3 < len(base) {
		return dir + base[:i+3]
	}
	return dir
}

// groupable tiers may take a prefix that also matches unknown pods.
func groupable(t wellknown.Tier) bool {
	return t == wellknown.TierNormal || t == wellknown.TierLow || t == wellknown.TierBackground
}

// tierMatch is how one tier's pods are matched.
type tierMatch struct {
	tier wellknown.Tier
	// groups are the prefixes this tier takes, sorted, with the pods of
	// this tier each one matches (the first prefix that does).
	groups []groupMatch
	// explicit are the pods matched by their own cgroup, sorted.
	explicit []*member
}

type groupMatch struct {
	prefix string
	pods   []*member
}

func (t *tierMatch) blocks() int { return len(t.groups) + len(t.explicit) }

// plan is a layer order with the matching of each tier.
type plan struct {
	order []wellknown.Tier // tiers with pods, in layer order
	tiers map[wellknown.Tier]*tierMatch
}

// planMatches picks the order of the groupable tiers and the prefixes that
// need the fewest layers; extraBlocks are rules per tier that are not pods
// (the system layer's name rules).
func planMatches(ms []*member, extraBlocks map[wellknown.Tier]int) plan {
	present := map[wellknown.Tier]bool{}
	for _, m := range ms {
		present[m.Tier] = true
	}
	// Candidate prefixes and the pods (of any tier) each one matches.
	covered := map[string][]*member{}
	var prefixes []string
	for _, m := range ms {
		if !groupable(m.Tier) {
			continue
		}
		g := groupPrefix(m.CgroupPath)
		if _, seen := covered[g]; g == "" || seen {
			continue
		}
		covered[g] = nil
		prefixes = append(prefixes, g)
	}
	slices.Sort(prefixes)
	for _, g := range prefixes {
		for _, m := range ms {
			if strings.HasPrefix(m.match, g) {
				covered[g] = append(covered[g], m)
			}
		}
	}

	var best plan
	bestLayers, bestBlocks := -1, -1
	for _, tail := range permutations([]wellknown.Tier{wellknown.TierNormal, wellknown.TierLow, wellknown.TierBackground}) {
		var order []wellknown.Tier
		for _, t := range append([]wellknown.Tier{wellknown.TierSystem, wellknown.TierCritical, wellknown.TierHigh}, tail...) {
			if present[t] {
				order = append(order, t)
			}
		}
		p := assign(order, ms, prefixes, covered)
		layers, blocks := 0, 0
		for _, t := range order {
			n := p.tiers[t].blocks() + extraBlocks[t]
			layers += (n + maxMatchesPerLayer - 1) / maxMatchesPerLayer
			blocks += n
		}
		if bestLayers < 0 || layers < bestLayers || (layers == bestLayers && blocks < bestBlocks) {
			best, bestLayers, bestBlocks = p, layers, blocks
		}
	}
	return best
}

// assign gives each prefix to the tier of its last layer among the pods it
// matches, when that tier is groupable; every pod not caught by a prefix of
// its own tier is matched explicitly. Earlier layers then never match a pod
// of a later tier: an earlier tier's prefix matches no pod of a later tier
// (else that later tier would have taken it), and explicit rules match one
// pod cgroup each (nested pod cgroups were rejected).
func assign(order []wellknown.Tier, ms []*member, prefixes []string, covered map[string][]*member) plan {
	pos := map[wellknown.Tier]int{}
	p := plan{order: order, tiers: map[wellknown.Tier]*tierMatch{}}
	for i, t := range order {
		pos[t] = i
		p.tiers[t] = &tierMatch{tier: t}
	}
	taken := map[*member]bool{}
	var kept []string // prefixes taken so far, sorted: a shorter one comes first
	for _, g := range prefixes {
		last := wellknown.Tier("")
		for _, m := range covered[g] {
			if last == "" || pos[m.Tier] > pos[last] {
				last = m.Tier
			}
		}
		if !groupable(last) {
			continue
		}
		// A prefix inside one the same tier already took adds nothing.
		if slices.ContainsFunc(kept, func(k string) bool { return strings.HasPrefix(g, k) && p.tierOf(k) == last }) {
			continue
		}
		gm := groupMatch{prefix: g}
		for _, m := range covered[g] {
			if m.Tier == last && !taken[m] {
				taken[m] = true
				gm.pods = append(gm.pods, m)
			}
		}
		p.tiers[last].groups = append(p.tiers[last].groups, gm)
		kept = append(kept, g)
	}
	for _, m := range ms {
		if !taken[m] {
			p.tiers[m.Tier].explicit = append(p.tiers[m.Tier].explicit, m)
		}
	}
	return p
}

// tierOf returns the tier that took prefix g.
func (p plan) tierOf(g string) wellknown.Tier {
	for t, tm := range p.tiers {
		for _, gm := range tm.groups {
			if gm.prefix == g {
				return t
			}
		}
	}
	return ""
}

// permutations returns every order of ts, the given order first.
func permutations(ts []wellknown.Tier) [][]wellknown.Tier {
	if len(ts) <= 1 {
		return [][]wellknown.Tier{slices.Clone(ts)}
	}
	var out [][]wellknown.Tier
	for i, t := range ts {
		rest := slices.Concat(ts[:i], ts[i+1:])
		for _, p := range permutations(rest) {
			out = append(out, append([]wellknown.Tier{t}, p...))
		}
	}
	return out
}
