package inferactl

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/go-logr/logr"
	"github.com/google/go-cmp/cmp"
	authnv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"k8s.io/cli-runtime/pkg/genericiooptions"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"

	"github.com/infera-io/temper/gateway"
	"github.com/infera-io/temper/inferactl"
	"github.com/infera-io/temper/test/envtest"
)

var update = flag.Bool("update", false, "rewrite the golden files under testdata/")

// Callers: ServiceAccounts in callerNS; each gets a token kubeconfig.
const (
	callerNS = "cli-callers"
	viewer   = "viewer"   // infera-viewer
	operator = "operator" // infera-operator
	nobody   = "nobody"   // no role
)

var (
	env         *envtest.Env
	kube        kubernetes.Interface
	gw          *httptest.Server
	kubeconfigs = map[string]string{} // caller → kubeconfig path; "admin" is envtest's client-certificate admin
	tmp         string
)

func TestMain(m *testing.M) {
	flag.Parse()
	e, err := envtest.Start(envtest.Options{PriorityClasses: true})
	if err != nil {
		fmt.Fprintf(os.Stderr, "envtest: %v\n", err)
		os.Exit(1)
	}
	env = e
	ctx, cancel := context.WithCancel(context.Background())
	code := 1
	if err := setup(ctx); err != nil {
		fmt.Fprintf(os.Stderr, "inferactl suite setup: %v\n", err)
	} else {
		code = m.Run()
	}
	cancel()
	if gw != nil {
		gw.Close()
	}
	_ = os.RemoveAll(tmp)
	if err := e.Stop(); err != nil {
		fmt.Fprintf(os.Stderr, "envtest: %v\n", err)
	}
	os.Exit(code)
}

func setup(ctx context.Context) error {
	var err error
	if tmp, err = os.MkdirTemp("", "inferactl-test-"); err != nil {
		return err
	}
	if kube, err = kubernetes.NewForConfig(env.Config); err != nil {
		return err
	}
	for _, ns := range []string{"infera-system", callerNS, "shop"} {
		if _, err := kube.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{}); err != nil {
			return err
		}
	}
	dir := filepath.Join(env.Root, "config", "rbac", "gateway")
	if err := applyManifests(ctx, filepath.Join(dir, "role.yaml"), filepath.Join(dir, "service_account.yaml"),
		filepath.Join(dir, "role_binding.yaml"), filepath.Join(dir, "user_roles.yaml")); err != nil {
		return err
	}
	kubeconfigs["admin"] = env.Kubeconfig
	roles := map[string]string{viewer: "infera-viewer", operator: "infera-operator"}
	for _, sa := range []string{viewer, operator, nobody} {
		if _, err := kube.CoreV1().ServiceAccounts(callerNS).Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: sa}}, metav1.CreateOptions{}); err != nil {
			return err
		}
		if role, ok := roles[sa]; ok {
			if _, err := kube.RbacV1().ClusterRoleBindings().Create(ctx, &rbacv1.ClusterRoleBinding{
				ObjectMeta: metav1.ObjectMeta{Name: "cli-test-" + sa},
				RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: role},
				Subjects:   []rbacv1.Subject{{Kind: rbacv1.ServiceAccountKind, Name: sa, Namespace: callerNS}},
			}, metav1.CreateOptions{}); err != nil {
				return err
			}
		}
		tok, err := token(ctx, callerNS, sa)
		if err != nil {
			return err
		}
		if kubeconfigs[sa], err = writeKubeconfig(sa, tok); err != nil {
			return err
		}
	}
	if err := seed(ctx); err != nil {
		return err
	}
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
	g, err := gateway.New(gateway.Options{Config: cfg, RestConfig: rc, Log: logr.Discard(), AuditWriter: io.Discard})
	if err != nil {
		return err
	}
	if err := g.Start(ctx); err != nil {
		return err
	}
	gw = httptest.NewServer(g.Handler())
	return nil
}

func token(ctx context.Context, ns, name string) (string, error) {
	exp := int64(3600)
	tr, err := kube.CoreV1().ServiceAccounts(ns).CreateToken(ctx, name, &authnv1.TokenRequest{
		Spec: authnv1.TokenRequestSpec{ExpirationSeconds: &exp}}, metav1.CreateOptions{})
	if err != nil {
		return "", fmt.Errorf("TokenRequest for %s/%s: %w", ns, name, err)
	}
	return tr.Status.Token, nil
}

// writeKubeconfig writes a bearer-token kubeconfig for a caller.
func writeKubeconfig(user, tok string) (string, error) {
	c := clientcmdapi.NewConfig()
	c.Clusters["envtest"] = &clientcmdapi.Cluster{Server: env.Config.Host, CertificateAuthorityData: env.Config.CAData}
	c.AuthInfos[user] = &clientcmdapi.AuthInfo{Token: tok}
	c.Contexts[user] = &clientcmdapi.Context{Cluster: "envtest", AuthInfo: user, Namespace: "default"}
	c.CurrentContext = user
	p := filepath.Join(tmp, user+".kubeconfig")
	return p, clientcmd.WriteToFile(*c, p)
}

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

