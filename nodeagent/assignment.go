package nodeagent

import (
	"sort"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/infera-io/temper/apis/tiering"
	"github.com/infera-io/temper/apis/wellknown"
	"github.com/infera-io/temper/nodeagent/cgroupfs"
)

// Assignment is one pod's place in the enforcement: its tier, CPU and
// cgroup.
type Assignment struct {
	Pod      types.NamespacedName
	UID      types.UID
	Tier     wellknown.Tier
	Source   tiering.Source
	QOSClass corev1.PodQOSClass
	CPU      tiering.CPU
	// Cgroup is the pod's cgroup, nil while it does not exist yet.
	Cgroup *cgroupfs.Pod
	// CgroupRelPath is where the pod's cgroup is (or will be), relative to
	// each hierarchy root; empty when it cannot be computed.
	CgroupRelPath string
	// Findings are lint findings about the pod's input.
	Findings []tiering.Finding
}

// Pending reports whether the pod's cgroup is not there yet.
func (a Assignment) Pending() bool { return a.Cgroup == nil }

// tierLoad sums the assignments per tier.
func tierLoad(as []Assignment) map[wellknown.Tier]wellknown.TierUsage {
	out := map[wellknown.Tier]wellknown.TierUsage{}
	for _, a := range as {
		u := out[a.Tier]
		u.Pods++
		u.RequestMilli = satAdd(u.RequestMilli, a.CPU.RequestMilli)
		u.LimitMilli = satAdd(u.LimitMilli, a.CPU.LimitMilli)
		out[a.Tier] = u
	}
	return out
}

func satAdd(a, b int64) int64 {
	if s := a + b; s >= a && s <= tiering.MaxCPUMilli {
		return s
	}
	return tiering.MaxCPUMilli
}

// classify computes the assignment of every pod. Pods whose cgroup cannot
// be found yet stay in the assignment (they count in tier-load) with a nil
// Cgroup, and the caller retries them.
func classify(pods []*corev1.Pod, th tiering.Thresholds, layout *cgroupfs.Layout) []Assignment {
	out := make([]Assignment, 0, len(pods))
	for _, p := range pods {
		r := tiering.Classify(p, th)
		cpu := tiering.PodCPU(p)
		a := Assignment{
			Pod:      types.NamespacedName{Namespace: p.Namespace, Name: p.Name},
			UID:      p.UID,
			Tier:     r.Tier,
			Source:   r.Source,
			QOSClass: r.QOSClass,
			CPU:      cpu,
			Findings: append(append([]tiering.Finding(nil), r.Findings...), cpu.Findings...),
		}
		if layout != nil {
			if rel, err := layout.PodRelPath(string(p.UID), r.QOSClass); err == nil {
				a.CgroupRelPath = rel
			}
			ref := cgroupfs.RefForPod(p)
			ref.QOSClass = r.QOSClass
			if cg, err := layout.FindPod(ref); err == nil {
				a.Cgroup = cg
			}
		}
		out = append(out, a)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Pod.String() < out[j].Pod.String() })
	return out
}
