package gateway

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-logr/logr"
	authnv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	configv1alpha1 "github.com/infera-io/temper/apis/config/v1alpha1"
	"github.com/infera-io/temper/gateway"
	"github.com/infera-io/temper/test/envtest"
	"github.com/infera-io/temper/test/kubeletlogs"
)

// Callers: ServiceAccounts in callerNS with these roles.
const (
	callerNS     = "gw-callers"
	viewer       = "viewer"        // infera-viewer
	operator     = "operator"      // infera-operator
	nobody       = "nobody"        // no role at all
	safeModeOnly = "safemode-only" // update safemodes.infera.io, but no patch on core Nodes
)

var (
	env    *envtest.Env
	kube   kubernetes.Interface
	server *httptest.Server
	audit  = &syncBuffer{}
	tokens = map[string]string{}
	// The suite gateway's agents configuration and API-server identity,
	// for tests that build a second gateway.
	gatewayAgents *configv1alpha1.GatewayAgents
	gatewayRest   *rest.Config
	// kubelet serves the container logs of gw-n1's pods.
	kubelet *kubeletlogs.Server
)

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func TestMain(m *testing.M) {
	// The stand-in kubelet that serves the pods' logs (pods/log), before
	// the API server, which must trust its CA.
	kubeletDir, err := os.MkdirTemp("", "gateway-kubelet-")
	if err != nil {
		fmt.Fprintf(os.Stderr, "kubelet: %v\n", err)
		os.Exit(1)
	}
	if kubelet, err = kubeletlogs.Start(kubeletDir); err != nil {
		fmt.Fprintf(os.Stderr, "kubelet: %v\n", err)
		os.Exit(1)
	}
	e, err := envtest.Start(envtest.Options{PriorityClasses: true,
		APIServerArgs: map[string]string{"kubelet-certificate-authority": kubelet.CA}})
	if err != nil {
		fmt.Fprintf(os.Stderr, "envtest: %v\n", err)
		os.Exit(1)
	}
	env = e
	ctx, cancel := context.WithCancel(context.Background())
	code := 1
	if err := setup(ctx); err != nil {
		fmt.Fprintf(os.Stderr, "gateway suite setup: %v\n", err)
	} else {
		code = m.Run()
	}
	cancel()
	if tree != nil {
		tree.Stop()
	}
	if server != nil {
		server.Close()
	}
	if err := e.Stop(); err != nil {
		fmt.Fprintf(os.Stderr, "envtest: %v\n", err)
	}
	if tmpDir != "" {
		_ = os.RemoveAll(tmpDir)
	}
	_ = kubelet.Close()
	_ = os.RemoveAll(kubeletDir)
	os.Exit(code)
}

// applyManifests creates every object of the YAML files as the admin.
func applyManifests(ctx context.Context, files ...string) error {
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			return err
		}
		dec := utilyaml.NewYAMLOrJSONDecoder(bytes.NewReader(b), 4096)
		for {
			var u unstructured.Unstructured
			if err := dec.Decode(&u.Object); err != nil {
				if errors.Is(err, io.EOF) {
					break
				}
				return fmt.Errorf("%s: %w", f, err)
			}
			if len(u.Object) == 0 {
				continue
			}
			if err := env.Client.Create(ctx, &u); err != nil {
				return fmt.Errorf("%s: create %s %s: %w", f, u.GetKind(), u.GetName(), err)
			}
		}
	}
	return nil
}

func token(ctx context.Context, ns, name string) (string, error) {
	tr, err := kube.CoreV1().ServiceAccounts(ns).CreateToken(ctx, name, &authnv1.TokenRequest{
		Spec: authnv1.TokenRequestSpec{ExpirationSeconds: ptr(int64(3600))}}, metav1.CreateOptions{})
	if err != nil {
		return "", fmt.Errorf("TokenRequest for %s/%s: %w", ns, name, err)
	}
	return tr.Status.Token, nil
}

func ptr[T any](v T) *T { return &v }

