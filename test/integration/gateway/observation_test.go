package gateway

import (
	"strings"
	"testing"
)

// TestNodeObservation: GET /api/v1/nodes/{node}/observation relays the real
// agent's GetObservation over its TLS listener: every tier with the pod
// counts the agent holds, the node's CPU pressure or why there is none, and
// why this observe-only agent asserts no cgroup knobs; a node whose agent
// is down is 503 naming it, and a caller without a role 403.
func TestNodeObservation(t *testing.T) {
	code, o := call(t, viewer, "GET", "/api/v1/nodes/"+agentNode+"/observation", "")
	if code != 200 {
		t.Fatalf("GET observation of %s = %d %v", agentNode, code, o)
	}
	if o["nodeName"] != agentNode || o["backend"] != "observe-only" {
		t.Errorf("observation names node %v, backend %v; want %s, observe-only", o["nodeName"], o["backend"], agentNode)
	}
	pods := map[string]float64{}
	var tiers []string
	for _, v := range o["tiers"].([]any) {
		tp := v.(map[string]any)
		tiers = append(tiers, tp["tier"].(string))
		pods[tp["tier"].(string)] = tp["pods"].(float64)
	}
	if strings.Join(tiers, ",") != "system,critical,high,normal,low,background" || pods["critical"] != 1 || pods["normal"] != 1 {
		t.Errorf("tiers %v with pods %v, want every tier, highest first, critical 1 and normal 1", tiers, pods)
	}
	if k, _ := o["cgroupKnobs"].([]any); len(k) != 0 || o["cgroupKnobsUnavailable"] != "the observe-only backend sets no cgroup knobs" {
		t.Errorf("cgroup knobs %v (unavailable %q), want none because the backend is observe-only", o["cgroupKnobs"], o["cgroupKnobsUnavailable"])
	}
	p := o["pressure"].(map[string]any)
	if p["available"] != true && p["reason"] == "" {
		t.Errorf("pressure %v: neither available nor a reason", p)
	}

	if code, e := call(t, viewer, "GET", "/api/v1/nodes/gw-n2/observation", ""); code != 503 || !strings.Contains(e["message"].(string), "gw-n2") {
		t.Errorf("GET observation of gw-n2 (agent down) = %d %v, want 503 naming the node", code, e)
	}
	if code, _ := call(t, nobody, "GET", "/api/v1/nodes/"+agentNode+"/observation", ""); code != 403 {
		t.Errorf("GET observation as nobody = %d, want 403", code)
	}
}
