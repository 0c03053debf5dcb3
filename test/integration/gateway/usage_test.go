package gateway

import (
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	inferav1 "github.com/infera-io/temper/apis/proto/infera/v1"
)

// getProto GETs path as who and decodes the answer into m, failing unless
// the code is 200.
func getProto(t *testing.T, who, path string, m proto.Message) {
	t.Helper()
	code, raw := callRaw(t, who, "GET", path, "")
	if code != 200 {
		t.Fatalf("GET %s as %s = %d %s", path, who, code, raw)
	}
	if err := protojson.Unmarshal(raw, m); err != nil {
		t.Fatalf("GET %s: decoding %s: %v", path, raw, err)
	}
}

// waitUsage waits until gw-a1's agent holds at least n samples.
func waitUsage(t *testing.T, n int32) *inferav1.GetUsageResponse {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for {
		u := &inferav1.GetUsageResponse{}
		getProto(t, viewer, "/api/v1/nodes/"+agentNode+"/usage", u)
		if u.GetSamples() >= n && len(u.GetPods()) == 2 {
			return u
		}
		if time.Now().After(deadline) {
			t.Fatalf("the agent of %s holds %d samples of %d pods after 60s, want %d of 2: %v", agentNode, u.GetSamples(), len(u.GetPods()), n, u)
		}
		time.Sleep(500 * time.Millisecond)
	}
}

// TestNodeUsage: the agent's samples of its pods' real processes reach a
// REST client: the pod running a light load used CPU, the sleeper next to
// none; each carries its uid and request; the tiers sum them.
func TestNodeUsage(t *testing.T) {
	u := waitUsage(t, 3)
	if !u.GetAvailable() || u.GetNodeName() != agentNode || u.GetWindowSeconds() <= 0 || u.GetIntervalSeconds() <= 0 || u.GetSampleTime() == nil {
		t.Fatalf("usage of %s = %v, want available with a window", agentNode, u)
	}
	pods := map[string]*inferav1.PodCPUUsage{}
	for _, p := range u.GetPods() {
		pods[p.GetName()] = p
		if p.GetNamespace() != agentNS || p.GetUid() == "" || p.GetUsage().GetSamples() < 1 || len(p.GetSampleCores()) != 0 {
			t.Errorf("pod %v: want its namespace, uid, samples summarised (not listed)", p)
		}
	}
	crit, norm := pods["a-crit"], pods["a-norm"]
	if crit.GetTier() != "critical" || crit.GetRequestMilli() != 1000 || norm.GetTier() != "normal" || norm.GetRequestMilli() != 500 {
		t.Errorf("pods %v, want a-crit critical 1000m and a-norm normal 500m", pods)
	}
	if crit.GetUsage().GetMaxCores() <= 0 {
		t.Errorf("a-crit (a real light load) usage %v, want some CPU", crit.GetUsage())
	}
	if s := norm.GetUsage(); s.GetMaxCores() > 0.02 {
		t.Errorf("a-norm (a sleeper) usage %v, want next to none", s)
	}
	tiers := map[string]*inferav1.TierCPUUsage{}
	for _, tu := range u.GetTiers() {
		tiers[tu.GetTier()] = tu
	}
	if c := tiers["critical"]; c.GetPods() != 1 || c.GetRequestMilli() != 1000 || c.GetUsage().GetMaxCores() < crit.GetUsage().GetMaxCores() {
		t.Errorf("critical tier %v, want a-crit's pod, request and usage", c)
	}
	if u.GetTiers()[0].GetTier() != "critical" {
		t.Errorf("tiers %v, want the highest first", u.GetTiers())
	}

	// A namespace without pods there: no pods, the tiers still.
	o := &inferav1.GetUsageResponse{}
	getProto(t, viewer, "/api/v1/nodes/"+agentNode+"/usage?namespace=elsewhere", o)
	if len(o.GetPods()) != 0 || len(o.GetTiers()) == 0 {
		t.Errorf("usage in namespace elsewhere = %v, want no pods and the node's tiers", o)
	}

	for _, tc := range []struct {
		who, path string
		code      int
		msg       string
	}{
		{nobody, "/api/v1/nodes/" + agentNode + "/usage", 403, "cannot get nodes/pods"},
		{viewer, "/api/v1/nodes/no-such-node/usage", 404, "no-such-node"},
		{viewer, "/api/v1/nodes/gw-n2/usage", 503, "gw-n2"},
		{viewer, "/api/v1/nodes/gw-n3/usage", 503, "gw-n3"},
		{nobody, "/api/v1/usage", 403, "cannot list pods"},
		{viewer, "/api/v1/usage?labelSelector=a%3D%3D%3D", 400, "label_selector"},
	} {
		code, e := call(t, tc.who, "GET", tc.path, "")
		if code != tc.code || !strings.Contains(e["message"].(string), tc.msg) {
			t.Errorf("GET %s as %s = %d %v, want %d naming %q", tc.path, tc.who, code, e, tc.code, tc.msg)
		}
	}
}