func setup(ctx context.Context) error {
	cs, err := kubernetes.NewForConfig(env.Config)
	if err != nil {
		return err
	}
	kube = cs
	for _, ns := range []string{"infera-system", callerNS} {
		if _, err := kube.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{}); err != nil {
			return err
		}
	}
	dir := filepath.Join(env.Root, "config", "rbac", "gateway")
	if err := applyManifests(ctx, filepath.Join(dir, "role.yaml"), filepath.Join(dir, "service_account.yaml"),
		filepath.Join(dir, "role_binding.yaml"), filepath.Join(dir, "user_roles.yaml")); err != nil {
		return err
	}
	// safemode-only may ask the gateway for safe mode but may not patch
	// Nodes itself: the impersonated patch must fail for it.
	if _, err := kube.RbacV1().ClusterRoles().Create(ctx, &rbacv1.ClusterRole{
		ObjectMeta: metav1.ObjectMeta{Name: "gw-test-safemode-only"},
		Rules: []rbacv1.PolicyRule{{APIGroups: []string{"infera.io"}, Resources: []string{"safemodes"}, Verbs: []string{"update"}},
			{APIGroups: []string{"infera.io"}, Resources: []string{"nodes"}, Verbs: []string{"get"}}},
	}, metav1.CreateOptions{}); err != nil {
		return err
	}
	roles := map[string]string{viewer: "infera-viewer", operator: "infera-operator", safeModeOnly: "gw-test-safemode-only"}
	for _, sa := range []string{viewer, operator, nobody, safeModeOnly} {
		if _, err := kube.CoreV1().ServiceAccounts(callerNS).Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: sa}}, metav1.CreateOptions{}); err != nil {
			return err
		}
		if role, ok := roles[sa]; ok {
			if _, err := kube.RbacV1().ClusterRoleBindings().Create(ctx, &rbacv1.ClusterRoleBinding{
				ObjectMeta: metav1.ObjectMeta{Name: "gw-test-" + sa},
				RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: role},
				Subjects:   []rbacv1.Subject{{Kind: rbacv1.ServiceAccountKind, Name: sa, Namespace: callerNS}},
			}, metav1.CreateOptions{}); err != nil {
				return err
			}
		}
		if tokens[sa], err = token(ctx, callerNS, sa); err != nil {
			return err
		}
	}
	if err := seedFleet(ctx); err != nil {
		return err
	}

	// The gateway runs as its own ServiceAccount with only the generated
	// role: whatever it does beyond that must be as the caller.
	gwToken, err := token(ctx, "infera-system", "infera-gateway")
	if err != nil {
		return err
	}
	rc := &rest.Config{Host: env.Config.Host, BearerToken: gwToken, TLSClientConfig: rest.TLSClientConfig{CAData: env.Config.CAData}, QPS: 200, Burst: 400}
	cfg, err := gateway.LoadConfig("")
	if err != nil {
		return err
	}
	cfg.AuthCacheTTL = &metav1.Duration{Duration: time.Second}
	if cfg.Agents, err = startAgents(ctx, gwToken); err != nil {
		return err
	}
	gatewayAgents, gatewayRest = cfg.Agents, rc
	g, err := gateway.New(gateway.Options{Config: cfg, RestConfig: rc, Log: logr.Discard(), AuditWriter: audit})
	if err != nil {
		return err
	}
	if err := g.Start(ctx); err != nil {
		return err
	}
	server = httptest.NewServer(g.Handler())
	return nil
}

