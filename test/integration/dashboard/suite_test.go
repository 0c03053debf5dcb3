package dashboard

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
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

	"github.com/infera-io/temper/gateway"
	"github.com/infera-io/temper/test/envtest"
	"github.com/infera-io/temper/test/kubeletlogs"
)

// Callers: ServiceAccounts in callerNS bound to the shipped roles.
const (
	callerNS = "dash-callers"
	viewer   = "viewer"   // infera-viewer
	operator = "operator" // infera-operator
	nobody   = "nobody"   // no role
)

var (
	env      *envtest.Env
	kube     kubernetes.Interface
	server   *httptest.Server
	tokens   = map[string]string{}
	chromium string
	shots    string
	// kubelet serves the container logs of dash-n1's pods.
	kubelet *kubeletlogs.Server
)

func TestMain(m *testing.M) {
	if os.Getenv("TEMPER_TEST_DASHBOARD") == "" {
		// The tests skip; no control plane is started for nothing.
		os.Exit(m.Run())
	}
	os.Exit(run(m))
}

func run(m *testing.M) int {
	var err error
	if chromium, err = findChromium(); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	shots = os.Getenv("DASHBOARD_SCREENSHOTS")
	if shots == "" {
		shots = filepath.Join(os.TempDir(), "temper-dashboard-screenshots")
	}
	if err := os.MkdirAll(shots, 0o755); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	// The stand-in kubelet that serves dash-n1's container logs
	// (pods/log), before the API server, which must trust its CA.
	kubeletDir, err := os.MkdirTemp("", "dashboard-kubelet-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(kubeletDir)
	if kubelet, err = kubeletlogs.Start(kubeletDir); err != nil {
		fmt.Fprintf(os.Stderr, "kubelet: %v\n", err)
		return 1
	}
	defer kubelet.Close()
	e, err := envtest.Start(envtest.Options{PriorityClasses: true,
		APIServerArgs: map[string]string{"kubelet-certificate-authority": kubelet.CA}})
	if err != nil {
		fmt.Fprintf(os.Stderr, "envtest: %v\n", err)
		return 1
	}
	env = e
	ctx, cancel := context.WithCancel(context.Background())
	code := 1
	if err := setup(ctx); err != nil {
		fmt.Fprintf(os.Stderr, "dashboard suite setup: %v\n", err)
	} else {
		code = m.Run()
	}
	if server != nil {
		server.CloseClientConnections()
		server.Close()
	}
	cancel()
	if err := e.Stop(); err != nil {
		fmt.Fprintf(os.Stderr, "envtest: %v\n", err)
	}
	return code
}

func findChromium() (string, error) {
	if p := os.Getenv("CHROMIUM"); p != "" {
		return p, nil
	}
	for _, n := range []string{"chromium", "chromium-browser", "google-chrome"} {
		if p, err := exec.LookPath(n); err == nil {
			return p, nil
		}
	}
	return "", errors.New("no chromium: install Debian's chromium (apt-get install -y chromium; .ci/run does) or set CHROMIUM")
}

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
	// The operator also reads core Pods, Events and logs, as people with
	// the built-in "view" role do (that role is aggregated, and envtest
	// runs no aggregation controller); the viewer does not.
	if _, err := kube.RbacV1().ClusterRoles().Create(ctx, &rbacv1.ClusterRole{
		ObjectMeta: metav1.ObjectMeta{Name: "dash-test-core-reader"},
		Rules: []rbacv1.PolicyRule{{APIGroups: []string{""}, Resources: []string{"pods", "events"}, Verbs: []string{"get", "list"}},
			{APIGroups: []string{""}, Resources: []string{"pods/log"}, Verbs: []string{"get"}}},
	}, metav1.CreateOptions{}); err != nil {
		return err
	}
	if _, err := kube.RbacV1().ClusterRoleBindings().Create(ctx, &rbacv1.ClusterRoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: "dash-test-operator-core-reader"},
		RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: "dash-test-core-reader"},
		Subjects:   []rbacv1.Subject{{Kind: rbacv1.ServiceAccountKind, Name: operator, Namespace: callerNS}},
	}, metav1.CreateOptions{}); err != nil {
		return err
	}
	roles := map[string]string{viewer: "infera-viewer", operator: "infera-operator"}
	for _, sa := range []string{viewer, operator, nobody} {
		if _, err := kube.CoreV1().ServiceAccounts(callerNS).Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: sa}}, metav1.CreateOptions{}); err != nil {
			return err
		}
		if role, ok := roles[sa]; ok {
			if _, err := kube.RbacV1().ClusterRoleBindings().Create(ctx, &rbacv1.ClusterRoleBinding{
				ObjectMeta: metav1.ObjectMeta{Name: "dash-test-" + sa},
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
	if err := seed(ctx); err != nil {
		return err
	}
	// The gateway runs as its own ServiceAccount with only its generated
	// role, so what the dashboard changes is changed as the caller.
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
	server = httptest.NewServer(g.Handler())
	return nil
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

func token(ctx context.Context, ns, name string) (string, error) {
	exp := int64(3600)
	tr, err := kube.CoreV1().ServiceAccounts(ns).CreateToken(ctx, name, &authnv1.TokenRequest{
		Spec: authnv1.TokenRequestSpec{ExpirationSeconds: &exp}}, metav1.CreateOptions{})
	if err != nil {
		return "", fmt.Errorf("TokenRequest for %s/%s: %w", ns, name, err)
	}
	return tr.Status.Token, nil
}

// The fleet: dash-n1 enforcing with a fresh tier-load and the pods,
// dash-n2 and dash-n3 in pool b (observe-only, refused), dash-n4 with an
// agent-status nobody can read.
func seed(ctx context.Context) error {
	now := time.Now().UTC().Format(time.RFC3339)
	nodes := []struct {
		name   string
		labels map[string]string
		ann    map[string]string
	}{
		{"dash-n1", map[string]string{"pool": "a"}, map[string]string{
			"infera.io/agent-status": "enforcing/cgroup",
			"infera.io/tier-load": `{"v":1,"ts":"` + now + `","gen":7,"backend":"cgroup","allocatableMilli":4000,"fencedMilli":1000,` +
				`"tiers":{"critical":{"pods":1,"requestMilli":1000,"limitMilli":1000},"normal":{"pods":2,"requestMilli":750,"limitMilli":0}}}`}},
		{"dash-n2", map[string]string{"pool": "b"}, map[string]string{"infera.io/agent-status": "observe-only"}},
		{"dash-n3", map[string]string{"pool": "b"}, map[string]string{"infera.io/agent-status": "refused: kernel has no sched_ext"}},
		{"dash-n4", map[string]string{"pool": "c"}, map[string]string{"infera.io/agent-status": "bogus"}},
	}
	for _, n := range nodes {
		created, err := kube.CoreV1().Nodes().Create(ctx, &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: n.name, Labels: n.labels, Annotations: n.ann}}, metav1.CreateOptions{})
		if err != nil {
			return err
		}
		created.Status = corev1.NodeStatus{
			Capacity:    corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("4"), corev1.ResourcePods: resource.MustParse("110")},
			Allocatable: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("4"), corev1.ResourcePods: resource.MustParse("110")},
			Conditions:  []corev1.NodeCondition{{Type: corev1.NodeReady, Status: corev1.ConditionTrue, LastHeartbeatTime: metav1.Now(), LastTransitionTime: metav1.Now()}},
			Addresses:   []corev1.NodeAddress{{Type: corev1.NodeInternalIP, Address: "10.0.0." + n.name[len(n.name)-1:]}},
		}
		if n.name == "dash-n1" {
			kubelet.Point(created) // its pods' logs
		}
		if _, err := kube.CoreV1().Nodes().UpdateStatus(ctx, created, metav1.UpdateOptions{}); err != nil {
			return err
		}
	}
	for _, p := range []*corev1.Pod{
		pod("crit", "infera-critical", nil, "1"),
		pod("web", "", nil, "500m"),
		pod("deflated", "infera-normal", map[string]string{"infera.io/original-cpu-requests": `{"app":"1"}`}, "250m"),
	} {
		created, err := kube.CoreV1().Pods("default").Create(ctx, p, metav1.CreateOptions{})
		if err != nil {
			return err
		}
		if _, err := kube.CoreV1().Events("default").Create(ctx, &corev1.Event{
			ObjectMeta: metav1.ObjectMeta{Name: p.Name + ".scheduled", Namespace: "default"}, Type: "Normal", Reason: "Scheduled",
			Message:        "Successfully assigned default/" + p.Name + " to dash-n1",
			InvolvedObject: corev1.ObjectReference{Kind: "Pod", Namespace: "default", Name: p.Name, UID: created.UID},
			LastTimestamp:  metav1.Now(), Count: 1, Source: corev1.EventSource{Component: "default-scheduler"},
		}, metav1.CreateOptions{}); err != nil {
			return err
		}
	}
	return nil
}

