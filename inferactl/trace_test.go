package inferactl

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"k8s.io/cli-runtime/pkg/genericiooptions"
)

// TestTraceThroughGateway drives `trace NODE` against a STAND-IN gateway:
// the real trace route (POST /api/v1/nodes/{node}/traces, proxied to the
// node's agent) is being added to infera-gateway on another branch, so this
// checks the request inferactl sends (path, bearer token, body) and how it
// prints the answer, with the route's shape from that branch's OpenAPI
// document. test/integration/inferactl covers a real gateway without the
// route (exit 10).
func TestTraceThroughGateway(t *testing.T) {
	var gotBody map[string]any
	var gotAuth string
	stand := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch {
		case r.Method == http.MethodGet && r.URL.Path == "/api/v1/openapi.json":
			_, _ = io.WriteString(w, `{"swagger":"2.0","paths":{"/api/v1/nodes/{node}/traces":{"post":{}}}}`)
		case r.Method == http.MethodPost && r.URL.Path == "/api/v1/nodes/worker-1/traces":
			gotAuth = r.Header.Get("Authorization")
			if err := json.NewDecoder(r.Body).Decode(&gotBody); err != nil {
				http.Error(w, err.Error(), http.StatusBadRequest)
				return
			}
			_, _ = io.WriteString(w, `{"captureId":"c1","path":"/var/lib/infera/traces/c1.bin","sizeBytes":"4096","events":"120",`+
				`"truncated":false,"startTime":"2026-12-03T10:00:00Z","durationSeconds":2}`)
		default:
			http.NotFound(w, r)
		}
	}))
	defer stand.Close()
	tok := filepath.Join(t.TempDir(), "token")
	if err := os.WriteFile(tok, []byte("secret-token\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	var out, errb bytes.Buffer
	code := Run(context.Background(), "inferactl", []string{"--gateway", stand.URL, "--gateway-token-file", tok, "trace", "worker-1", "--duration", "2s"},
		genericiooptions.IOStreams{In: strings.NewReader(""), Out: &out, ErrOut: &errb})
	if code != ExitOK {
		t.Fatalf("trace: exit %d: %s", code, errb.String())
	}
	if gotAuth != "Bearer secret-token" {
		t.Errorf("Authorization = %q, want the token file's token", gotAuth)
	}
	if d := cmp.Diff(map[string]any{"durationSeconds": float64(2)}, gotBody); d != "" {
		t.Errorf("request body (-want +got):\n%s", d)
	}
	if want := "node/worker-1: 120 scheduling events in 2.0s, 4096 bytes at /var/lib/infera/traces/c1.bin (on the node)\n"; out.String() != want {
		t.Errorf("output %q, want %q", out.String(), want)
	}
}
