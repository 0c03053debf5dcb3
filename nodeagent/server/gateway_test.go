package server

import (
	"bufio"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/grpc-ecosystem/grpc-gateway/v2/runtime"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	inferav1 "github.com/infera-io/temper/apis/proto/infera/v1"
)

// TestGeneratedGatewayOverSocket checks the google.api.http annotations the
// later REST gateway relies on: the generated handlers, dialling the agent's
// socket, map the REST paths, query parameters and bodies onto the RPCs.
func TestGeneratedGatewayOverSocket(t *testing.T) {
	agent := newFakeAgent()
	agent.status = Status{AgentStatus: "enforcing/cgroup", Backend: "cgroup", Generation: 9, NodeName: "node-a"}
	agent.pods = makePods(12)
	s, _ := startServer(t, agent, Options{})

	mux := runtime.NewServeMux()
	if err := inferav1.RegisterAgentServiceHandlerFromEndpoint(t.Context(), mux, "unix://"+s.SocketPath(),
		[]grpc.DialOption{grpc.WithTransportCredentials(insecure.NewCredentials())}); err != nil {
		t.Fatal(err)
	}
	web := httptest.NewServer(mux)
	t.Cleanup(web.Close)

	do := func(method, path, body string) (int, map[string]any) {
		t.Helper()
		req, err := http.NewRequestWithContext(t.Context(), method, web.URL+path, strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var out map[string]any
		if err := json.NewDecoder(resp.Body).Decode(&out); err != nil {
			t.Fatalf("%s %s: decoding the body: %v", method, path, err)
		}
		return resp.StatusCode, out
	}

	code, st := do(http.MethodGet, "/api/v1/agent/status", "")
	if code != http.StatusOK || st["agentStatus"] != "enforcing/cgroup" || st["generation"] != "9" || st["nodeName"] != "node-a" {
		t.Fatalf("GET /api/v1/agent/status = %d %v", code, st)
	}
	code, pods := do(http.MethodGet, "/api/v1/agent/pods?tier=critical&pageSize=2", "")
	if code != http.StatusOK || len(pods["pods"].([]any)) != 2 || pods["totalSize"] != float64(3) || pods["nextPageToken"] == "" {
		t.Fatalf("GET /api/v1/agent/pods?tier=critical&pageSize=2 = %d %v", code, pods)
	}
	code, e := do(http.MethodPost, "/api/v1/agent/traces", `{"pod":{"namespace":"default","name":"ghost"},"durationSeconds":2}`)
	if code != http.StatusNotFound || !strings.Contains(e["message"].(string), `pod "default/ghost" is not on this node`) {
		t.Fatalf("POST /api/v1/agent/traces for a pod elsewhere = %d %v, want 404 naming the pod", code, e)
	}
	code, e = do(http.MethodPost, "/api/v1/agent/traces", `{"durationSeconds":0}`)
	if code != http.StatusBadRequest || !strings.Contains(e["message"].(string), "duration_seconds") {
		t.Fatalf("POST /api/v1/agent/traces with no duration = %d %v, want 400 naming the field", code, e)
	}

	// The event stream is newline-delimited JSON. The gateway sends its
	// response headers with the first event, so the request runs aside.
	req, _ := http.NewRequestWithContext(t.Context(), http.MethodGet, web.URL+"/api/v1/agent/events", http.NoBody)
	type result struct {
		line string
		err  error
	}
	got := make(chan result, 1)
	go func() {
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			got <- result{err: err}
			return
		}
		defer resp.Body.Close()
		line, err := bufio.NewReader(resp.Body).ReadString('\n')
		got <- result{line, err}
	}()
	for agent.Stats().Subscribers == 0 {
		time.Sleep(time.Millisecond)
	}
	agent.Publish(Event{Type: EventSafeModeEntered, Reason: "requested"})
	r := <-got
	if r.err != nil {
		t.Fatal(r.err)
	}
	line := r.line
	var ev struct {
		Result struct {
			Type            string            `json:"type"`
			Sequence        string            `json:"sequence"`
			SafeModeChanged map[string]string `json:"safeModeChanged"`
		} `json:"result"`
	}
	if err := json.Unmarshal([]byte(line), &ev); err != nil || ev.Result.Type != "EVENT_TYPE_SAFE_MODE_ENTERED" ||
		ev.Result.Sequence != "1" || ev.Result.SafeModeChanged["reason"] != "requested" {
		t.Fatalf("GET /api/v1/agent/events line %q decodes to %+v (%v)", line, ev, err)
	}
}
