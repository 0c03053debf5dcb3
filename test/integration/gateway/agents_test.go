package gateway

import (
	"bufio"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/go-logr/logr"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/infera-io/temper/gateway"
)

// TestNodePodsThroughAgent: a node's pods carry what its agent enforces,
// fetched over the agent's TLS listener with the gateway's token; a node
// whose agent is down, hung or unknown still lists its pods, with the
// reason the agent could not be asked.
func TestNodePodsThroughAgent(t *testing.T) {
	code, l := call(t, viewer, "GET", "/api/v1/nodes/"+agentNode+"/pods", "")
	if code != 200 {
		t.Fatalf("GET pods of %s = %d %v", agentNode, code, l)
	}
	a := l["agent"].(map[string]any)
	if a["reached"] != true || a["error"] != "" || a["node"] != agentNode {
		t.Fatalf("agent of %s = %v, want reached", agentNode, a)
	}
	pods := l["pods"].([]any)
	if len(pods) != 2 {
		t.Fatalf("pods of %s = %v, want a-crit and a-norm", agentNode, pods)
	}
	for _, p := range pods {
		m := p.(map[string]any)
		if m["agentTier"] != m["tier"] || m["enforcement"] == "ENFORCEMENT_STATE_UNSPECIFIED" {
			t.Errorf("pod %s: agentTier %v (gateway's tier %v), enforcement %v: want the agent's view", m["name"], m["agentTier"], m["tier"], m["enforcement"])
		}
	}

	for node, want := range map[string]string{
		"gw-n2": "127.0.0.2",              // refused
		"gw-n3": "did not answer in time", // hung
		"gw-n4": "no InternalIP",          // none
	} {
		start := time.Now()
		code, l := call(t, viewer, "GET", "/api/v1/nodes/"+node+"/pods", "")
		took := time.Since(start)
		if code != 200 {
			t.Fatalf("GET pods of %s = %d %v, want 200 without the agent", node, code, l)
		}
		a := l["agent"].(map[string]any)
		if a["reached"] != false || !strings.Contains(a["error"].(string), want) || !strings.Contains(a["error"].(string), node) {
			t.Errorf("agent of %s = %v, want unreached with an error naming the node and %q", node, a, want)
		}
		if took > agentTimeout+5*time.Second {
			t.Errorf("GET pods of %s took %s with the agent timeout at %s", node, took, agentTimeout)
		}
	}
	_, l = call(t, viewer, "GET", "/api/v1/nodes/gw-n1/pods", "")
	if a := l["agent"].(map[string]any); len(l["pods"].([]any)) != 5 || a["reached"] != false || !strings.Contains(a["error"].(string), "10.0.0.1") {
		t.Errorf("gw-n1, whose agent is unreachable, = %v; want its 5 pods from the API server and the agent's error", l)
	}
}

// TestAgentStatuses: one call over the fleet, bounded fan-out; the nodes
// whose agents fail carry their errors and the reachable one its status.
func TestAgentStatuses(t *testing.T) {
	code, l := call(t, viewer, "GET", "/api/v1/agentStatuses", "")
	if code != 200 {
		t.Fatalf("GET agentStatuses = %d %v", code, l)
	}
	got := map[string]map[string]any{}
	for _, n := range l["nodes"].([]any) {
		m := n.(map[string]any)
		got[m["agent"].(map[string]any)["node"].(string)] = m
	}
	if len(got) != 5 || l["unreachable"] != float64(4) {
		t.Fatalf("agentStatuses = %v, want 5 nodes, 4 unreachable", l)
	}
	if st := got[agentNode]["status"].(map[string]any); st["nodeName"] != agentNode || st["backend"] != "none" && st["agentStatus"] != "observe-only" {
		t.Errorf("status of %s = %v", agentNode, st)
	}
	for _, n := range []string{"gw-n1", "gw-n2", "gw-n3", "gw-n4"} {
		a := got[n]["agent"].(map[string]any)
		if a["reached"] != false || !strings.Contains(a["error"].(string), n) {
			t.Errorf("%s = %v, want unreached with its error", n, got[n])
		}
	}
	if code, _ := call(t, nobody, "GET", "/api/v1/agentStatuses", ""); code != 403 {
		t.Errorf("agentStatuses as nobody = %d, want 403", code)
	}
}

func TestAgentProxiedCalls(t *testing.T) {
	code, st := call(t, viewer, "GET", "/api/v1/nodes/"+agentNode+"/agentStatus", "")
	if code != 200 || st["nodeName"] != agentNode || st["agentStatus"] != "observe-only" {
		t.Errorf("agentStatus of %s = %d %v", agentNode, code, st)
	}
	code, c := call(t, viewer, "GET", "/api/v1/nodes/"+agentNode+"/layeredConfig", "")
	if code != 200 || c["configJson"] != "" {
		t.Errorf("layeredConfig of an observe-only %s = %d %v, want 200 with no config", agentNode, code, c)
	}
	for _, tc := range []struct {
		who, method, path, body string
		code                    int
		msg                     string
	}{
		{viewer, "GET", "/api/v1/nodes/gw-n2/agentStatus", "", 503, "gw-n2"},
		{viewer, "GET", "/api/v1/nodes/gw-n3/layeredConfig", "", 503, "did not answer in time"},
		{viewer, "GET", "/api/v1/nodes/no-such-node/agentStatus", "", 404, "no-such-node"},
		{nobody, "GET", "/api/v1/nodes/" + agentNode + "/agentStatus", "", 403, "cannot get nodes"},
		{viewer, "POST", "/api/v1/nodes/" + agentNode + "/traces", `{"durationSeconds":1}`, 403, "traces"},
		{operator, "POST", "/api/v1/nodes/" + agentNode + "/traces", `{"durationSeconds":0}`, 400, "duration_seconds"},
		{operator, "POST", "/api/v1/nodes/" + agentNode + "/traces", `{"durationSeconds":600}`, 400, "duration_seconds"},
		{operator, "POST", "/api/v1/nodes/gw-n2/traces", `{"durationSeconds":1}`, 503, "gw-n2"},
		{viewer, "GET", "/api/v1/nodes/gw-n2/agentEvents", "", 503, "gw-n2"},
		{viewer, "GET", "/api/v1/nodes/" + agentNode + "/agentEvents?types=EVENT_TYPE_BOGUS", "", 400, "types"},
	} {
		code, e := call(t, tc.who, tc.method, tc.path, tc.body)
		if code != tc.code || !strings.Contains(e["message"].(string), tc.msg) {
			t.Errorf("%s %s as %s = %d %v, want %d naming %q", tc.method, tc.path, tc.who, code, e, tc.code, tc.msg)
		}
	}
}

