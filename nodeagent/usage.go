package nodeagent

import (
	"context"
	"strings"

	"github.com/infera-io/temper/nodeagent/procscan"
	"github.com/infera-io/temper/nodeagent/server"
)

var _ server.UsageAgent = agentAPI{}

// Usage serves GetUsage from the observation layer's samples, with each
// pod's uid and request from the current assignment (a pod that has left
// since keeps its samples, without them).
func (api agentAPI) Usage(_ context.Context, namespace string) (server.Usage, error) {
	a := api.a
	a.mu.Lock()
	o := a.observation
	a.mu.Unlock()
	out := server.Usage{NodeName: a.o.NodeName}
	if o == nil {
		out.Reason = "the observation layer is disabled or could not start (see the agent's log)"
		return out, nil
	}
	var keep func(procscan.PodKey) bool
	if namespace != "" {
		prefix := namespace + "/"
		keep = func(p procscan.PodKey) bool { return strings.HasPrefix(string(p), prefix) }
	}
	u := o.obs.Usage(keep)
	out.Available, out.Samples, out.From, out.To, out.Interval, out.Capped = true, u.Samples, u.From, u.To, u.Interval, u.Capped
	as := a.Assignments()
	byKey := make(map[procscan.PodKey]int, len(as))
	for i, p := range as {
		byKey[procscan.PodKey(p.Pod.String())] = i
	}
	requests := map[string]int64{}
	for _, s := range u.Pods {
		ns, name, _ := strings.Cut(string(s.Pod), "/")
		pu := server.PodUsage{Namespace: ns, Name: name, Tier: string(s.Tier), Milli: s.Milli}
		if i, ok := byKey[s.Pod]; ok {
			pu.UID, pu.RequestMilli = string(as[i].UID), as[i].CPU.RequestMilli
		}
		out.Pods = append(out.Pods, pu)
	}
	for _, p := range as {
		requests[string(p.Tier)] += p.CPU.RequestMilli
	}
	for _, t := range u.Tiers {
		out.Tiers = append(out.Tiers, server.TierCPU{Tier: string(t.Tier), Pods: t.Pods, RequestMilli: requests[string(t.Tier)], Milli: t.Milli})
	}
	return out, nil
}
