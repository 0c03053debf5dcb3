package gateway

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/getkin/kin-openapi/openapi2"
	"github.com/getkin/kin-openapi/openapi2conv"
	"github.com/getkin/kin-openapi/openapi3"
	"github.com/getkin/kin-openapi/openapi3filter"
	"github.com/getkin/kin-openapi/routers"
	"google.golang.org/genproto/googleapis/api/annotations"
	"google.golang.org/protobuf/proto"

	inferav1 "github.com/infera-io/temper/apis/proto/infera/v1"
)

// servedDoc fetches the document the gateway serves and converts it from
// Swagger 2.0 to OpenAPI 3 with kin-openapi.
func servedDoc(t *testing.T) *openapi3.T {
	t.Helper()
	code, raw := callRaw(t, "", http.MethodGet, "/api/v1/openapi.json", "")
	if code != 200 {
		t.Fatalf("GET /api/v1/openapi.json = %d", code)
	}
	var d2 openapi2.T
	if err := json.Unmarshal(raw, &d2); err != nil {
		t.Fatalf("the served document is not Swagger 2.0: %v", err)
	}
	d3, err := openapi2conv.ToV3(&d2)
	if err != nil {
		t.Fatalf("converting to OpenAPI 3: %v", err)
	}
	if err := d3.Validate(context.Background()); err != nil {
		t.Fatalf("the converted document is invalid: %v", err)
	}
	return d3
}

// routes are the (method, path template) pairs the generated handlers
// register: the google.api.http rules of ClusterService.
func routes(t *testing.T) [][2]string {
	t.Helper()
	var out [][2]string
	svc := inferav1.File_infera_v1_cluster_proto.Services().ByName("ClusterService")
	for i := range svc.Methods().Len() {
		m := svc.Methods().Get(i)
		rule, _ := proto.GetExtension(m.Options(), annotations.E_Http).(*annotations.HttpRule)
		if rule == nil {
			t.Errorf("%s has no google.api.http rule", m.FullName())
			continue
		}
		switch p := rule.GetPattern().(type) {
		case *annotations.HttpRule_Get:
			out = append(out, [2]string{"GET", p.Get})
		case *annotations.HttpRule_Post:
			out = append(out, [2]string{"POST", p.Post})
		default:
			t.Errorf("%s: unexpected rule %v", m.FullName(), rule)
		}
	}
	return out
}

// fill replaces path parameters with fixture objects.
func fill(path string) string {
	// {node}: the node with a live agent, so the proxied calls answer 200.
	r := strings.NewReplacer("{namespace}", "default", "{node}", agentNode)
	path = r.Replace(path)
	if strings.Contains(path, "/pods/{name}") {
		return strings.Replace(path, "{name}", "crit", 1)
	}
	return strings.Replace(path, "{name}", "gw-n3", 1)
}

// TestOpenAPIRoutes: every route of the mux is in the document, every path
// of the document is served, and every answer validates against the
// document's schemas (kin-openapi openapi3filter).
func TestOpenAPIRoutes(t *testing.T) {
	doc := servedDoc(t)
	rs := routes(t)
	for _, r := range rs {
		item := doc.Paths.Value(r[1])
		if item == nil || item.GetOperation(r[0]) == nil {
			t.Errorf("route %s %s is not in the OpenAPI document", r[0], r[1])
		}
	}
	for path, item := range doc.Paths.Map() {
		for method, op := range item.Operations() {
			if !slices.Contains(rs, [2]string{method, path}) {
				t.Errorf("document operation %s %s is not a route of ClusterService", method, path)
			}
			t.Run(op.OperationID, func(t *testing.T) { checkServed(t, doc, path, item, method, op) })
		}
	}
}

func checkServed(t *testing.T, doc *openapi3.T, path string, item *openapi3.PathItem, method string, op *openapi3.Operation) {
	body := ""
	switch op.OperationID {
	case "ClusterService_SetNodeSafeMode":
		body = `{"enabled":false,"reason":"route check"}`
	case "ClusterService_SetSafeMode":
		body = `{"labelSelector":"pool=c","enabled":false,"reason":"route check"}`
	case "ClusterService_CaptureNodeTrace":
		body = `{"durationSeconds":1}`
	}
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
	defer cancel()
	u := server.URL + fill(path)
	req, err := http.NewRequestWithContext(ctx, method, u, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+tokens[operator])
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		raw, _ := io.ReadAll(resp.Body)
		if op.OperationID == "ClusterService_CaptureNodeTrace" && resp.StatusCode == http.StatusBadRequest && strings.Contains(string(raw), "trace capture unavailable") {
			t.Skipf("the agent cannot trace on this host (needs root, BPF and BTF): %s", raw)
		}
		t.Fatalf("%s %s = %d %s, want 200", method, u, resp.StatusCode, raw)
	}
	if op.OperationID == "ClusterService_WatchEvents" || op.OperationID == "ClusterService_WatchNodeEvents" {
		// A stream: served with 200 and NDJSON; its lines are checked in
		// TestEventStream.
		if ct := resp.Header.Get("Content-Type"); ct != "application/x-ndjson" {
			t.Errorf("event stream Content-Type = %q", ct)
		}
		return
	}
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	pu, _ := url.Parse(u)
	in := &openapi3filter.ResponseValidationInput{
		RequestValidationInput: &openapi3filter.RequestValidationInput{
			Request: req.Clone(ctx), Route: &routers.Route{Spec: doc, Path: path, PathItem: item, Method: method, Operation: op},
		},
		Status: resp.StatusCode, Header: resp.Header,
		Options: &openapi3filter.Options{IncludeResponseStatus: true, MultiError: true},
	}
	in.RequestValidationInput.Request.URL = pu
	in.SetBodyBytes(raw)
	if err := openapi3filter.ValidateResponse(ctx, in); err != nil {
		t.Errorf("%s %s: the response does not match the document: %v\n%s", method, path, err, raw)
	}
}

// TestOpenAPIErrors: error answers validate against the document's
// default (google.rpc.Status) response.
func TestOpenAPIErrors(t *testing.T) {
	doc := servedDoc(t)
	item := doc.Paths.Value("/api/v1/nodes/{name}")
	op := item.GetOperation("GET")
	req, _ := http.NewRequestWithContext(t.Context(), "GET", server.URL+"/api/v1/nodes/no-such-node", http.NoBody)
	req.Header.Set("Authorization", "Bearer "+tokens[viewer])
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 404 {
		t.Fatalf("GET unknown node = %d", resp.StatusCode)
	}
	in := &openapi3filter.ResponseValidationInput{
		RequestValidationInput: &openapi3filter.RequestValidationInput{Request: req, Route: &routers.Route{Spec: doc, Path: "/api/v1/nodes/{name}", PathItem: item, Method: "GET", Operation: op}},
		Status:                 resp.StatusCode, Header: resp.Header, Options: &openapi3filter.Options{MultiError: true},
	}
	in.SetBodyBytes(raw)
	if err := openapi3filter.ValidateResponse(t.Context(), in); err != nil {
		t.Errorf("404 body does not match the document: %v\n%s", err, raw)
	}
}
