package inferactl

import (
	"context"
	"encoding/json"
	"io"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/go-logr/logr"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"

	"github.com/infera-io/temper/gateway"
	"github.com/infera-io/temper/inferactl"
	"github.com/infera-io/temper/test/liveagent"
)

const (
	liveNode = "cli-live"
	liveNS   = "live"
)

// startLive runs, for one test, the node cli-live with a real agent whose
// pods (live/busy with a light load, live/idle sleeping) are real
// processes, and a second gateway that reaches the agents; the node and its
// pods are deleted when the test ends, so the other tests' fleet is as
// before. It returns the gateway's URL once the agent holds 3 samples.
func startLive(t *testing.T) string {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	if _, err := kube.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: liveNS}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	gwToken, err := token(ctx, "infera-system", "infera-gateway")
	if err != nil {
		t.Fatal(err)
	}
	a, err := liveagent.Start(ctx, liveagent.Options{
		Kube: kube, Node: liveNode, Labels: map[string]string{"pool": "live"}, GatewayToken: gwToken, Dir: t.TempDir(),
		Pods: []liveagent.Pod{
			{Pod: pod(liveNS, "busy", "", "infera-critical", nil, "1"), Load: liveagent.Light},
			{Pod: pod(liveNS, "idle", "", "", nil, "500m"), Load: liveagent.Idle},
		},
	})
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cancel()
		a.Tree.Stop()
		bg := context.Background()
		for _, p := range a.Pods {
			_ = kube.CoreV1().Pods(p.Namespace).Delete(bg, p.Name, metav1.DeleteOptions{GracePeriodSeconds: new(int64)})
		}
		_ = kube.CoreV1().Nodes().Delete(bg, liveNode, metav1.DeleteOptions{})
		_ = kube.CoreV1().Namespaces().Delete(bg, liveNS, metav1.DeleteOptions{})
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
	if err := g.Start(ctx); err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(g.Handler())
	t.Cleanup(srv.Close)

	deadline := time.Now().Add(60 * time.Second)
	for {
		r := run(t, viewer, false, "--gateway", srv.URL, "top", "--by", "pod", "--node", liveNode, "-n", liveNS, "-o", "json")
		var l struct {
			Items []struct {
				Pod struct {
					Usage struct{ Samples int }
				}
			}
		}
		if r.code == 0 && json.Unmarshal([]byte(r.stdout), &l) == nil && len(l.Items) == 2 && l.Items[0].Pod.Usage.Samples >= 3 && l.Items[1].Pod.Usage.Samples >= 3 {
			return srv.URL
		}
		if time.Now().After(deadline) {
			t.Fatalf("the agent of %s holds no 3 samples of its 2 pods after 60s: exit %d %s %s", liveNode, r.code, r.stdout, r.stderr)
		}
		time.Sleep(500 * time.Millisecond)
	}
}

// masked rewrites a table for a golden file: cells joined by one space (the
// widths follow the values), and the columns whose values are measured
// (named in measured) replaced by "<m>".
func masked(out string, measured ...string) string {
	lines := strings.Split(strings.TrimRight(out, "\n"), "\n")
	header := strings.Fields(lines[0])
	mask := map[int]bool{}
	for i, h := range header {
		for _, m := range measured {
			if h == m {
				mask[i] = true
			}
		}
	}
	var b strings.Builder
	for _, l := range lines {
		f := strings.Fields(l)
		for i := range f {
			if mask[i] && l != lines[0] {
				f[i] = "<m>"
			}
		}
		b.WriteString(strings.Join(f, " ") + "\n")
	}
	return b.String()
}

// TestTopUsage: inferactl top shows what the agents measured through the
// gateway: the pod running a light load used CPU, the sleeper next to
// none, the tiers sum them, and the nodes whose agents do not answer are
// named on stderr. The tables are golden with the measured values masked;
// the values are checked from -o json.
func TestTopUsage(t *testing.T) {
	url := startLive(t)

	r := run(t, viewer, false, "--gateway", url, "top", "--by", "pod", "-n", liveNS)
	if r.code != 0 {
		t.Fatalf("top --by pod -n %s = exit %d %s", liveNS, r.code, r.stderr)
	}
	t.Logf("top --by pod -n %s:\n%s%s", liveNS, r.stdout, r.stderr)
	golden(t, "top-pods-live.txt", masked(r.stdout, "CPU-USAGE", "CPU-P95"))
	for _, n := range []string{"cli-n1", "cli-n2", "cli-n3", "cli-n4"} {
		if !strings.Contains(r.stderr, "node "+n+": no usage, its agent was not reached") {
			t.Errorf("stderr %q does not name %s, whose agent is unreachable", r.stderr, n)
		}
	}

	r = run(t, viewer, false, "--gateway", url, "top", "--by", "pod", "-n", liveNS, "-o", "json")
	var l struct {
		Items []struct {
			Node string
			Pod  struct {
				Name         string
				RequestMilli string
				Usage        struct {
					Samples                          int
					CurrentCores, P95Cores, MaxCores float64
				}
			}
		}
	}
	if err := json.Unmarshal([]byte(r.stdout), &l); err != nil || len(l.Items) != 2 {
		t.Fatalf("top --by pod -o json = %v %s", err, r.stdout)
	}
	busy, idle := l.Items[0].Pod, l.Items[1].Pod
	if busy.Name != "busy" || busy.RequestMilli != "1000" || busy.Usage.MaxCores <= 0 || l.Items[0].Node != liveNode {
		t.Errorf("busy = %+v on %s, want 1000m requested and some CPU used on %s", busy, l.Items[0].Node, liveNode)
	}
	if idle.Name != "idle" || idle.Usage.MaxCores > 0.02 {
		t.Errorf("idle = %+v, want next to no CPU", idle)
	}

	r = run(t, viewer, false, "--gateway", url, "top", "--node", liveNode, "-o", "wide")
	if r.code != 0 || r.stderr != "" {
		t.Fatalf("top --node %s -o wide = exit %d %s", liveNode, r.code, r.stderr)
	}
	t.Logf("top --node %s -o wide:\n%s", liveNode, r.stdout)
	golden(t, "top-tiers-live-wide.txt", masked(r.stdout, "CPU-USAGE", "CPU-P95", "CPU-MEAN", "CPU-MAX", "SAMPLES", "WINDOW"))

	if r := run(t, viewer, false, "--gateway", url, "top", "--node", "no-such-node"); r.code != inferactl.ExitNotFound || !strings.Contains(r.stderr, "no-such-node") {
		t.Errorf("top --node no-such-node = exit %d %s, want %d naming it", r.code, r.stderr, inferactl.ExitNotFound)
	}
	if r := run(t, nobody, false, "--gateway", url, "top", "--by", "pod"); r.code != inferactl.ExitForbidden || !strings.Contains(r.stderr, "cannot list pods") {
		t.Errorf("top as nobody = exit %d %s, want %d naming list pods", r.code, r.stderr, inferactl.ExitForbidden)
	}
}
