// Command dashboard measures infera-gateway's web dashboard: the size of the
// embedded bundle (raw and gzip) and the time headless chromium needs to
// show the fleet view of N nodes. It starts a real kube-apiserver
// (envtest), creates N Nodes with agent-status and fresh tier-load
// annotations, serves the gateway in process (the caller is a
// ServiceAccount bound to infera-viewer, so TokenReview and
// SubjectAccessReview run on every call), and loads the fleet view in
// rounds: each round reloads the page and reads the standard performance
// mark "fleet-rendered" (ms since navigation start: the bundle, both API
// calls and the table of N rows rendered), then times a filter keystroke
// and a re-sort of N rows until the DOM shows the result. It reports the
// median and spread over rounds, the load average, and writes JSON. Run
// from the repository root:
//
//	go run ./test/bench/dashboard -nodes 500 -rounds 7 -out docs/bench/dashboard.json
package main

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
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

	"github.com/infera-io/temper/gateway"
	"github.com/infera-io/temper/test/envtest"
)

type stat struct {
	Median float64   `json:"medianMs"`
	Min    float64   `json:"minMs"`
	Max    float64   `json:"maxMs"`
	All    []float64 `json:"roundsMs"`
}

// arm is one page size of the fleet table: all nodes are loaded, filtered
// and sorted in the page; the DOM holds PageSize rows.
type arm struct {
	PageSize    int  `json:"pageSize"`
	Rows        int  `json:"rowsInDOM"`
	FleetRender stat `json:"fleetRendered"`
	NodesFetch  stat `json:"nodesFetch"`
	Filter      stat `json:"filterKeystroke"`
	Sort        stat `json:"resort"`
}

type report struct {
	Command     string `json:"command"`
	Nodes       int    `json:"nodes"`
	Rounds      int    `json:"rounds"`
	Chromium    string `json:"chromium"`
	CPU         string `json:"cpu"`
	Cores       int    `json:"cores"`
	LoadBefore  string `json:"loadavgBefore"`
	LoadAfter   string `json:"loadavgAfter"`
	BundleBytes int    `json:"bundleBytes"`
	BundleGzip  int    `json:"bundleGzipBytes"`
	Arms        []arm  `json:"arms"`
}

func main() {
	nodes := flag.Int("nodes", 500, "nodes in the fleet")
	rounds := flag.Int("rounds", 7, "page loads")
	out := flag.String("out", "", "write the JSON report here")
	flag.Parse()
	if err := run(*nodes, *rounds, *out); err != nil {
		fmt.Fprintln(os.Stderr, "bench-dashboard:", err)
		os.Exit(1)
	}
}

func summarize(v []float64) stat {
	s := slices.Clone(v)
	slices.Sort(s)
	return stat{Median: s[len(s)/2], Min: s[0], Max: s[len(s)-1], All: v}
}

func loadavg() string {
	b, _ := os.ReadFile("/proc/loadavg")
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return ""
	}
	return strings.Join(f[:3], " ")
}

func cpuModel() string {
	b, _ := os.ReadFile("/proc/cpuinfo")
	for _, l := range strings.Split(string(b), "\n") {
		if k, v, ok := strings.Cut(l, ":"); ok && strings.TrimSpace(k) == "model name" {
			return strings.TrimSpace(v)
		}
	}
	return ""
}

// bundle sums the served files of the dashboard, raw and gzip (what a
// browser downloads with Accept-Encoding: gzip).
func bundle(root string) (raw, gz int, err error) {
	for _, f := range []string{"index.html", "app.js", "app.css"} {
		b, err := os.ReadFile(filepath.Join(root, "gateway", "dashboard", "dist", f))
		if err != nil {
			return 0, 0, err
		}
		var buf bytes.Buffer
		w, _ := gzip.NewWriterLevel(&buf, gzip.BestCompression)
		_, _ = w.Write(b)
		_ = w.Close()
		raw, gz = raw+len(b), gz+buf.Len()
	}
	return raw, gz, nil
}