// TestFleetUsage: one call over the fleet; the agents that fail are in the
// answer with their errors, the reachable one's pods and tiers merged.
func TestFleetUsage(t *testing.T) {
	waitUsage(t, 2)
	l := &inferav1.ListUsageResponse{}
	getProto(t, viewer, "/api/v1/usage", l)
	if len(l.GetNodes()) != 5 || l.GetUnreachable() != 4 {
		t.Fatalf("usage nodes = %v (unreachable %d), want 5 with 4 unreachable", l.GetNodes(), l.GetUnreachable())
	}
	for _, n := range l.GetNodes() {
		a := n.GetAgent()
		if (a.GetNode() == agentNode) != a.GetReached() || !a.GetReached() && !strings.Contains(a.GetError(), a.GetNode()) {
			t.Errorf("node %v: want only %s reached, the others with their error", n, agentNode)
		}
		if a.GetNode() == agentNode && (!n.GetAvailable() || n.GetSamples() < 2 || n.GetWindowSeconds() <= 0) {
			t.Errorf("node %v: want the agent's window", n)
		}
	}
	if len(l.GetPods()) != 2 || l.GetPods()[0].GetPod().GetName() != "a-crit" || l.GetPods()[0].GetNode() != agentNode {
		t.Errorf("fleet pods = %v, want a-crit then a-norm on %s", l.GetPods(), agentNode)
	}
	if len(l.GetTiers()) < 2 || l.GetTiers()[0].GetTier() != "critical" || l.GetTiers()[0].GetRequestMilli() != 1000 {
		t.Errorf("fleet tiers = %v, want critical (1000m requested) first", l.GetTiers())
	}

	// Per namespace, the tiers sum only that namespace's pods.
	n := &inferav1.ListUsageResponse{}
	getProto(t, viewer, "/api/v1/usage?namespace="+agentNS+"&labelSelector=pool%3Dagents", n)
	if len(n.GetNodes()) != 1 || len(n.GetPods()) != 2 || len(n.GetTiers()) != 2 || n.GetTiers()[1].GetTier() != "normal" || n.GetTiers()[1].GetPods() != 1 {
		t.Errorf("usage of %s on pool=agents = %v, want 1 node, 2 pods, tiers critical and normal", agentNS, n)
	}
}

// TestRightsizing: per workload (here two bare pods), the request, the
// pooled samples of the agent and a suggestion with its evidence.
func TestRightsizing(t *testing.T) {
	waitUsage(t, 3)
	r := &inferav1.Rightsizing{}
	getProto(t, viewer, "/api/v1/rightsizing?namespace="+agentNS, r)
	if r.GetPolicy().GetHeadroom() != 1.2 || r.GetUnreachable() != 4 || len(r.GetAgents()) != 5 {
		t.Fatalf("rightsizing policy %v, agents %v (unreachable %d), want 1.2 headroom and 4 of 5 agents unreachable", r.GetPolicy(), r.GetAgents(), r.GetUnreachable())
	}
	ws := map[string]*inferav1.WorkloadRightsizing{}
	for _, w := range r.GetWorkloads() {
		ws[w.GetKind()+"/"+w.GetName()] = w
	}
	crit, norm := ws["Pod/a-crit"], ws["Pod/a-norm"]
	if len(ws) != 2 || crit == nil || norm == nil {
		t.Fatalf("workloads %v, want Pod/a-crit and Pod/a-norm", r.GetWorkloads())
	}
	if crit.GetPods() != 1 || crit.GetRequestMilli() != 1000 || crit.GetUsage().GetSamples() < 3 || crit.GetUsage().GetMaxCores() <= 0 ||
		crit.GetSuggestedRequestMilli() < 10 || crit.GetSuggestedRequestMilli()%10 != 0 || crit.GetEvidence() == "" ||
		len(crit.GetNodes()) != 1 || crit.GetNodes()[0] != agentNode || crit.GetWindowSeconds() <= 0 {
		t.Errorf("a-crit = %v, want its 1000m request, its samples, a suggestion in 10m steps with evidence", crit)
	}
	// At 1 s samples the test holds fewer than the 30 a confident
	// suggestion needs: flagged, still computed.
	if crit.GetVerdict() != "insufficient-data" && crit.GetUsage().GetSamples() < 30 {
		t.Errorf("a-crit verdict %q with %d samples, want insufficient-data", crit.GetVerdict(), crit.GetUsage().GetSamples())
	}
	if norm.GetSuggestedRequestMilli() != 10 || norm.GetUsage().GetP95Cores() > 0.008 {
		t.Errorf("a-norm (a sleeper) = %v, want the 10m floor", norm)
	}
	if code, e := call(t, nobody, "GET", "/api/v1/rightsizing", ""); code != 403 || !strings.Contains(e["message"].(string), "cannot list pods") {
		t.Errorf("rightsizing as nobody = %d %v, want 403", code, e)
	}
}
