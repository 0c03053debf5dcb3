package inferactl

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"sigs.k8s.io/yaml"

	inferav1alpha1 "github.com/infera-io/temper/apis/infera/v1alpha1"
	"github.com/infera-io/temper/inferactl"
)

// TestNodes: the node table, -o wide and -o yaml through the gateway are
// golden; the local computation gives the same table.
func TestNodes(t *testing.T) {
	r := run(t, viewer, true, "nodes")
	mustOK(t, r, "nodes")
	golden(t, "nodes.txt", r.stdout)
	local := run(t, "admin", false, "nodes")
	mustOK(t, local, "nodes (local)")
	if local.stdout != r.stdout {
		t.Errorf("local node table differs from the gateway's:\nlocal:\n%s\ngateway:\n%s", local.stdout, r.stdout)
	}
	if !strings.Contains(local.stderr, "no gateway configured") {
		t.Errorf("local nodes: stderr %q does not say the views were computed locally", local.stderr)
	}
	r = run(t, viewer, true, "nodes", "-o", "wide", "-l", "pool in (a,b)")
	mustOK(t, r, "nodes -o wide")
	golden(t, "nodes-wide.txt", r.stdout)
	r = run(t, viewer, true, "nodes", "cli-n1", "-o", "yaml")
	mustOK(t, r, "nodes cli-n1 -o yaml")
	golden(t, "node-cli-n1.yaml", r.stdout)
	r = run(t, viewer, true, "nodes", "-l", "pool=b", "-o", "name")
	mustOK(t, r, "nodes -o name")
	if r.stdout != "nodeview.infera.io/cli-n2\nnodeview.infera.io/cli-n3\n" {
		t.Errorf("nodes -l pool=b -o name = %q", r.stdout)
	}
	r = run(t, viewer, true, "nodes", "-o", "jsonpath={.items[*].agentState}")
	mustOK(t, r, "nodes -o jsonpath")
	if r.stdout != "enforcing observe-only refused safe-mode" {
		t.Errorf("nodes -o jsonpath = %q", r.stdout)
	}
}

// TestPods: pods with tiers through the gateway and locally. Locally the
// node's infera.io/priority-mapping applies, as on the agent.
func TestPods(t *testing.T) {
	r := run(t, viewer, true, "pods")
	mustOK(t, r, "pods")
	golden(t, "pods.txt", r.stdout)
	r = run(t, viewer, true, "pods", "--node", "cli-n1", "-o", "wide")
	mustOK(t, r, "pods -o wide")
	golden(t, "pods-cli-n1-wide.txt", r.stdout)
	local := run(t, "admin", false, "pods", "--node", "cli-n1", "-o", "wide")
	mustOK(t, local, "pods (local)")
	if local.stdout != r.stdout {
		t.Errorf("local pod table differs from the gateway's:\nlocal:\n%s\ngateway:\n%s", local.stdout, r.stdout)
	}
	if !strings.Contains(local.stderr, "computed locally") {
		t.Errorf("local pods: stderr %q does not say so", local.stderr)
	}
	r = run(t, viewer, true, "pods", "--tier", "background", "-n", "default", "-o", "name")
	mustOK(t, r, "pods --tier background")
	if r.stdout != "clusterpod.infera.io/volunteer\n" {
		t.Errorf("pods --tier background -n default -o name = %q, want the volunteer only", r.stdout)
	}
	r = run(t, viewer, true, "pods", "--tier", "golden")
	if r.code != inferactl.ExitUsage || !strings.Contains(r.stderr, "--tier") {
		t.Errorf("pods --tier golden = exit %d %q, want %d naming --tier", r.code, r.stderr, inferactl.ExitUsage)
	}

	// A priority mapping on a node moves its pods' tiers locally, as on
	// the agent: with high from 1000000, cart (infera-high) becomes normal.
	ctx := t.Context()
	n, err := kube.CoreV1().Nodes().Get(ctx, "cli-n2", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	n.Annotations["infera.io/priority-mapping"] = `{"v":1,"critical":2000000,"high":1000000,"normal":0,"low":-100}`
	if _, err := kube.CoreV1().Nodes().Update(ctx, n, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		n, err := kube.CoreV1().Nodes().Get(context.Background(), "cli-n2", metav1.GetOptions{})
		if err == nil {
			delete(n.Annotations, "infera.io/priority-mapping")
			_, _ = kube.CoreV1().Nodes().Update(context.Background(), n, metav1.UpdateOptions{})
		}
	})
	r = run(t, "admin", false, "pods", "--node", "cli-n2", "-o", "jsonpath={.items[0].tier}")
	mustOK(t, r, "pods --node cli-n2 (mapped)")
	if r.stdout != "normal" {
		t.Errorf("cart (infera-high) on a node whose mapping puts high at 1000000: tier %q, want normal", r.stdout)
	}
	// explain-tier names the mapping; through the gateway (which uses its
	// own thresholds) it warns that the node's agent uses others.
	r = run(t, "admin", false, "-n", "shop", "explain-tier", "cart")
	mustOK(t, r, "explain-tier cart (local)")
	for _, w := range []string{"Tier:             normal", "Mapping:          node cli-n2's infera.io/priority-mapping, set by hand"} {
		if !strings.Contains(r.stdout, w) {
			t.Errorf("local explain-tier cart lacks %q:\n%s", w, r.stdout)
		}
	}
	r = run(t, operator, true, "-n", "shop", "explain-tier", "cart")
	mustOK(t, r, "explain-tier cart (gateway)")
	if !strings.Contains(r.stdout, "WARNING: the gateway used its own thresholds; the node's agent uses critical >= 2000000, high >= 1000000") {
		t.Errorf("explain-tier cart through the gateway does not warn about the node's mapping:\n%s", r.stdout)
	}
}

