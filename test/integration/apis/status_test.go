package apis

import (
	"context"
	"regexp"
	"strings"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	inferav1alpha1 "github.com/infera-io/temper/apis/infera/v1alpha1"
)

func reportWithStatus(name string) *inferav1alpha1.NodeQoSReport {
	r := &inferav1alpha1.NodeQoSReport{ObjectMeta: metav1.ObjectMeta{Name: name}}
	r.Status = inferav1alpha1.NodeQoSReportStatus{
		Backend:     "scx_layered",
		Phase:       inferav1alpha1.PhaseEnforcing,
		AgentStatus: "enforcing/scx_layered",
		FencedCPU:   resource.MustParse("4"),
		Tiers: inferav1alpha1.TierStatuses{
			Critical:   inferav1alpha1.TierStatus{Pods: 2, RequestCPU: resource.MustParse("4")},
			High:       inferav1alpha1.TierStatus{Pods: 1, RequestCPU: resource.MustParse("500m")},
			Normal:     inferav1alpha1.TierStatus{Pods: 7},
			Low:        inferav1alpha1.TierStatus{Pods: 3},
			Background: inferav1alpha1.TierStatus{Pods: 11},
		},
	}
	meta.SetStatusCondition(&r.Status.Conditions, metav1.Condition{
		Type: inferav1alpha1.ConditionAgentHeartbeat, Status: metav1.ConditionTrue,
		Reason: inferav1alpha1.ReasonHeartbeatFresh, Message: "tier-load confirmed 3s ago",
	})
	return r
}

func TestStatusSubresource(t *testing.T) {
	ctx := context.Background()
	r := reportWithStatus("status-node")
	want := r.Status.DeepCopy()
	if err := env.Client.Create(ctx, r); err != nil {
		t.Fatal(err)
	}
	cleanup(t, r)
	// Create ignores status: it only goes through the subresource.
	if r.Status.Backend != "" {
		t.Fatalf("status was set on create: %+v", r.Status)
	}
	r.Status = *want
	if err := env.Client.Status().Update(ctx, r); err != nil {
		t.Fatalf("status update failed: %v", err)
	}
	var got inferav1alpha1.NodeQoSReport
	if err := env.Client.Get(ctx, client.ObjectKeyFromObject(r), &got); err != nil {
		t.Fatal(err)
	}
	if got.Status.Backend != "scx_layered" || got.Status.Tiers.Background.Pods != 11 {
		t.Fatalf("status not stored: %+v", got.Status)
	}
	// A main-resource update cannot change status.
	got.Status.Backend = "cgroup"
	got.Labels = map[string]string{"touched": "yes"}
	if err := env.Client.Update(ctx, &got); err != nil {
		t.Fatal(err)
	}
	var again inferav1alpha1.NodeQoSReport
	if err := env.Client.Get(ctx, client.ObjectKeyFromObject(r), &again); err != nil {
		t.Fatal(err)
	}
	if again.Status.Backend != "scx_layered" || again.Labels["touched"] != "yes" {
		t.Fatalf("main update changed status or lost labels: backend=%q labels=%v", again.Status.Backend, again.Labels)
	}

	// The same holds for a spec'd kind: a status write never moves the
	// generation, a spec write does.
	pol := &inferav1alpha1.InferaPolicy{ObjectMeta: metav1.ObjectMeta{Name: "status-pol"}}
	if err := env.Client.Create(ctx, pol); err != nil {
		t.Fatal(err)
	}
	cleanup(t, pol)
	gen := pol.Generation
	pol.Status.MatchedNodes = 3
	pol.Status.ObservedGeneration = gen
	if err := env.Client.Status().Update(ctx, pol); err != nil {
		t.Fatal(err)
	}
	if pol.Generation != gen || pol.Status.MatchedNodes != 3 {
		t.Fatalf("status update: generation %d→%d, matched %d", gen, pol.Generation, pol.Status.MatchedNodes)
	}
	pol.Spec.SafeMode = true
	if err := env.Client.Update(ctx, pol); err != nil {
		t.Fatal(err)
	}
	if pol.Generation != gen+1 {
		t.Fatalf("spec update did not bump generation: %d→%d", gen, pol.Generation)
	}
}

func TestKubectlPrinterColumns(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	r := reportWithStatus("worker-7")
	st := r.Status.DeepCopy()
	if err := env.Client.Create(ctx, r); err != nil {
		t.Fatal(err)
	}
	cleanup(t, r)
	r.Status = *st
	if err := env.Client.Status().Update(ctx, r); err != nil {
		t.Fatal(err)
	}

	out, err := env.Kubectl(ctx, "get", "nodeqosreports", "worker-7")
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 2 {
		t.Fatalf("want a header and one row, got:\n%s", out)
	}
	wantHeader := []string{"NAME", "BACKEND", "STATUS", "CRITICAL", "HIGH", "NORMAL", "LOW", "BACKGROUND", "FENCED", "AGE"}
	if got := strings.Fields(lines[0]); strings.Join(got, " ") != strings.Join(wantHeader, " ") {
		t.Errorf("header = %v, want %v", got, wantHeader)
	}
	row := strings.Fields(lines[1])
	wantRow := []string{"worker-7", "scx_layered", "Enforcing", "2", "1", "7", "3", "11", "4"}
	if len(row) != len(wantHeader) || strings.Join(row[:9], " ") != strings.Join(wantRow, " ") {
		t.Errorf("row = %v, want %v followed by an age", row, wantRow)
	}
	if !regexp.MustCompile(`^\d+s$`).MatchString(row[len(row)-1]) {
		t.Errorf("age column = %q", row[len(row)-1])
	}

	// Short names and the infera category reach every kind.
	for _, args := range [][]string{
		{"get", "nqr", "worker-7", "-o", "name"},
		{"get", "infera", "-o", "name"},
	} {
		out, err := env.Kubectl(ctx, args...)
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(out, "nodeqosreport.infera.io/worker-7") {
			t.Errorf("kubectl %v = %q, want the report", args, out)
		}
	}
	// The wide output adds the heartbeat condition and the full agent status.
	out, err = env.Kubectl(ctx, "get", "nqr", "worker-7", "-o", "wide")
	if err != nil {
		t.Fatal(err)
	}
	if header := strings.Split(out, "\n")[0]; !strings.Contains(header, "HEARTBEAT") || !strings.Contains(header, "AGENT-STATUS") ||
		!strings.Contains(out, "True") || !strings.Contains(out, "enforcing/scx_layered") {
		t.Errorf("wide output lacks the heartbeat or the agent-status column:\n%s", out)
	}
	// The default table stays narrow even when the agent's sentence is long.
	long := "refused: kernel has no sched_ext; cgroup backend: " + strings.Repeat("no kubepods cgroup yet ", 10)
	r.Status.Phase, r.Status.AgentStatus = inferav1alpha1.PhaseRefused, long
	if err := env.Client.Status().Update(ctx, r); err != nil {
		t.Fatal(err)
	}
	out, err = env.Kubectl(ctx, "get", "nqr", "worker-7")
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		if len(line) > 120 {
			t.Errorf("default table line is %d characters wide:\n%s", len(line), line)
		}
	}
	if !strings.Contains(out, "Refused") || strings.Contains(out, "kubepods") {
		t.Errorf("default table should show the phase, not the sentence:\n%s", out)
	}
	// kubectl get on all three kinds together works (the README promises it).
	if _, err := env.Kubectl(ctx, "get", "nodeqosreports,inferapolicies,overcommitprofiles"); err != nil {
		t.Fatal(err)
	}
}