func run(nNodes, nRounds int, out string) error {
	chromium := os.Getenv("CHROMIUM")
	if chromium == "" {
		p, err := exec.LookPath("chromium")
		if err != nil {
			return errors.New("no chromium: apt-get install -y chromium, or set CHROMIUM")
		}
		chromium = p
	}
	ver, _ := exec.Command(chromium, "--version").Output()
	env, err := envtest.Start(envtest.Options{})
	if err != nil {
		return err
	}
	defer func() { _ = env.Stop() }()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	rep := report{Command: "go run ./test/bench/dashboard -nodes " + fmt.Sprint(nNodes) + " -rounds " + fmt.Sprint(nRounds) + " -out " + out,
		Nodes: nNodes, Rounds: nRounds, Chromium: strings.TrimSpace(string(ver)), CPU: cpuModel(), Cores: runtime.NumCPU()}
	if rep.BundleBytes, rep.BundleGzip, err = bundle(env.Root); err != nil {
		return err
	}
	kube, err := kubernetes.NewForConfig(env.Config)
	if err != nil {
		return err
	}
	tok, err := viewerToken(ctx, env, kube)
	if err != nil {
		return err
	}
	if err := seed(ctx, kube, nNodes); err != nil {
		return err
	}
	cfg, err := gateway.LoadConfig("")
	if err != nil {
		return err
	}
	g, err := gateway.New(gateway.Options{Config: cfg, RestConfig: env.Config, Log: logr.Discard(), AuditWriter: io.Discard})
	if err != nil {
		return err
	}
	if err := g.Start(ctx); err != nil {
		return err
	}
	srv := httptest.NewServer(g.Handler())
	defer srv.Close()
	defer srv.CloseClientConnections()

	udd, err := os.MkdirTemp("", "bench-dashboard-")
	if err != nil {
		return err
	}
	defer func() { _ = os.RemoveAll(udd) }()
	opts := append(chromedp.DefaultExecAllocatorOptions[:], chromedp.ExecPath(chromium), chromedp.NoSandbox, chromedp.DisableGPU,
		chromedp.Flag("disable-quic", true), chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-dev-shm-usage", true), chromedp.UserDataDir(udd), chromedp.WindowSize(1280, 800))
	actx, cancelA := chromedp.NewExecAllocator(ctx, opts...)
	defer cancelA()
	bctx, cancelB := chromedp.NewContext(actx)
	defer cancelB()
	tokJS, _ := json.Marshal(tok)
	if err := chromedp.Do(bctx,
		chromedp.Navigate(srv.URL+"/"),
		chromedp.Evaluate[chromedp.Void](`sessionStorage.setItem("temper.dashboard.token", `+string(tokJS)+`)`),
	); err != nil {
		return err
	}
	rep.LoadBefore = loadavg()
	// Arms interleave round by round, so the machine's shared load hits
	// both alike; round 0 of each is a warm-up.
	sizes := []int{100, 500}
	samples := make([][4][]float64, len(sizes))
	for i := range nRounds + 1 {
		for a, size := range sizes {
			m, err := measure(bctx, nNodes, size)
			if err != nil {
				return fmt.Errorf("round %d, %d rows per page: %w", i, size, err)
			}
			if i == 0 {
				continue
			}
			for k := range m {
				samples[a][k] = append(samples[a][k], m[k])
			}
			fmt.Printf("round %d, %3d rows per page: fleet rendered %4.0f ms (GET /api/v1/nodes %3.0f ms), filter keystroke %3.0f ms, re-sort %3.0f ms\n",
				i, size, m[0], m[1], m[2], m[3])
		}
	}
	rep.LoadAfter = loadavg()
	fmt.Printf("bundle: %d bytes, %d gzip (%.1f KiB)\n", rep.BundleBytes, rep.BundleGzip, float64(rep.BundleGzip)/1024)
	for a, size := range sizes {
		r := arm{PageSize: size, Rows: min(size, nNodes), FleetRender: summarize(samples[a][0]), NodesFetch: summarize(samples[a][1]),
			Filter: summarize(samples[a][2]), Sort: summarize(samples[a][3])}
		rep.Arms = append(rep.Arms, r)
		fmt.Printf("fleet view, %d nodes, %d rows per page, %d rounds: rendered median %.0f ms (min %.0f, max %.0f); filter keystroke median %.0f ms (max %.0f); re-sort median %.0f ms (max %.0f)\n",
			nNodes, size, nRounds, r.FleetRender.Median, r.FleetRender.Min, r.FleetRender.Max, r.Filter.Median, r.Filter.Max, r.Sort.Median, r.Sort.Max)
	}
	fmt.Printf("load average before %s, after %s (%d cores, %s)\n", rep.LoadBefore, rep.LoadAfter, rep.Cores, rep.CPU)
	if out != "" {
		b, _ := json.MarshalIndent(rep, "", "  ")
		if err := os.WriteFile(out, append(b, '\n'), 0o644); err != nil {
			return err
		}
	}
	return nil
}

func viewerToken(ctx context.Context, env *envtest.Env, kube kubernetes.Interface) (string, error) {
	b, err := os.ReadFile(filepath.Join(env.Root, "config", "rbac", "gateway", "user_roles.yaml"))
	if err != nil {
		return "", err
	}
	dec := utilyaml.NewYAMLOrJSONDecoder(bytes.NewReader(b), 4096)
	for {
		var u unstructured.Unstructured
		if err := dec.Decode(&u.Object); err != nil {
			if errors.Is(err, io.EOF) {
				break
			}
			return "", err
		}
		if len(u.Object) > 0 {
			if err := env.Client.Create(ctx, &u); err != nil {
				return "", err
			}
		}
	}
	if _, err := kube.CoreV1().ServiceAccounts("default").Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: "bench-viewer"}}, metav1.CreateOptions{}); err != nil {
		return "", err
	}
	if _, err := kube.RbacV1().ClusterRoleBindings().Create(ctx, &rbacv1.ClusterRoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: "bench-viewer"},
		RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: "infera-viewer"},
		Subjects:   []rbacv1.Subject{{Kind: rbacv1.ServiceAccountKind, Name: "bench-viewer", Namespace: "default"}},
	}, metav1.CreateOptions{}); err != nil {
		return "", err
	}
	exp := int64(3600)
	tr, err := kube.CoreV1().ServiceAccounts("default").CreateToken(ctx, "bench-viewer", &authnv1.TokenRequest{
		Spec: authnv1.TokenRequestSpec{ExpirationSeconds: &exp}}, metav1.CreateOptions{})
	if err != nil {
		return "", err
	}
	return tr.Status.Token, nil
}