// The fleet: cli-n1 enforcing with a fresh tier-load and a priority
// mapping that moves the critical threshold; cli-n2 observe-only (pool b);
// cli-n3 refused (pool b); cli-n4 in safe mode owned by an InferaPolicy.
func seed(ctx context.Context) error {
	now := time.Now().UTC().Format(time.RFC3339)
	nodes := []struct {
		name   string
		labels map[string]string
		ann    map[string]string
	}{
		{"cli-n1", map[string]string{"pool": "a"}, map[string]string{
			"infera.io/agent-status": "enforcing/cgroup",
			"infera.io/tier-load": `{"v":1,"ts":"` + now + `","gen":7,"backend":"cgroup","allocatableMilli":4000,"fencedMilli":2000,` +
				`"tiers":{"critical":{"pods":1,"requestMilli":1000,"limitMilli":1000},"normal":{"pods":3,"requestMilli":950,"limitMilli":0},` +
				`"low":{"pods":1,"requestMilli":100,"limitMilli":0},"background":{"pods":1,"requestMilli":200,"limitMilli":0}}}`}},
		{"cli-n2", map[string]string{"pool": "b"}, map[string]string{"infera.io/agent-status": "observe-only"}},
		{"cli-n3", map[string]string{"pool": "b"}, map[string]string{"infera.io/agent-status": "refused: kernel has no sched_ext"}},
		{"cli-n4", map[string]string{"pool": "c"}, map[string]string{"infera.io/agent-status": "safe-mode",
			"infera.io/safe-mode-requested": "true", "infera.io/safe-mode-requested-by": "maintenance"}},
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
			Addresses:   []corev1.NodeAddress{{Type: corev1.NodeInternalIP, Address: "10.0.0." + n.name[len(n.name)-1:]}},
		}
		if _, err := kube.CoreV1().Nodes().UpdateStatus(ctx, created, metav1.UpdateOptions{}); err != nil {
			return err
		}
	}
	pods := []*corev1.Pod{
		pod("default", "crit", "cli-n1", "infera-critical", nil, "1"),
		pod("default", "norm", "cli-n1", "", nil, "500m"),
		pod("default", "volunteer", "cli-n1", "infera-high", map[string]string{"infera.io/tier": "background"}, "200m"),
		pod("default", "climber", "cli-n1", "infera-low", map[string]string{"infera.io/tier": "critical"}, "100m"),
		pod("shop", "deflated", "cli-n1", "infera-normal", map[string]string{"infera.io/original-cpu-requests": `{"app":"1"}`}, "250m"),
		pod("shop", "cart", "cli-n2", "infera-high", nil, "300m"),
		pod("shop", "pending", "", "infera-high", nil, "300m"),
	}
	for _, p := range pods {
		if _, err := kube.CoreV1().Pods(p.Namespace).Create(ctx, p, metav1.CreateOptions{}); err != nil {
			return err
		}
	}
	return nil
}

func pod(ns, name, node, class string, ann map[string]string, cpu string) *corev1.Pod {
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns, Annotations: ann},
		Spec: corev1.PodSpec{NodeName: node, PriorityClassName: class, Containers: []corev1.Container{{
			Name: "app", Image: "registry.invalid/app",
			Resources: corev1.ResourceRequirements{Requests: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse(cpu)}},
		}}},
	}
}

// result is one run of the command line.
type result struct {
	code           int
	stdout, stderr string
}

// run runs inferactl in process as the caller ("" runs without
// --kubeconfig); viaGateway adds --gateway.
func run(t *testing.T, who string, viaGateway bool, args ...string) result {
	t.Helper()
	var full []string
	if who != "" {
		full = append(full, "--kubeconfig", kubeconfigs[who])
	}
	if viaGateway {
		full = append(full, "--gateway", gw.URL)
	}
	full = append(full, args...)
	var out, errb bytes.Buffer
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	code := inferactl.Run(ctx, "inferactl", full, genericiooptions.IOStreams{In: strings.NewReader(""), Out: &out, ErrOut: &errb})
	return result{code: code, stdout: out.String(), stderr: errb.String()}
}

// golden compares got with testdata/name, or rewrites it with -update.
func golden(t *testing.T, name, got string) {
	t.Helper()
	p := filepath.Join("testdata", name)
	if *update {
		if err := os.WriteFile(p, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(p)
	if err != nil {
		t.Fatalf("%v (run go test ./test/integration/inferactl -update)", err)
	}
	if d := cmp.Diff(string(want), got); d != "" {
		t.Errorf("output differs from %s (-golden +got; rerun with -update if intended):\n%s", p, d)
	}
}

func mustOK(t *testing.T, r result, what string) {
	t.Helper()
	if r.code != 0 {
		t.Fatalf("%s: exit %d, stderr:\n%s\nstdout:\n%s", what, r.code, r.stderr, r.stdout)
	}
}

// adminToken is a TokenRequest token of a ServiceAccount bound to
// cluster-admin (envtest's own admin uses a client certificate).
func adminToken(t *testing.T) string {
	t.Helper()
	ctx := t.Context()
	if _, err := kube.CoreV1().ServiceAccounts(callerNS).Get(ctx, "admin", metav1.GetOptions{}); err != nil {
		if _, err := kube.CoreV1().ServiceAccounts(callerNS).Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: "admin"}}, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		if _, err := kube.RbacV1().ClusterRoleBindings().Create(ctx, &rbacv1.ClusterRoleBinding{
			ObjectMeta: metav1.ObjectMeta{Name: "cli-test-admin"},
			RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: "cluster-admin"},
			Subjects:   []rbacv1.Subject{{Kind: rbacv1.ServiceAccountKind, Name: "admin", Namespace: callerNS}},
		}, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	tok, err := token(ctx, callerNS, "admin")
	if err != nil {
		t.Fatal(err)
	}
	return tok
}
