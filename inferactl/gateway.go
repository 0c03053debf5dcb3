package inferactl

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strings"
	"time"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"k8s.io/client-go/rest"

	inferav1 "github.com/infera-io/temper/apis/proto/infera/v1"
)

// Environment variables that configure the gateway (flags win).
const (
	EnvGateway          = "INFERA_GATEWAY"
	EnvGatewayTokenFile = "INFERA_GATEWAY_TOKEN_FILE"
	EnvGatewayCAFile    = "INFERA_GATEWAY_CA_FILE"
)

// gatewayClient calls infera-gateway's REST API and decodes its protojson
// answers into the generated types of apis/proto/infera/v1.
type gatewayClient struct {
	base *url.URL
	hc   *http.Client
}

// gatewayOptions are the gateway flags after the environment is applied.
type gatewayOptions struct {
	URL       string
	TokenFile string
	CAFile    string
}

func (o *gatewayOptions) complete() {
	if o.URL == "" {
		o.URL = os.Getenv(EnvGateway)
	}
	if o.TokenFile == "" {
		o.TokenFile = os.Getenv(EnvGatewayTokenFile)
	}
	if o.CAFile == "" {
		o.CAFile = os.Getenv(EnvGatewayCAFile)
	}
}

// newGatewayClient builds the client. The caller is authenticated by a
// bearer token, the only credential the gateway checks (TokenReview): the
// token file when given, else the token of the kubeconfig's user (a static
// token, a token file, an exec plugin or an auth provider). A kubeconfig
// that authenticates with a client certificate has no token to send, which
// is an error that says what to do. Impersonation (--as) cannot pass
// through the gateway: it decides as the token's owner.
func newGatewayClient(o gatewayOptions, kube *rest.Config) (*gatewayClient, error) {
	u, err := url.Parse(o.URL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, errf(ExitUsage, "Give the gateway's base URL, e.g. http://127.0.0.1:8090.", "--gateway %q is not an http(s) URL", o.URL)
	}
	base := http.DefaultTransport.(*http.Transport).Clone()
	if o.CAFile != "" {
		pem, err := os.ReadFile(o.CAFile)
		if err != nil {
			return nil, errf(ExitUsage, "", "failed to read --gateway-certificate-authority: %v", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, errf(ExitUsage, "", "--gateway-certificate-authority %s holds no PEM certificate", o.CAFile)
		}
		base.TLSClientConfig = &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
	}
	var rt http.RoundTripper
	switch {
	case o.TokenFile != "":
		b, err := os.ReadFile(o.TokenFile)
		if err != nil {
			return nil, errf(ExitUsage, "", "failed to read the gateway token file: %v", err)
		}
		rt = bearer{token: strings.TrimSpace(string(b)), next: base}
	case kube == nil:
		return nil, errf(ExitNoGateway, hintKubeconfig, "no credentials for infera-gateway: no kubeconfig and no --gateway-token-file")
	case kube.Impersonate.UserName != "" || len(kube.Impersonate.Groups) > 0:
		return nil, errf(ExitUsage,
			"Drop --as to use the gateway as yourself, or leave the gateway out (no --gateway, no INFERA_GATEWAY) to read through the API server as the impersonated user.",
			"--as cannot be used with infera-gateway: the gateway authorizes the owner of the bearer token and does not impersonate")
	case kube.BearerToken == "" && kube.BearerTokenFile == "" && kube.ExecProvider == nil && kube.AuthProvider == nil:
		return nil, errf(ExitForbidden,
			"Pass a token for the gateway with --gateway-token-file FILE (or INFERA_GATEWAY_TOKEN_FILE), e.g. one from\n"+
				"  kubectl create token <serviceaccount> > token   (for `make run`: .run/gateway-token)",
			"your kubeconfig has no bearer token (it authenticates with a client certificate or basic auth), and infera-gateway accepts only bearer tokens")
	default:
		c := rest.AnonymousClientConfig(kube)
		c.BearerToken, c.BearerTokenFile, c.ExecProvider, c.AuthProvider = kube.BearerToken, kube.BearerTokenFile, kube.ExecProvider, kube.AuthProvider
		c.AuthConfigPersister = kube.AuthConfigPersister
		w, err := rest.HTTPWrappersForConfig(c, base)
		if err != nil {
			return nil, fmt.Errorf("failed to take the bearer token from the kubeconfig: %w", err)
		}
		rt = w
	}
	return &gatewayClient{base: u, hc: &http.Client{Transport: rt}}, nil
}

type bearer struct {
	token string
	next  http.RoundTripper
}

func (b bearer) RoundTrip(r *http.Request) (*http.Response, error) {
	r = r.Clone(r.Context())
	r.Header.Set("Authorization", "Bearer "+b.token)
	return b.next.RoundTrip(r)
}

func (g *gatewayClient) url(path string, q url.Values) string {
	u := *g.base
	u.Path = strings.TrimSuffix(u.Path, "/") + path
	u.RawQuery = q.Encode()
	return u.String()
}

// call sends one request and decodes the answer into out.
func (g *gatewayClient) call(ctx context.Context, method, path string, q url.Values, in, out proto.Message) error {
	var body []byte
	if in != nil {
		b, err := protojson.Marshal(in)
		if err != nil {
			return err
		}
		body = b
	}
	return g.do(ctx, method, path, q, body, out)
}

// callJSON sends a body that is not one of this build's proto messages (a
// route newer than the generated types) and decodes the answer into out.
func (g *gatewayClient) callJSON(ctx context.Context, method, path string, in any, out proto.Message) error {
	b, err := json.Marshal(in)
	if err != nil {
		return err
	}
	return g.do(ctx, method, path, nil, b, out)
}

// serves reports whether the gateway's OpenAPI document (served without
// authentication) has the operation, so commands for routes a gateway may
// not have yet can say so instead of failing on a 404.
func (g *gatewayClient) serves(ctx context.Context, method, path string) (bool, error) {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, g.url("/api/v1/openapi.json", nil), nil)
	if err != nil {
		return false, err
	}
	resp, err := g.hc.Do(req)
	if err != nil {
		return false, g.unreachable(err)
	}
	defer func() { _ = resp.Body.Close() }()
	raw, err := io.ReadAll(io.LimitReader(resp.Body, 16<<20))
	if err != nil {
		return false, g.unreachable(err)
	}
	if resp.StatusCode != http.StatusOK {
		return false, g.httpError(resp.StatusCode, raw)
	}
	var doc struct {
		Paths map[string]map[string]json.RawMessage `json:"paths"`
	}
	if err := json.Unmarshal(raw, &doc); err != nil {
		return false, fmt.Errorf("failed to read the gateway's OpenAPI document: %w", err)
	}
	_, ok := doc.Paths[path][strings.ToLower(method)]
	return ok, nil
}