// TestAgentEventStream: the agent's events reach a gateway client as NDJSON.
func TestAgentEventStream(t *testing.T) {
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, server.URL+"/api/v1/nodes/"+agentNode+"/agentEvents", http.NoBody)
	req.Header.Set("Authorization", "Bearer "+tokens[viewer])
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "application/x-ndjson" {
		t.Fatalf("agentEvents = %d %s", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	// A new pod on the node changes the agent's assignment.
	p := pod("a-new", "infera-high", nil, "100m")
	p.Namespace, p.Spec.NodeName = agentNS, agentNode
	if _, err := kube.CoreV1().Pods(agentNS).Create(ctx, p, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = kube.CoreV1().Pods(agentNS).Delete(context.Background(), "a-new", metav1.DeleteOptions{}) })
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		if strings.Contains(sc.Text(), `"result"`) && strings.Contains(sc.Text(), "a-new") {
			return
		}
	}
	t.Fatalf("no event naming a-new within 30s: %v", sc.Err())
}

// TestEndpointSliceDiscovery: with EndpointSlice discovery (the chart's) the
// gateway dials the address of the endpoint on the node, at the slice's
// "grpc" port, preferring a ready endpoint; a node without one is named in
// the error. The addresses are unroutable (EndpointSlices may not hold
// loopback ones), so no agent answers: what is checked is where the
// gateway went.
func TestEndpointSliceDiscovery(t *testing.T) {
	ctx := t.Context()
	const svc = "infera-agent-grpc"
	if _, err := kube.CoreV1().Services("infera-system").Create(ctx, &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: svc},
		Spec: corev1.ServiceSpec{ClusterIP: corev1.ClusterIPNone, PublishNotReadyAddresses: true,
			Ports: []corev1.ServicePort{{Name: "grpc", Port: 9101}}},
	}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	ep := func(node, ip string, ready bool) discoveryv1.Endpoint {
		return discoveryv1.Endpoint{Addresses: []string{ip}, NodeName: &node, Conditions: discoveryv1.EndpointConditions{Ready: &ready}}
	}
	name, port := "grpc", int32(9555)
	if _, err := kube.DiscoveryV1().EndpointSlices("infera-system").Create(ctx, &discoveryv1.EndpointSlice{
		ObjectMeta:  metav1.ObjectMeta{Name: svc + "-x", Labels: map[string]string{discoveryv1.LabelServiceName: svc}},
		AddressType: discoveryv1.AddressTypeIPv4,
		Ports:       []discoveryv1.EndpointPort{{Name: &name, Port: &port}},
		Endpoints:   []discoveryv1.Endpoint{ep("gw-n4", "10.0.0.9", true), ep("gw-n2", "10.0.0.7", false), ep("gw-n2", "10.0.0.8", true)},
	}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	cfg, err := gateway.LoadConfig("")
	if err != nil {
		t.Fatal(err)
	}
	cfg.Agents = gatewayAgents.DeepCopy()
	cfg.Agents.Discovery = "EndpointSlice"
	cfg.Agents.ServiceNamespace, cfg.Agents.ServiceName = "infera-system", svc
	cfg.Agents.Timeout = &metav1.Duration{Duration: 500 * time.Millisecond}
	g, err := gateway.New(gateway.Options{Config: cfg, RestConfig: gatewayRest, Log: logr.Discard(), AuditWriter: io.Discard})
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = g.Close() }()
	if err := g.Start(ctx); err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(g.Handler())
	defer srv.Close()
	for node, want := range map[string]string{"gw-n4": "10.0.0.9:9555", "gw-n2": "10.0.0.8:9555", "gw-n1": ""} {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, srv.URL+"/api/v1/nodes/"+node+"/pods", http.NoBody)
		req.Header.Set("Authorization", "Bearer "+tokens[viewer])
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		var l struct {
			Agent struct {
				Reached        bool
				Error, Address string
			}
		}
		err = json.NewDecoder(resp.Body).Decode(&l)
		resp.Body.Close()
		if err != nil || resp.StatusCode != 200 {
			t.Fatalf("GET pods of %s = %d %v", node, resp.StatusCode, err)
		}
		if l.Agent.Reached || l.Agent.Address != want || !strings.Contains(l.Agent.Error, node) {
			t.Errorf("agent of %s = %+v, want unreached at %q with an error naming the node", node, l.Agent, want)
		}
		if want == "" && !strings.Contains(l.Agent.Error, "no agent endpoint") {
			t.Errorf("agent of %s: error %q does not say there is no endpoint", node, l.Agent.Error)
		}
	}
}