// Fixture nodes: gw-n1 enforcing with a fresh tier-load, gw-n2 and gw-n3 in
// pool b (observe-only, no tier-load), gw-n4 with a broken agent-status.
func seedFleet(ctx context.Context) error {
	now := time.Now().UTC().Format(time.RFC3339)
	nodes := []struct {
		name   string
		labels map[string]string
		ann    map[string]string
	}{
		{"gw-n1", map[string]string{"pool": "a"}, map[string]string{
			"infera.io/agent-status": "enforcing/cgroup",
			"infera.io/tier-load": `{"v":1,"ts":"` + now + `","gen":7,"backend":"cgroup","allocatableMilli":4000,"fencedMilli":2000,` +
				`"tiers":{"critical":{"pods":1,"requestMilli":2000,"limitMilli":2000},"normal":{"pods":2,"requestMilli":500,"limitMilli":0}}}`}},
		{"gw-n2", map[string]string{"pool": "b"}, map[string]string{"infera.io/agent-status": "observe-only"}},
		{"gw-n3", map[string]string{"pool": "b"}, map[string]string{"infera.io/agent-status": "refused: kernel has no sched_ext"}},
		{"gw-n4", map[string]string{"pool": "c"}, map[string]string{"infera.io/agent-status": "bogus"}},
	}
	for _, n := range nodes {
		node := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: n.name, Labels: n.labels, Annotations: n.ann}}
		created, err := kube.CoreV1().Nodes().Create(ctx, node, metav1.CreateOptions{})
		if err != nil {
			return err
		}
		created.Status = corev1.NodeStatus{
			Capacity:    corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("4"), corev1.ResourcePods: resource.MustParse("110")},
			Allocatable: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("4"), corev1.ResourcePods: resource.MustParse("110")},
			Conditions:  []corev1.NodeCondition{{Type: corev1.NodeReady, Status: corev1.ConditionTrue, LastHeartbeatTime: metav1.Now(), LastTransitionTime: metav1.Now()}},
		}
		// Where the gateway looks for each node's agent (NodeAddress
		// discovery, agents_setup_test.go): gw-n1 an address nobody
		// answers on, gw-n2 refused, gw-n3 hung, gw-n4 none at all.
		switch n.name {
		case "gw-n1":
			created.Status.Addresses = []corev1.NodeAddress{{Type: corev1.NodeInternalIP, Address: "10.0.0.1"}}
			kubelet.Point(created) // its pods' logs
		case "gw-n2", "gw-n3":
			created.Status.Addresses = []corev1.NodeAddress{{Type: corev1.NodeInternalIP, Address: "127.0.0." + n.name[len(n.name)-1:]}}
		}
		if _, err := kube.CoreV1().Nodes().UpdateStatus(ctx, created, metav1.UpdateOptions{}); err != nil {
			return err
		}
	}
	pods := []*corev1.Pod{
		pod("crit", "infera-critical", nil, "1"),
		pod("norm", "", nil, "500m"),
		pod("volunteer", "infera-high", map[string]string{"infera.io/tier": "background"}, "200m"),
		pod("climber", "infera-low", map[string]string{"infera.io/tier": "critical"}, "100m"),
		pod("deflated", "infera-normal", map[string]string{"infera.io/original-cpu-requests": `{"app":"1"}`}, "250m"),
	}
	for _, p := range pods {
		if _, err := kube.CoreV1().Pods("default").Create(ctx, p, metav1.CreateOptions{}); err != nil {
			return err
		}
	}
	return nil
}

func pod(name, class string, ann map[string]string, cpu string) *corev1.Pod {
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "default", Annotations: ann},
		Spec: corev1.PodSpec{NodeName: "gw-n1", PriorityClassName: class, Containers: []corev1.Container{{
			Name: "app", Image: "registry.invalid/app",
			Resources: corev1.ResourceRequirements{Requests: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse(cpu)}},
		}}},
	}
}

// call sends a request as the named caller ("" sends no token) and decodes
// the JSON answer.
func call(t *testing.T, who, method, path, body string) (int, map[string]any) {
	t.Helper()
	code, raw := callRaw(t, who, method, path, body)
	var out map[string]any
	if err := json.Unmarshal(raw, &out); err != nil {
		t.Fatalf("%s %s as %q: decoding %q: %v", method, path, who, raw, err)
	}
	return code, out
}

func callRaw(t *testing.T, who, method, path, body string) (int, []byte) {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), method, server.URL+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if who != "" {
		req.Header.Set("Authorization", "Bearer "+tokens[who])
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, raw
}