func (g *gatewayClient) do(ctx context.Context, method, path string, q url.Values, in []byte, out proto.Message) error {
	var body io.Reader
	if in != nil {
		body = bytes.NewReader(in)
	}
	ctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, method, g.url(path, q), body)
	if err != nil {
		return err
	}
	req.Header.Set("Accept", "application/json")
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := g.hc.Do(req)
	if err != nil {
		return g.unreachable(err)
	}
	defer func() { _ = resp.Body.Close() }()
	raw, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return g.unreachable(err)
	}
	if resp.StatusCode != http.StatusOK {
		return g.httpError(resp.StatusCode, raw)
	}
	if err := (protojson.UnmarshalOptions{DiscardUnknown: true}).Unmarshal(raw, out); err != nil {
		return fmt.Errorf("failed to decode the gateway's answer to %s %s: %w", method, path, err)
	}
	return nil
}

func (g *gatewayClient) unreachable(err error) error {
	return &Error{Code: ExitNoGateway, Msg: fmt.Sprintf("cannot reach infera-gateway at %s: %v", g.base, err), Hint: hintGateway, Err: err}
}

// httpError maps the gateway's {"code","message"} errors onto exit codes.
func (g *gatewayClient) httpError(code int, raw []byte) error {
	var st struct {
		Code    int    `json:"code"`
		Message string `json:"message"`
	}
	msg := strings.TrimSpace(string(raw))
	if json.Unmarshal(raw, &st) == nil && st.Message != "" {
		msg = st.Message
	}
	// gRPC FAILED_PRECONDITION (9): the gateway cannot serve this here,
	// e.g. it is not configured to reach the agents.
	if st.Code == 9 {
		return errf(ExitNotAvailable, "", "infera-gateway cannot serve this: %s", msg)
	}
	switch code {
	case http.StatusUnauthorized:
		return errf(ExitForbidden, "Your token is missing, expired or not valid for this cluster; get a fresh one (e.g. kubectl create token <serviceaccount>).",
			"infera-gateway did not authenticate you: %s", msg)
	case http.StatusForbidden:
		return errf(ExitForbidden, hintRoles, "permission denied by infera-gateway: %s", msg)
	case http.StatusNotFound:
		if strings.Contains(msg, "Not Found") || msg == "" {
			return errf(ExitNoGateway, "Check that --gateway points at infera-gateway (its /api/v1 answered 404).", "%s is not infera-gateway: %s", g.base, msg)
		}
		return errf(ExitNotFound, "", "%s", msg)
	case http.StatusBadRequest:
		return errf(ExitUsage, "", "infera-gateway rejected the request: %s", msg)
	}
	return fmt.Errorf("infera-gateway answered %d: %s", code, msg)
}

// fleet, nodes, pods: the read calls. Lists follow every page.

func (g *gatewayClient) fleet(ctx context.Context) (*inferav1.Fleet, error) {
	out := &inferav1.Fleet{}
	return out, g.call(ctx, http.MethodGet, "/api/v1/fleet", nil, nil, out)
}

