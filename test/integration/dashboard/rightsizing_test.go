package dashboard

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/go-logr/logr"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"

	"github.com/infera-io/temper/gateway"
	"github.com/infera-io/temper/test/liveagent"
)

// TestRightsizing: the Rightsizing view shows, per workload, the request,
// the usage the agent measured and a suggestion. For this test only, node
// dash-live runs a real agent (test/liveagent) whose pods are real
// processes: two replicas of Deployment live/web (ReplicaSet web-5d8f7)
// running a light load, and a bare sleeping pod live/lone; a second
// gateway reaches the agent. The node and pods are deleted afterwards.
func TestRightsizing(t *testing.T) {
	ctx := browser(t)
	bg, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	if _, err := kube.CoreV1().Namespaces().Create(bg, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "live"}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	gwToken, err := token(bg, "infera-system", "infera-gateway")
	if err != nil {
		t.Fatal(err)
	}
	yes := true
	mk := func(name, cpu string, owned bool) *corev1.Pod {
		p := &corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "live"},
			Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "app", Image: "registry.invalid/app",
				Resources: corev1.ResourceRequirements{Requests: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse(cpu)}}}}},
		}
		if owned {
			p.Labels = map[string]string{"pod-template-hash": "5d8f7"}
			p.OwnerReferences = []metav1.OwnerReference{{APIVersion: "apps/v1", Kind: "ReplicaSet", Name: "web-5d8f7",
				UID: "6f1f7c1e-0000-4000-8000-000000000001", Controller: &yes}}
		}
		return p
	}
	a, err := liveagent.Start(bg, liveagent.Options{
		Kube: kube, Node: "dash-live", GatewayToken: gwToken, Dir: t.TempDir(),
		Pods: []liveagent.Pod{
			{Pod: mk("web-5d8f7-a", "1", true), Load: liveagent.Light},
			{Pod: mk("web-5d8f7-b", "1", true), Load: liveagent.Light},
			{Pod: mk("lone", "250m", false), Load: liveagent.Idle},
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cancel()
		a.Tree.Stop()
		for _, p := range a.Pods {
			_ = kube.CoreV1().Pods("live").Delete(context.Background(), p.Name, metav1.DeleteOptions{GracePeriodSeconds: new(int64)})
		}
		_ = kube.CoreV1().Nodes().Delete(context.Background(), "dash-live", metav1.DeleteOptions{})
		_ = kube.CoreV1().Namespaces().Delete(context.Background(), "live", metav1.DeleteOptions{})
	})
	rc := &rest.Config{Host: env.Config.Host, BearerToken: gwToken, TLSClientConfig: rest.TLSClientConfig{CAData: env.Config.CAData}, QPS: 200, Burst: 400}
	cfg, err := gateway.LoadConfig("")
	if err != nil {
		t.Fatal(err)
	}
	cfg.AuthCacheTTL = &metav1.Duration{Duration: time.Second}
	cfg.Agents = a.Gateway
	g, err := gateway.New(gateway.Options{Config: cfg, RestConfig: rc, Log: logr.Discard(), AuditWriter: io.Discard})
	if err != nil {
		t.Fatal(err)
	}
	if err := g.Start(bg); err != nil {
		t.Fatal(err)
	}
	live := httptest.NewServer(g.Handler())
	t.Cleanup(live.Close)

	// Wait for 5 samples of each pod through the REST API the view reads.
	deadline := time.Now().Add(60 * time.Second)
	for {
		req, _ := http.NewRequestWithContext(bg, http.MethodGet, live.URL+"/api/v1/rightsizing?namespace=live", http.NoBody)
		req.Header.Set("Authorization", "Bearer "+tokens[viewer])
		var r struct {
			Workloads []struct {
				Usage struct{ Samples int }
			}
		}
		if resp, err := http.DefaultClient.Do(req); err == nil {
			_ = json.NewDecoder(resp.Body).Decode(&r)
			_ = resp.Body.Close()
		}
		if len(r.Workloads) == 2 && r.Workloads[0].Usage.Samples >= 10 && r.Workloads[1].Usage.Samples >= 5 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no samples of live's 2 workloads after 60s: %+v", r)
		}
		time.Sleep(500 * time.Millisecond)
	}

	do(t, ctx, "sign in to the gateway that reaches dash-live",
		chromedp.Navigate(live.URL+"/"),
		chromedp.WaitVisible(chromedp.ID("token")),
		fill("#token", tokens[viewer]),
		chromedp.Click(chromedp.ID("signin")),
	)
	do(t, ctx, "open Rightsizing for live",
		chromedp.Navigate(live.URL+"/#/rightsizing"),
		waitFor(textOf("h1", "Rightsizing")),
		fill("#rs-namespace", "live"),
		chromedp.Click(chromedp.ID("rs-apply")),
		waitFor(`document.querySelector('tr[data-workload="live/Deployment/web"]') !== null`),
	)
	cell := func(w, col string) string {
		s, err := chromedp.Run(ctx, chromedp.Evaluate[string](`document.querySelector('tr[data-workload="`+w+`"] td[data-col="`+col+`"]').innerText`))
		if err != nil {
			t.Fatalf("cell %s of %s: %v", col, w, err)
		}
		return s
	}
	row := func(w string) string {
		s, err := chromedp.Run(ctx, chromedp.Evaluate[string](`document.querySelector('tr[data-workload="`+w+`"]').innerText`))
		if err != nil {
			t.Fatalf("row %s: %v", w, err)
		}
		return s
	}
	// The Deployment's two replicas: real, non-zero p95 usage, pooled, and
	// a suggestion in 10m steps for each pod and in total.
	p95, err := strconv.Atoi(strings.TrimSuffix(cell("live/Deployment/web", "p95"), "m"))
	if err != nil || p95 <= 0 {
		t.Errorf("web's p95 = %q (%v), want a measured number of millicores above 0", cell("live/Deployment/web", "p95"), err)
	}
	web := row("live/Deployment/web")
	for _, want := range []string{"live/web", "Deployment", "\t2\t", "1 CPU", "(2 CPU total)", "web-5d8f7-a, web-5d8f7-b on dash-live", "p95 ", "× 1.20"} {
		if !strings.Contains(web, want) {
			t.Errorf("web's row %q does not show %q", web, want)
		}
	}
	sug := strings.Fields(cell("live/Deployment/web", "suggested"))[0]
	if m, err := strconv.Atoi(strings.TrimSuffix(sug, "m")); err != nil || m < 10 || m%10 != 0 || float64(m) < float64(p95)*1.2 {
		t.Errorf("web's suggestion %q, want at least p95 %dm × 1.2 in 10m steps", sug, p95)
	}
	// The sleeping bare pod: its own workload, the 10m floor.
	if s := cell("live/Pod/lone", "suggested"); !strings.HasPrefix(s, "10m") || cell("live/Pod/lone", "p95") != "0m" {
		t.Errorf("lone's suggestion %q, p95 %q, want the 10m floor at 0m used", s, cell("live/Pod/lone", "p95"))
	}
	checkLabels(t, ctx, "rightsizing")
	screenshot(t, ctx, "rightsizing")
}