// TestExplainTier: the explanation of a pod whose annotation is ignored,
// as text and YAML.
func TestExplainTier(t *testing.T) {
	r := run(t, viewer, true, "explain-tier", "climber")
	mustOK(t, r, "explain-tier climber")
	golden(t, "explain-climber.txt", strings.Replace(r.stdout, gw.URL, "GATEWAY", 1))
	r = run(t, viewer, true, "-n", "shop", "explain-tier", "pod/deflated", "-o", "yaml")
	mustOK(t, r, "explain-tier deflated -o yaml")
	golden(t, "explain-deflated.yaml", r.stdout)
	local := run(t, "admin", false, "explain-tier", "climber")
	mustOK(t, local, "explain-tier (local)")
	if !strings.Contains(local.stdout, "Source:           local") || !strings.Contains(local.stdout, "(ignored)") {
		t.Errorf("local explain-tier does not name its source or the ignored annotation:\n%s", local.stdout)
	}
}

// TestStatus: the fleet summary through the gateway and locally.
func TestStatus(t *testing.T) {
	r := run(t, viewer, true, "status")
	mustOK(t, r, "status")
	golden(t, "status.txt", strings.Replace(r.stdout, gw.URL, "GATEWAY", 1))
	local := run(t, "admin", false, "status")
	mustOK(t, local, "status (local)")
	golden(t, "status-local.txt", local.stdout)
	r = run(t, viewer, true, "status", "-o", "json")
	mustOK(t, r, "status -o json")
	var st map[string]any
	if err := yaml.Unmarshal([]byte(r.stdout), &st); err != nil {
		t.Fatalf("status -o json: %v\n%s", err, r.stdout)
	}
	if st["kind"] != "Status" || st["fleet"].(map[string]any)["nodes"] != float64(4) {
		t.Errorf("status -o json: kind %v, fleet %v", st["kind"], st["fleet"])
	}
}

// TestCRDTables: NodeQoSReports print with the CRD's printer columns, from
// the API server's Table (-o wide adds the priority-1 columns).
func TestCRDTables(t *testing.T) {
	ctx := t.Context()
	rep := &inferav1alpha1.NodeQoSReport{ObjectMeta: metav1.ObjectMeta{Name: "cli-n1"}}
	if err := env.Client.Create(ctx, rep); err != nil {
		t.Fatal(err)
	}
	rep.Status.Backend = "cgroup"
	rep.Status.AgentStatus = "enforcing/cgroup"
	if err := env.Client.Status().Update(ctx, rep); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = env.Client.Delete(context.Background(), rep) })
	age := regexp.MustCompile(`(?m)\s+\d+[smh]$`)
	r := run(t, "admin", false, "reports")
	mustOK(t, r, "reports")
	golden(t, "reports.txt", age.ReplaceAllString(r.stdout, " <age>"))
	r = run(t, "admin", false, "reports", "-o", "wide")
	mustOK(t, r, "reports -o wide")
	golden(t, "reports-wide.txt", age.ReplaceAllString(r.stdout, " <age>"))
	kubectl, err := env.Kubectl(ctx, "get", "nodeqosreports", "-o", "wide")
	if err != nil {
		t.Fatal(err)
	}
	if age.ReplaceAllString(kubectl, " <age>") != age.ReplaceAllString(r.stdout, " <age>") {
		t.Errorf("reports -o wide differs from kubectl get nodeqosreports -o wide:\ninferactl:\n%s\nkubectl:\n%s", r.stdout, kubectl)
	}
	r = run(t, "admin", false, "reports", "cli-n1", "-o", "jsonpath={.items[0].status.backend}")
	mustOK(t, r, "reports -o jsonpath")
	if r.stdout != "cgroup" {
		t.Errorf("reports -o jsonpath = %q", r.stdout)
	}
}

