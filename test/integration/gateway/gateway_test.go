package gateway

import (
	"bufio"
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"

	"github.com/infera-io/temper/apis/wellknown"
)

func saName(who string) string { return "system:serviceaccount:" + callerNS + ":" + who }

// TestAuthn: no token, a malformed header and a token the API server
// rejects are 401 with a clear message; probes and the document need none.
func TestAuthn(t *testing.T) {
	code, e := call(t, "", http.MethodGet, "/api/v1/fleet", "")
	if code != http.StatusUnauthorized || !strings.Contains(e["message"].(string), "Authorization") {
		t.Errorf("GET /api/v1/fleet without a token = %d %v, want 401 naming the Authorization header", code, e)
	}
	tokens["forged"] = "not-a-token"
	code, e = call(t, "forged", http.MethodGet, "/api/v1/fleet", "")
	if code != http.StatusUnauthorized || !strings.Contains(e["message"].(string), "not accepted") {
		t.Errorf("GET /api/v1/fleet with a forged token = %d %v, want 401", code, e)
	}
	for _, p := range []string{"/healthz", "/readyz", "/api/v1/openapi.json", "/openapi/v2.json", "/metrics"} {
		if code, _ := callRaw(t, "", http.MethodGet, p, ""); code != http.StatusOK {
			t.Errorf("GET %s without a token = %d, want 200", p, code)
		}
	}
}

// TestAuthz: each role gets exactly what config/rbac/gateway grants.
func TestAuthz(t *testing.T) {
	cases := []struct {
		who, method, path, body string
		want                    int
	}{
		{nobody, "GET", "/api/v1/fleet", "", 403},
		{nobody, "GET", "/api/v1/nodes/gw-n1", "", 403},
		{viewer, "GET", "/api/v1/fleet", "", 200},
		{viewer, "GET", "/api/v1/nodes", "", 200},
		{viewer, "GET", "/api/v1/nodes/gw-n1", "", 200},
		{viewer, "GET", "/api/v1/nodes/gw-n1/pods", "", 200},
		{viewer, "GET", "/api/v1/namespaces/default/pods/crit:explainTier", "", 200},
		{viewer, "GET", "/api/v1/policies", "", 200},
		{viewer, "GET", "/api/v1/overcommitProfiles", "", 200},
		{viewer, "GET", "/api/v1/savings", "", 200},
		{viewer, "GET", "/api/v1/auditEvents", "", 403},
		{viewer, "POST", "/api/v1/nodes/gw-n2:setSafeMode", `{"enabled":true,"reason":"test"}`, 403},
		{viewer, "POST", "/api/v1/nodes:setSafeMode", `{"labelSelector":"pool=b","enabled":true,"reason":"test"}`, 403},
		{operator, "GET", "/api/v1/auditEvents", "", 200},
		{operator, "GET", "/api/v1/fleet", "", 200},
		{safeModeOnly, "GET", "/api/v1/fleet", "", 403},
	}
	for _, c := range cases {
		code, body := callRaw(t, c.who, c.method, c.path, c.body)
		if code != c.want {
			t.Errorf("%s %s as %s = %d %s, want %d", c.method, c.path, c.who, code, body, c.want)
		}
		if c.want == 403 && !strings.Contains(string(body), saName(c.who)) {
			t.Errorf("%s %s as %s: 403 body %s does not name the user", c.method, c.path, c.who, body)
		}
	}
}