func pod(name, class string, ann map[string]string, cpu string) *corev1.Pod {
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "default", Annotations: ann},
		Spec: corev1.PodSpec{NodeName: "dash-n1", PriorityClassName: class, Containers: []corev1.Container{{
			Name: "app", Image: "registry.invalid/app",
			Resources: corev1.ResourceRequirements{Requests: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse(cpu)}},
		}}},
	}
}

// browser starts a headless chromium for one test, at a laptop's size.
func browser(t *testing.T) context.Context {
	t.Helper()
	if env == nil {
		t.Skip("run by make test-dashboard (TEMPER_TEST_DASHBOARD=1): needs chromium and the control plane in bin/")
	}
	opts := append(chromedp.DefaultExecAllocatorOptions[:], chromedp.ExecPath(chromium), chromedp.NoSandbox, chromedp.DisableGPU,
		chromedp.Flag("disable-quic", true), chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-dev-shm-usage", true), chromedp.UserDataDir(t.TempDir()), chromedp.WindowSize(1280, 800))
	actx, cancelA := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancel := chromedp.NewContext(actx)
	t.Cleanup(func() { cancel(); cancelA() })
	if err := chromedp.Do(ctx); err != nil {
		t.Fatalf("starting %s: %v", chromium, err)
	}
	return ctx
}

// do runs steps with a deadline, failing the test with what it was doing.
func do(t *testing.T, ctx context.Context, what string, steps ...chromedp.Action[chromedp.Void]) {
	t.Helper()
	c, cancel := context.WithTimeout(ctx, stepTimeout)
	defer cancel()
	if err := chromedp.Do(c, steps...); err != nil {
		t.Fatalf("%s: %v\npage text: %s", what, err, pageText(ctx))
	}
}

func pageText(ctx context.Context) string {
	c, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	s, _ := chromedp.Run(c, chromedp.Evaluate[string]("document.body ? document.body.innerText : ''"))
	return s
}

// Waits are conditions polled until they hold; the timeouts only bound a
// failure, and are generous because CI machines are shared (a condition
// that holds ends its wait at once).
const (
	waitTimeout = 60 * time.Second
	stepTimeout = 90 * time.Second
)

// waitFor polls a JavaScript predicate.
func waitFor(js string) chromedp.Action[chromedp.Void] {
	return chromedp.Poll[chromedp.Void](js, chromedp.WithPollingTimeout(waitTimeout), chromedp.WithPollingInterval(50*time.Millisecond))
}

// waitRefreshing polls a JavaScript predicate and, while it does not hold,
// clicks the button refresh at most once a second: for views that load
// once, where the awaited data may land just after the load.
func waitRefreshing(js, refresh string) chromedp.Action[chromedp.Void] {
	return waitFor(fmt.Sprintf(`(() => { if (%s) return true;
		const now = Date.now();
		if (!window.__refreshed || now - window.__refreshed > 1000) { window.__refreshed = now; document.querySelector(%s)?.click(); }
		return false; })()`, js, jsString(refresh)))
}

// textOf is a predicate: the element's text contains want.
func textOf(sel, want string) string {
	return fmt.Sprintf(`(document.querySelector(%s)?.innerText ?? "").includes(%s)`, jsString(sel), jsString(want))
}

func jsString(s string) string {
	b, _ := json.Marshal(s)
	return string(b)
}

// fill sets a form field's value the way typing does (an input event).
func fill(sel, value string) chromedp.Action[chromedp.Void] {
	return chromedp.Evaluate[chromedp.Void](fmt.Sprintf(`(() => { const e = document.querySelector(%s);
		e.value = %s; e.dispatchEvent(new Event("input", {bubbles: true})); e.dispatchEvent(new Event("change", {bubbles: true})); })()`,
		jsString(sel), jsString(value)))
}

// screenshot checks the page's text contrast and writes the whole page as a
// PNG into the screenshots folder.
func screenshot(t *testing.T, ctx context.Context, name string) {
	t.Helper()
	png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
	if err != nil {
		t.Fatalf("screenshot %s: %v", name, err)
	}
	checkContrast(t, ctx, name)
	p := filepath.Join(shots, name+".png")
	if err := os.WriteFile(p, png, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("screenshot: %s", p)
}

// signIn opens the dashboard and signs in with the caller's token.
func signIn(t *testing.T, ctx context.Context, who string) {
	t.Helper()
	do(t, ctx, "sign in as "+who,
		chromedp.Navigate(server.URL+"/"),
		chromedp.WaitVisible(chromedp.ID("token")),
		fill("#token", tokens[who]),
		chromedp.Click(chromedp.ID("signin")),
	)
}

// unlabelled lists the form controls of the page without an accessible name.
const unlabelled = `[...document.querySelectorAll("input, select, textarea")]
	.filter(e => e.type !== "hidden" && e.labels.length === 0 && !e.getAttribute("aria-label") && !e.getAttribute("aria-labelledby"))
	.map(e => e.outerHTML)`

func checkLabels(t *testing.T, ctx context.Context, view string) {
	t.Helper()
	bad, err := chromedp.Run(ctx, chromedp.Evaluate[[]string](unlabelled))
	if err != nil {
		t.Fatal(err)
	}
	if len(bad) > 0 {
		t.Errorf("%s: form controls without a label: %v", view, bad)
	}
}

// lowContrast lists visible text whose colour against its effective
// background is below WCAG AA: 4.5:1, or 3:1 for large text (24 px, or
// 18.66 px bold). Disabled controls are exempt, as WCAG allows.
const lowContrast = `(() => {
	const parse = c => { const m = c.match(/rgba?\(([^)]+)\)/); if (!m) return null;
		const p = m[1].split(",").map(Number); return {r: p[0], g: p[1], b: p[2], a: p.length > 3 ? p[3] : 1}; };
	const lum = c => { const f = v => { v /= 255; return v <= 0.03928 ? v / 12.92 : Math.pow((v + 0.055) / 1.055, 2.4); };
		return 0.2126 * f(c.r) + 0.7152 * f(c.g) + 0.0722 * f(c.b); };
	const bg = el => { for (let e = el; e; e = e.parentElement) { const c = parse(getComputedStyle(e).backgroundColor);
		if (c && c.a > 0) return c; } return {r: 255, g: 255, b: 255, a: 1}; };
	const out = [];
	const walk = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT);
	for (let n = walk.nextNode(); n; n = walk.nextNode()) {
		const el = n.parentElement;
		if (!n.textContent.trim() || !el || el.closest(":disabled, [aria-hidden=true], noscript")) continue;
		const r = el.getBoundingClientRect();
		if (r.width === 0 || r.height === 0) continue;
		const cs = getComputedStyle(el);
		if (cs.visibility === "hidden") continue;
		const fg = parse(cs.color), b = bg(el);
		const L1 = lum(fg), L2 = lum(b);
		const ratio = (Math.max(L1, L2) + 0.05) / (Math.min(L1, L2) + 0.05);
		const size = parseFloat(cs.fontSize), bold = Number(cs.fontWeight) >= 700;
		const need = size >= 24 || (bold && size >= 18.66) ? 3 : 4.5;
		if (ratio < need) out.push(n.textContent.trim().slice(0, 40) + " (" + cs.color + " on " + JSON.stringify(b) + ": " + ratio.toFixed(2) + ")");
	}
	return out;
})()`

func checkContrast(t *testing.T, ctx context.Context, view string) {
	t.Helper()
	bad, err := chromedp.Run(ctx, chromedp.Evaluate[[]string](lowContrast))
	if err != nil {
		t.Fatal(err)
	}
	if len(bad) > 0 {
		t.Errorf("%s: text below WCAG AA contrast: %v", view, bad)
	}
}
