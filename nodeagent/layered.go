package nodeagent

import (
	"fmt"

	"github.com/infera-io/temper/nodeagent/layered"
)

// generateLayered turns the assignment into an scx_layered config. Pods
// whose cgroup path is unknown cannot be matched and are left to the
// catch-all layer (reported in the notes).
func generateLayered(as []Assignment, m Machine) ([]byte, Applied, error) {
	node := layered.Node{CPUs: len(m.CPUs), Cores: m.Cores}
	if len(m.Cores) == len(m.CPUs) {
		node.Cores = nil // no SMT
	}
	pods := make([]layered.Pod, 0, len(as))
	var applied Applied
	for _, a := range as {
		if a.CgroupRelPath == "" {
			applied.Notes = append(applied.Notes, fmt.Sprintf("pod %s: cgroup path unknown; left to the catch-all layer", a.Pod))
			continue
		}
		pods = append(pods, layered.Pod{
			Name:         a.Pod.String(),
			Tier:         a.Tier,
			CgroupPath:   a.CgroupRelPath,
			RequestMilli: a.CPU.RequestMilli,
			LimitMilli:   a.CPU.LimitMilli,
		})
	}
	res, err := layered.Generate(node, pods, layered.DefaultOptions())
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