// seed creates n Nodes: most enforcing with a fresh tier-load, every 10th
// observe-only without one, every 25th with safe mode requested.
func seed(ctx context.Context, kube kubernetes.Interface, n int) error {
	ts := time.Now().UTC().Format(time.RFC3339)
	for i := range n {
		ann := map[string]string{
			"infera.io/agent-status": "enforcing/cgroup",
			"infera.io/tier-load": fmt.Sprintf(`{"v":1,"ts":%q,"gen":%d,"backend":"cgroup","allocatableMilli":16000,"fencedMilli":4000,`+
				`"tiers":{"critical":{"pods":%d,"requestMilli":%d,"limitMilli":4000},"normal":{"pods":12,"requestMilli":6000,"limitMilli":0},"background":{"pods":3,"requestMilli":300,"limitMilli":0}}}`,
				ts, i+1, 1+i%4, 1000*(1+i%4)),
		}
		if i%10 == 0 {
			ann = map[string]string{"infera.io/agent-status": "observe-only"}
		}
		if i%25 == 0 {
			ann["infera.io/safe-mode-requested"] = "true"
		}
		node := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("n-%04d", i), Annotations: ann,
			Labels: map[string]string{"pool": fmt.Sprintf("p%d", i%5), "zone": fmt.Sprintf("z%d", i%3)}}}
		created, err := kube.CoreV1().Nodes().Create(ctx, node, metav1.CreateOptions{})
		if err != nil {
			return err
		}
		created.Status = corev1.NodeStatus{
			Allocatable: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("16")},
			Capacity:    corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("16")},
			Conditions:  []corev1.NodeCondition{{Type: corev1.NodeReady, Status: corev1.ConditionTrue, LastHeartbeatTime: metav1.Now(), LastTransitionTime: metav1.Now()}},
		}
		if _, err := kube.CoreV1().Nodes().UpdateStatus(ctx, created, metav1.UpdateOptions{}); err != nil {
			return err
		}
	}
	return nil
}