// TestSafeMode: on through the gateway as the operator sets the
// annotation and leaves a Node Event with the reason; --wait sees the
// agent's report; --dry-run=server changes nothing.
func TestSafeMode(t *testing.T) {
	ctx := t.Context()
	r := run(t, operator, true, "safe-mode", "on", "cli-n2", "--reason", "dry", "--dry-run=server")
	mustOK(t, r, "safe-mode --dry-run=server")
	if r.stdout != "node/cli-n2 safe mode requested (server dry run)\n" {
		t.Errorf("dry run stdout = %q", r.stdout)
	}
	if n, _ := kube.CoreV1().Nodes().Get(ctx, "cli-n2", metav1.GetOptions{}); n.Annotations["infera.io/safe-mode-requested"] != "" {
		t.Fatalf("--dry-run=server changed the node: %v", n.Annotations)
	}

	// The agent stand-in: once the request lands, report safe mode.
	go func() {
		for i := 0; i < 100; i++ {
			n, err := kube.CoreV1().Nodes().Get(ctx, "cli-n2", metav1.GetOptions{})
			if err == nil && n.Annotations["infera.io/safe-mode-requested"] == "true" {
				n.Annotations["infera.io/agent-status"] = "safe-mode"
				_, _ = kube.CoreV1().Nodes().Update(ctx, n, metav1.UpdateOptions{})
				return
			}
			time.Sleep(100 * time.Millisecond)
		}
	}()
	r = run(t, operator, true, "safe-mode", "on", "cli-n2", "--reason", "kernel upgrade", "--wait", "--timeout", "30s")
	mustOK(t, r, "safe-mode on --wait")
	if r.stdout != "node/cli-n2 safe mode requested\nnode/cli-n2 agent reports \"safe-mode\"\n" {
		t.Errorf("safe-mode on --wait stdout = %q", r.stdout)
	}
	evs, err := kube.CoreV1().Events("default").List(ctx, metav1.ListOptions{FieldSelector: fields.Set{
		"involvedObject.kind": "Node", "involvedObject.name": "cli-n2"}.AsSelector().String()})
	if err != nil {
		t.Fatal(err)
	}
	found := false
	for _, e := range evs.Items {
		if e.Reason == "SafeModeRequested" && strings.Contains(e.Message, "kernel upgrade") && strings.Contains(e.Message, "system:serviceaccount:"+callerNS+":"+operator) {
			found = true
		}
	}
	if !found {
		t.Errorf("no SafeModeRequested Node Event naming the operator and the reason: %+v", evs.Items)
	}
	r = run(t, "admin", false, "events", "--node", "cli-n2")
	mustOK(t, r, "events")
	if !strings.Contains(r.stdout, "SafeModeRequested") || !strings.Contains(r.stdout, "kernel upgrade") {
		t.Errorf("events --node cli-n2 does not show the action:\n%s", r.stdout)
	}

	// Off for pool b by selector; the agent is not told (no wait).
	r = run(t, operator, true, "safe-mode", "off", "-l", "pool=b", "--reason", "upgrade done")
	mustOK(t, r, "safe-mode off -l pool=b")
	if r.stdout != "node/cli-n2 safe mode withdrawn\nnode/cli-n3 safe mode already withdrawn (unchanged)\n" {
		t.Errorf("safe-mode off -l pool=b stdout = %q", r.stdout)
	}
	if n, _ := kube.CoreV1().Nodes().Get(ctx, "cli-n2", metav1.GetOptions{}); n.Annotations["infera.io/safe-mode-requested"] != "" {
		t.Errorf("safe-mode off left the annotation: %v", n.Annotations)
	}
	// Put the fixture back for the other tests.
	n, _ := kube.CoreV1().Nodes().Get(ctx, "cli-n2", metav1.GetOptions{})
	n.Annotations["infera.io/agent-status"] = "observe-only"
	if _, err := kube.CoreV1().Nodes().Update(ctx, n, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
}

// TestEventsFollow: --follow streams the gateway's events.
func TestEventsFollow(t *testing.T) {
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	done := make(chan result, 1)
	pr, pw, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	go func() {
		var errb strings.Builder
		code := inferactl.Run(ctx, "inferactl", []string{"--kubeconfig", kubeconfigs[viewer], "--gateway", gw.URL, "events", "--follow", "--node", "cli-n3"},
			streams(pw, &errb))
		_ = pw.Close()
		done <- result{code: code, stderr: errb.String()}
	}()
	time.Sleep(time.Second) // the stream starts at the next event
	n, err := kube.CoreV1().Nodes().Get(ctx, "cli-n3", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	n.Annotations["infera.io/agent-status"] = "degraded: test"
	if _, err := kube.CoreV1().Nodes().Update(ctx, n, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 4096)
	got := ""
	for !strings.Contains(got, "AgentStatusChanged") {
		k, err := pr.Read(buf)
		if err != nil {
			t.Fatalf("reading events: %v (so far %q)", err, got)
		}
		got += string(buf[:k])
	}
	if !strings.Contains(got, "cli-n3") {
		t.Errorf("event line %q does not name the node", got)
	}
	cancel()
	if res := <-done; res.code != 0 {
		t.Errorf("events --follow ended with exit %d: %s", res.code, res.stderr)
	}
	n, _ = kube.CoreV1().Nodes().Get(context.Background(), "cli-n3", metav1.GetOptions{})
	n.Annotations["infera.io/agent-status"] = "refused: kernel has no sched_ext"
	_, _ = kube.CoreV1().Nodes().Update(context.Background(), n, metav1.UpdateOptions{})
}

// TestKubectlPlugin runs `kubectl infera status` through the real kubectl
// binary with kubectl-infera on PATH, and checks the plugin's help speaks
// as `kubectl infera`.
func TestKubectlPlugin(t *testing.T) {
	dir := t.TempDir()
	build := exec.CommandContext(t.Context(), "go", "build", "-o", filepath.Join(dir, inferactl.PluginName), "github.com/infera-io/temper/cmd/inferactl")
	build.Dir = env.Root
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	kubectl := filepath.Join(envtestBin(), "kubectl")
	runKubectl := func(args ...string) (string, error) {
		cmd := exec.CommandContext(t.Context(), kubectl, args...)
		// PATH holds only the plugin under test: an inherited PATH may
		// hold another kubectl-infera (make's bin/), which kubectl reports
		// as a shadowing warning and an error exit.
		cmd.Env = append(os.Environ(), "PATH="+dir, "KUBECONFIG="+kubeconfigs[viewer])
		out, err := cmd.CombinedOutput()
		return string(out), err
	}
	out, err := runKubectl("plugin", "list")
	if err != nil || !strings.Contains(out, inferactl.PluginName) {
		t.Fatalf("kubectl plugin list: %v\n%s", err, out)
	}
	out, err = runKubectl("infera", "status", "--gateway", gw.URL)
	if err != nil {
		t.Fatalf("kubectl infera status: %v\n%s", err, out)
	}
	if !strings.Contains(out, "Source:       infera-gateway "+gw.URL) || !strings.Contains(out, "Nodes:        4 (4 ready)") {
		t.Errorf("kubectl infera status:\n%s", out)
	}
	out, err = runKubectl("infera", "--help")
	if err != nil || !strings.Contains(out, "kubectl infera [command]") || strings.Contains(out, "inferactl [command]") {
		t.Errorf("kubectl infera --help does not speak as kubectl infera (%v):\n%s", err, out)
	}
}

func envtestBin() string {
	if d := os.Getenv("KUBEBUILDER_ASSETS"); d != "" {
		return d
	}
	return filepath.Join(env.Root, "bin")
}

// TestCompletion: node and pod names complete from the API server.
func TestCompletion(t *testing.T) {
	r := run(t, "admin", false, "__complete", "safe-mode", "on", "cli-n")
	mustOK(t, r, "__complete safe-mode on")
	if !strings.HasPrefix(r.stdout, "cli-n1\ncli-n2\ncli-n3\ncli-n4\n:4\n") {
		t.Errorf("safe-mode on <TAB> = %q, want the four nodes", r.stdout)
	}
	r = run(t, "admin", false, "__complete", "explain-tier", "cl")
	mustOK(t, r, "__complete explain-tier")
	if !strings.HasPrefix(r.stdout, "climber\n:4\n") {
		t.Errorf("explain-tier cl<TAB> = %q, want climber", r.stdout)
	}
	r = run(t, "admin", false, "__complete", "pods", "--node", "")
	mustOK(t, r, "__complete pods --node")
	if !strings.Contains(r.stdout, "cli-n2\n") {
		t.Errorf("pods --node <TAB> = %q", r.stdout)
	}
}
