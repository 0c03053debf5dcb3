package scx

import (
	"fmt"

	"github.com/infera-io/temper/nodeagent/enforcement"
	"github.com/infera-io/temper/nodeagent/layered"
)

// GenerateLayered turns the pods into an scx_layered config. Pods whose
// cgroup path is unknown cannot be matched and are left to the catch-all
// layer (reported in the notes).
func GenerateLayered(pods []enforcement.Pod, m enforcement.Machine) ([]byte, enforcement.Applied, error) {
	node := layered.Node{CPUs: len(m.CPUs), Cores: m.Cores}
	if len(m.Cores) == len(m.CPUs) {
		node.Cores = nil // no SMT
	}
	lp := make([]layered.Pod, 0, len(pods))
	var applied enforcement.Applied
	for _, p := range pods {
		if p.CgroupRelPath == "" {
			applied.Notes = append(applied.Notes, fmt.Sprintf("pod %s: cgroup path unknown; left to the catch-all layer", p.Name))
			continue
		}
		lp = append(lp, layered.Pod{
			Name:         p.Name,
			Tier:         p.Tier,
			CgroupPath:   p.CgroupRelPath,
			RequestMilli: p.RequestMilli,
			LimitMilli:   p.LimitMilli,
		})
	}
	res, err := layered.Generate(node, lp, layered.DefaultOptions())
	if err != nil {
		return nil, applied, err
	}
	applied.FencedMilli = res.FencedMilli
	applied.Layers = res.Layers
	if res.Demotion != nil {
		applied.Notes = append(applied.Notes, "critical layer demoted to Grouped: "+res.Demotion.Reason)
	}
	for _, s := range res.Skipped {
		applied.Notes = append(applied.Notes, fmt.Sprintf("pod %s: %s", s.Name, s.Reason))
	}
	return res.Config, applied, nil
}