// measure reloads the fleet view with size rows per page and returns the
// time to the "fleet-rendered" mark (ms since navigation start: bundle,
// API calls and the table rendered), the GET /api/v1/nodes time, a filter
// keystroke and a re-sort of every node, in ms.
func measure(bctx context.Context, nNodes, size int) ([4]float64, error) {
	var m [4]float64
	ctx, cancel := context.WithTimeout(bctx, 60*time.Second)
	defer cancel()
	rows := min(size, nNodes)
	err := chromedp.Do(ctx,
		chromedp.Evaluate[chromedp.Void](fmt.Sprintf(`sessionStorage.setItem("temper.dashboard.rows", "%d")`, size)),
		chromedp.Reload(),
		chromedp.Poll[chromedp.Void](fmt.Sprintf(`performance.getEntriesByName("fleet-rendered").length > 0 && `+
			`document.querySelectorAll("#fleet-table tbody tr").length === %d`, rows), chromedp.WithPollingInterval(20*time.Millisecond)),
	)
	if err != nil {
		return m, fmt.Errorf("waiting for the fleet table of %d rows: %w", rows, err)
	}
	if m[0], err = chromedp.Run(ctx, chromedp.Evaluate[float64](`performance.getEntriesByName("fleet-rendered")[0].startTime`)); err != nil {
		return m, err
	}
	if m[1], err = chromedp.Run(ctx, chromedp.Evaluate[float64](
		`performance.getEntriesByType("resource").filter(e => e.name.includes("/api/v1/nodes?")).reduce((s, e) => s + e.duration, 0)`)); err != nil {
		return m, err
	}
	// One keystroke in the filter, then a re-sort of every node (by name,
	// descending): each timed in the page from the event to the end of the
	// next frame (a requestAnimationFrame callback runs before that frame's
	// style, layout and paint; a zero timeout after it runs once they are
	// done), and checked in the DOM.
	if m[2], err = chromedp.Run(ctx, chromedp.Evaluate[float64](`new Promise((resolve, reject) => {
		const t0 = performance.now();
		const e = document.getElementById("fleet-filter");
		e.value = "n-0042"; e.dispatchEvent(new Event("input", {bubbles: true}));
		requestAnimationFrame(() => setTimeout(() => {
			const t = performance.now() - t0;
			document.getElementById("fleet-count").textContent.startsWith("1 of") ? resolve(t) : reject(new Error("the filter did not apply"));
		}, 0));
	})`, chromedp.EvalAwaitPromise)); err != nil {
		return m, err
	}
	last := fmt.Sprintf("%q", fmt.Sprintf("n-%04d", nNodes-1))
	m[3], err = chromedp.Run(ctx, chromedp.Evaluate[float64](`new Promise((resolve, reject) => {
		const e = document.getElementById("fleet-filter");
		e.value = ""; e.dispatchEvent(new Event("input", {bubbles: true}));
		const wait = () => document.querySelectorAll("#fleet-table tbody tr").length === `+fmt.Sprint(rows)+` ? go() : requestAnimationFrame(wait);
		const go = () => setTimeout(() => {
			const t0 = performance.now();
			document.querySelector("#fleet-table thead th:nth-child(1) button").click();
			requestAnimationFrame(() => setTimeout(() => {
				const t = performance.now() - t0;
				document.querySelector("#fleet-table tbody th").textContent.trim() === `+last+` ? resolve(t) : reject(new Error("the re-sort did not apply"));
			}, 0));
		}, 50);
		requestAnimationFrame(wait);
	})`, chromedp.EvalAwaitPromise))
	return m, err
}