func TestFleetAndNodes(t *testing.T) {
	code, f := call(t, viewer, "GET", "/api/v1/fleet", "")
	if code != 200 {
		t.Fatalf("GET /api/v1/fleet = %d %v", code, f)
	}
	states := f["agentStates"].(map[string]any)
	// gw-a1 is the node of the suite's real agent (observe-only).
	if states["enforcing"] != float64(1) || states["observe-only"] != float64(2) || states["refused"] != float64(1) || states["unknown"] != float64(1) {
		t.Errorf("fleet agentStates = %v, want enforcing, refused, unknown 1 each and observe-only 2", states)
	}
	if f["nodes"] != float64(5) || f["staleTierLoad"] != float64(3) || f["fencedMilli"] != "2000" || f["allocatableMilli"] != "20000" {
		t.Errorf("fleet = %v", f)
	}
	code, n := call(t, viewer, "GET", "/api/v1/nodes/gw-n1", "")
	if code != 200 || n["agentState"] != "enforcing" || n["backend"] != "cgroup" || n["tierLoadFresh"] != true || n["generation"] != "7" || n["internalIp"] != "10.0.0.1" {
		t.Errorf("GET /api/v1/nodes/gw-n1 = %d %v", code, n)
	}
	_, n = call(t, viewer, "GET", "/api/v1/nodes/gw-n4", "")
	if n["agentState"] != "unknown" || !strings.Contains(n["agentStatusError"].(string), "bogus") {
		t.Errorf("gw-n4 with a broken agent-status = %v, want unknown with the error naming the value", n)
	}
	// Pagination and selectors.
	code, l := call(t, viewer, "GET", "/api/v1/nodes?labelSelector=pool%3Db&pageSize=1", "")
	if code != 200 || len(l["nodes"].([]any)) != 1 || l["totalSize"] != float64(2) || l["nextPageToken"] == "" {
		t.Fatalf("page 1 of pool=b = %d %v", code, l)
	}
	first := l["nodes"].([]any)[0].(map[string]any)["name"]
	_, l2 := call(t, viewer, "GET", "/api/v1/nodes?labelSelector=pool%3Db&pageSize=1&pageToken="+l["nextPageToken"].(string), "")
	if second := l2["nodes"].([]any)[0].(map[string]any)["name"]; first != "gw-n2" || second != "gw-n3" || l2["nextPageToken"] != "" {
		t.Errorf("pages of pool=b = %v then %v (next %q), want gw-n2 then gw-n3, last", first, second, l2["nextPageToken"])
	}
	code, e := call(t, viewer, "GET", "/api/v1/nodes?labelSelector=pool%3Da&pageToken="+l["nextPageToken"].(string), "")
	if code != 400 || !strings.Contains(e["message"].(string), "page_token") {
		t.Errorf("a token from other filters = %d %v, want 400 naming page_token", code, e)
	}
}

func TestPodsAndExplain(t *testing.T) {
	code, l := call(t, viewer, "GET", "/api/v1/nodes/gw-n1/pods", "")
	if code != 200 {
		t.Fatalf("GET pods = %d %v", code, l)
	}
	tiers := map[string]string{}
	for _, p := range l["pods"].([]any) {
		m := p.(map[string]any)
		tiers[m["name"].(string)] = m["tier"].(string)
	}
	want := map[string]string{"crit": "critical", "norm": "normal", "volunteer": "background", "climber": "low", "deflated": "normal"}
	for k, v := range want {
		if tiers[k] != v {
			t.Errorf("pod %s tier = %q, want %q (all: %v)", k, tiers[k], v, tiers)
		}
	}
	_, l = call(t, viewer, "GET", "/api/v1/nodes/gw-n1/pods?tier=critical", "")
	if l["totalSize"] != float64(1) {
		t.Errorf("tier=critical = %v, want 1 pod", l)
	}
	code, e := call(t, viewer, "GET", "/api/v1/nodes/gw-n1/pods?tier=platinum", "")
	if code != 400 || !strings.Contains(e["message"].(string), "tier") {
		t.Errorf("tier=platinum = %d %v, want 400 naming tier", code, e)
	}
	code, x := call(t, viewer, "GET", "/api/v1/namespaces/default/pods/climber:explainTier", "")
	if code != 200 || x["annotationOutcome"] != "ignored" || x["tier"] != "low" || x["decidingRule"] != "priority" || len(x["findings"].([]any)) != 1 {
		t.Errorf("explainTier climber = %d %v, want the raising annotation ignored", code, x)
	}
	_, x = call(t, viewer, "GET", "/api/v1/namespaces/default/pods/volunteer:explainTier", "")
	if x["annotationOutcome"] != "accepted" || x["tier"] != "background" || x["priorityTier"] != "high" {
		t.Errorf("explainTier volunteer = %v", x)
	}
	_, x = call(t, viewer, "GET", "/api/v1/namespaces/default/pods/deflated:explainTier", "")
	if x["originalCpuRequests"].(map[string]any)["app"] != "1" {
		t.Errorf("explainTier deflated = %v, want the overcommit original", x)
	}
	_, s := call(t, viewer, "GET", "/api/v1/savings", "")
	if s["podsDeflated"] != float64(1) || s["freedMilli"] != "750" || s["originalRequestMilli"] != "1000" {
		t.Errorf("savings = %v, want 1 pod, 750m freed", s)
	}
}