func (g *gatewayClient) savings(ctx context.Context) (*inferav1.Savings, error) {
	out := &inferav1.Savings{}
	return out, g.call(ctx, http.MethodGet, "/api/v1/savings", nil, nil, out)
}

func (g *gatewayClient) node(ctx context.Context, name string) (*inferav1.NodeView, error) {
	out := &inferav1.NodeView{}
	return out, g.call(ctx, http.MethodGet, "/api/v1/nodes/"+url.PathEscape(name), nil, nil, out)
}

func (g *gatewayClient) nodes(ctx context.Context, selector string) ([]*inferav1.NodeView, error) {
	var all []*inferav1.NodeView
	q := url.Values{"pageSize": {"500"}}
	if selector != "" {
		q.Set("labelSelector", selector)
	}
	for {
		out := &inferav1.ListNodesResponse{}
		if err := g.call(ctx, http.MethodGet, "/api/v1/nodes", q, nil, out); err != nil {
			return nil, err
		}
		all = append(all, out.GetNodes()...)
		if out.GetNextPageToken() == "" {
			return all, nil
		}
		q.Set("pageToken", out.GetNextPageToken())
	}
}

func (g *gatewayClient) nodePods(ctx context.Context, node, tier string) ([]*inferav1.ClusterPod, error) {
	var all []*inferav1.ClusterPod
	q := url.Values{"pageSize": {"500"}}
	if tier != "" {
		q.Set("tier", tier)
	}
	for {
		out := &inferav1.ListNodePodsResponse{}
		if err := g.call(ctx, http.MethodGet, "/api/v1/nodes/"+url.PathEscape(node)+"/pods", q, nil, out); err != nil {
			return nil, err
		}
		all = append(all, out.GetPods()...)
		if out.GetNextPageToken() == "" {
			return all, nil
		}
		q.Set("pageToken", out.GetNextPageToken())
	}
}

func (g *gatewayClient) explain(ctx context.Context, ns, name string) (*inferav1.TierExplanation, error) {
	out := &inferav1.TierExplanation{}
	return out, g.call(ctx, http.MethodGet, "/api/v1/namespaces/"+url.PathEscape(ns)+"/pods/"+url.PathEscape(name)+":explainTier", nil, nil, out)
}

func (g *gatewayClient) setNodeSafeMode(ctx context.Context, node string, on, force bool, reason string) (*inferav1.SafeModeResult, error) {
	out := &inferav1.SafeModeResult{}
	return out, g.call(ctx, http.MethodPost, "/api/v1/nodes/"+url.PathEscape(node)+":setSafeMode", nil,
		&inferav1.SetNodeSafeModeRequest{Enabled: on, Reason: reason, Force: force}, out)
}

func (g *gatewayClient) setSafeMode(ctx context.Context, selector string, on, force bool, reason string) (*inferav1.SetSafeModeResponse, error) {
	out := &inferav1.SetSafeModeResponse{}
	return out, g.call(ctx, http.MethodPost, "/api/v1/nodes:setSafeMode", nil,
		&inferav1.SetSafeModeRequest{LabelSelector: selector, Enabled: on, Reason: reason, Force: force}, out)
}

// watchEvents reads the NDJSON stream until ctx ends or the stream does,
// handing each event to fn.
func (g *gatewayClient) watchEvents(ctx context.Context, node string, fn func(*inferav1.ClusterEvent) error) error {
	q := url.Values{}
	if node != "" {
		q.Set("node", node)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, g.url("/api/v1/events", q), nil)
	if err != nil {
		return err
	}
	resp, err := g.hc.Do(req)
	if err != nil {
		if ctx.Err() != nil {
			return nil
		}
		return g.unreachable(err)
	}
	defer func() { _ = resp.Body.Close() }()
	if resp.StatusCode != http.StatusOK {
		raw, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
		return g.httpError(resp.StatusCode, raw)
	}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		var line struct {
			Result json.RawMessage `json:"result"`
			Error  *struct {
				Message string `json:"message"`
			} `json:"error"`
		}
		if err := json.Unmarshal(sc.Bytes(), &line); err != nil {
			return fmt.Errorf("failed to decode an event line %q: %w", sc.Text(), err)
		}
		if line.Error != nil {
			return fmt.Errorf("infera-gateway ended the event stream: %s", line.Error.Message)
		}
		ev := &inferav1.ClusterEvent{}
		if err := (protojson.UnmarshalOptions{DiscardUnknown: true}).Unmarshal(line.Result, ev); err != nil {
			return fmt.Errorf("failed to decode an event %s: %w", line.Result, err)
		}
		if err := fn(ev); err != nil {
			return err
		}
	}
	if err := sc.Err(); err != nil && ctx.Err() == nil && !errors.Is(err, context.Canceled) {
		return g.unreachable(err)
	}
	return nil
}