func TestBadInput(t *testing.T) {
	cases := []struct {
		method, path, body string
		code               int
		msg                string
	}{
		{"GET", "/api/v1/nodes/no-such-node", "", 404, `node "no-such-node" not found`},
		{"GET", "/api/v1/nodes/no-such-node/pods", "", 404, `node "no-such-node" not found`},
		{"POST", "/api/v1/nodes/no-such-node:setSafeMode", `{"enabled":true,"reason":"x"}`, 404, `node "no-such-node" not found`},
		{"GET", "/api/v1/namespaces/default/pods/ghost:explainTier", "", 404, "pod default/ghost not found"},
		{"GET", "/api/v1/nodes?labelSelector=pool%3D%3D%3Db", "", 400, "label_selector"},
		{"GET", "/api/v1/nodes?pageSize=-1", "", 400, "page_size"},
		{"GET", "/api/v1/nodes?pageSize=abc", "", 400, "page_size"},
		{"GET", "/api/v1/nodes?pageToken=garbage", "", 400, "page_token"},
		{"POST", "/api/v1/nodes/gw-n2:setSafeMode", `{"enabled":true}`, 400, "reason"},
		{"POST", "/api/v1/nodes/gw-n2:setSafeMode", `{"enabled":true,"reason":"x","colour":"red"}`, 400, "colour"},
		{"POST", "/api/v1/nodes/gw-n2:setSafeMode", `{"enabled":"yes","reason":"x"}`, 400, "enabled"},
		{"POST", "/api/v1/nodes/gw-n2:setSafeMode", `{"enabled":`, 400, ""},
		{"POST", "/api/v1/nodes:setSafeMode", `{"labelSelector":"pool in (b","enabled":true,"reason":"x"}`, 400, "label_selector"},
		{"POST", "/api/v1/nodes:setSafeMode", `{"enabled":true,"reason":"x"}`, 400, "label_selector"},
		{"POST", "/api/v1/nodes/gw-n2:setSafeMode", `{"enabled":true,"reason":"` + strings.Repeat("x", 70000) + `"}`, 413, "more than the 65536 allowed"},
	}
	for _, c := range cases {
		code, e := call(t, operator, c.method, c.path, c.body)
		if code != c.code || !strings.Contains(e["message"].(string), c.msg) {
			short := c.body
			if len(short) > 80 {
				short = short[:80] + "…"
			}
			t.Errorf("%s %s %s = %d %v, want %d with %q", c.method, c.path, short, code, e["message"], c.code, c.msg)
		}
	}
	n, err := kube.CoreV1().Nodes().Get(t.Context(), "gw-n2", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if wellknown.IsSafeModeRequested(n.Annotations) {
		t.Error("a rejected request changed gw-n2")
	}
}

// TestSafeModeAction: the operator's request flips the annotation as the
// operator (the gateway itself may not patch Nodes), leaves an audit line
// and a Node Event; a caller without patch on Nodes is refused by the API
// server itself.
func TestSafeModeAction(t *testing.T) {
	ctx := t.Context()
	code, r := call(t, operator, "POST", "/api/v1/nodes/gw-n2:setSafeMode", `{"enabled":true,"reason":"kernel upgrade on gw-n2"}`)
	if code != 200 || r["safeModeRequested"] != true || r["changed"] != true {
		t.Fatalf("setSafeMode on = %d %v", code, r)
	}
	n, err := kube.CoreV1().Nodes().Get(ctx, "gw-n2", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if n.Annotations[wellknown.SafeModeRequestedAnnotation] != "true" {
		t.Fatalf("gw-n2 annotations = %v, want safe mode requested", n.Annotations)
	}
	evs, err := kube.CoreV1().Events("default").List(ctx, metav1.ListOptions{FieldSelector: fields.Set{
		"involvedObject.kind": "Node", "involvedObject.name": "gw-n2", "reason": "SafeModeRequested"}.String()})
	if err != nil {
		t.Fatal(err)
	}
	if len(evs.Items) != 1 || !strings.Contains(evs.Items[0].Message, saName(operator)) || !strings.Contains(evs.Items[0].Message, "kernel upgrade on gw-n2") {
		t.Errorf("Node Events = %+v, want one naming the operator and the reason", evs.Items)
	}
	line := findAudit(t, func(m map[string]any) bool {
		ref, _ := m["objectRef"].(map[string]any)
		return ref != nil && ref["resource"] == "safemodes" && ref["name"] == "gw-n2" && m["responseStatus"].(map[string]any)["code"] == float64(200)
	})
	user := line["user"].(map[string]any)
	ann := line["annotations"].(map[string]any)
	if line["apiVersion"] != "audit.k8s.io/v1" || line["kind"] != "Event" || user["username"] != saName(operator) || line["verb"] != "update" ||
		ann["infera.io/reason"] != "kernel upgrade on gw-n2" || ann["infera.io/action"] != "safe-mode-on" {
		t.Errorf("audit line = %v", line)
	}
	// The ring serves the same event.
	_, ring := call(t, operator, "GET", "/api/v1/auditEvents?pageSize=500", "")
	found := false
	for _, e := range ring["events"].([]any) {
		if e.(map[string]any)["auditID"] == line["auditID"] {
			found = true
		}
	}
	if !found {
		t.Errorf("GET /api/v1/auditEvents lacks audit event %v", line["auditID"])
	}

	// Withdraw by selector: gw-n2 changes, gw-n3 was not requested.
	code, sr := call(t, operator, "POST", "/api/v1/nodes:setSafeMode", `{"labelSelector":"pool=b","enabled":false,"reason":"upgrade done"}`)
	res := sr["results"].([]any)
	if code != 200 || len(res) != 2 || sr["failed"] != float64(0) || res[0].(map[string]any)["changed"] != true || res[1].(map[string]any)["changed"] != false {
		t.Errorf("setSafeMode off for pool=b = %d %v", code, sr)
	}
	n, _ = kube.CoreV1().Nodes().Get(ctx, "gw-n2", metav1.GetOptions{})
	if _, ok := n.Annotations[wellknown.SafeModeRequestedAnnotation]; ok {
		t.Errorf("gw-n2 still carries %s", wellknown.SafeModeRequestedAnnotation)
	}

	// safemode-only passes the gateway's check but the API server refuses
	// the impersonated patch: the change is made as the caller.
	code, e := call(t, safeModeOnly, "POST", "/api/v1/nodes/gw-n3:setSafeMode", `{"enabled":true,"reason":"try"}`)
	if code != 403 || !strings.Contains(e["message"].(string), saName(safeModeOnly)) || !strings.Contains(e["message"].(string), "patch") {
		t.Errorf("setSafeMode as safemode-only = %d %v, want 403 from the API server naming the user", code, e)
	}
	n, _ = kube.CoreV1().Nodes().Get(ctx, "gw-n3", metav1.GetOptions{})
	if wellknown.IsSafeModeRequested(n.Annotations) {
		t.Error("gw-n3 was changed by a caller without patch on Nodes")
	}
	// Denials are audited too.
	findAudit(t, func(m map[string]any) bool {
		return m["user"].(map[string]any)["username"] == saName(viewer) && m["responseStatus"].(map[string]any)["code"] == float64(403)
	})
}

func findAudit(t *testing.T, match func(map[string]any) bool) map[string]any {
	t.Helper()
	sc := bufio.NewScanner(strings.NewReader(audit.String()))
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		var m map[string]any
		if err := json.Unmarshal(sc.Bytes(), &m); err != nil {
			t.Fatalf("audit line %q is not JSON: %v", sc.Text(), err)
		}
		if match(m) {
			return m
		}
	}
	t.Fatalf("no matching audit line in:\n%s", audit.String())
	return nil
}

// TestEventStream: the NDJSON stream delivers the gateway's actions and
// Node changes to a client using only an Authorization header.
func TestEventStream(t *testing.T) {
	req, _ := http.NewRequestWithContext(t.Context(), http.MethodGet, server.URL+"/api/v1/events?node=gw-n4", http.NoBody)
	req.Header.Set("Authorization", "Bearer "+tokens[viewer])
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "application/x-ndjson" {
		t.Fatalf("GET /api/v1/events = %d %s", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	lines := make(chan string, 8)
	go func() {
		sc := bufio.NewScanner(resp.Body)
		for sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
	}()
	if code, r := call(t, operator, "POST", "/api/v1/nodes/gw-n4:setSafeMode", `{"enabled":true,"reason":"stream test"}`); code != 200 {
		t.Fatalf("setSafeMode = %d %v", code, r)
	}
	seen := map[string]bool{}
	deadline := time.After(20 * time.Second)
	for !seen["Action"] || !seen["SafeModeRequestChanged"] {
		select {
		case l, ok := <-lines:
			if !ok {
				t.Fatalf("stream ended; seen %v", seen)
			}
			var m struct {
				Result map[string]any `json:"result"`
			}
			if err := json.Unmarshal([]byte(l), &m); err != nil {
				t.Fatalf("line %q: %v", l, err)
			}
			if m.Result["node"] != "gw-n4" {
				t.Errorf("event for %v passed the node=gw-n4 filter", m.Result["node"])
			}
			seen[m.Result["type"].(string)] = true
		case <-deadline:
			t.Fatalf("events seen within 20s: %v, want Action and SafeModeRequestChanged", seen)
		}
	}
	_, _ = call(t, operator, "POST", "/api/v1/nodes/gw-n4:setSafeMode", `{"enabled":false,"reason":"stream test done"}`)
}
