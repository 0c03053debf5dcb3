package manager

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	apimeta "k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	configv1alpha1 "github.com/infera-io/temper/apis/config/v1alpha1"
	inferav1alpha1 "github.com/infera-io/temper/apis/infera/v1alpha1"
	"github.com/infera-io/temper/apis/wellknown"
)

func tierLoad(t *testing.T, ts time.Time, gen int64, tiers map[wellknown.Tier]wellknown.TierUsage) string {
	t.Helper()
	v, err := wellknown.TierLoad{TS: ts, Gen: gen, Backend: wellknown.BackendCgroup, AllocatableMilli: 8000, FencedMilli: 2000, Tiers: tiers}.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	return v
}

func annotateNode(t *testing.T, name string, kv map[string]string) {
	t.Helper()
	var n corev1.Node
	if err := env.Client.Get(context.Background(), client.ObjectKey{Name: name}, &n); err != nil {
		t.Fatal(err)
	}
	before := n.DeepCopy()
	if n.Annotations == nil {
		n.Annotations = map[string]string{}
	}
	for k, v := range kv {
		if v == "" {
			delete(n.Annotations, k)
		} else {
			n.Annotations[k] = v
		}
	}
	if err := env.Client.Patch(context.Background(), &n, client.MergeFrom(before)); err != nil {
		t.Fatal(err)
	}
}

func waitReport(t *testing.T, name, what string, cond func(r *inferav1alpha1.NodeQoSReport) bool) *inferav1alpha1.NodeQoSReport {
	t.Helper()
	var r inferav1alpha1.NodeQoSReport
	eventually(t, 20*time.Second, what, func() (bool, string) {
		if err := env.Client.Get(context.Background(), client.ObjectKey{Name: name}, &r); err != nil {
			return false, err.Error()
		}
		return cond(&r), fmt.Sprintf("%+v", r.Status)
	})
	return &r
}

func cond(r *inferav1alpha1.NodeQoSReport, typ string) *metav1.Condition {
	return apimeta.FindStatusCondition(r.Status.Conditions, typ)
}

// TestNodeQoSReportMirrorsAnnotations: one report per Node, owned by it,
// mirroring agent-status and tier-load; stale, malformed and missing
// annotations become conditions; kubectl shows live values.
func TestNodeQoSReportMirrorsAnnotations(t *testing.T) {
	startManager(t, nil)
	ctx := context.Background()
	now := time.Now()
	createNode(t, "nqr-a", nil, map[string]string{
		wellknown.AgentStatusAnnotation: wellknown.AgentStatusEnforcingCgroup,
		wellknown.TierLoadAnnotation: tierLoad(t, now, 7, map[wellknown.Tier]wellknown.TierUsage{
			wellknown.TierCritical: {Pods: 2, RequestMilli: 2000, LimitMilli: 2000},
			wellknown.TierLow:      {Pods: 5, RequestMilli: 1250},
		}),
	})
	var node corev1.Node
	if err := env.Client.Get(ctx, client.ObjectKey{Name: "nqr-a"}, &node); err != nil {
		t.Fatal(err)
	}
	r := waitReport(t, "nqr-a", "a fresh report", func(r *inferav1alpha1.NodeQoSReport) bool {
		hb := cond(r, inferav1alpha1.ConditionAgentHeartbeat)
		return hb != nil && hb.Status == metav1.ConditionTrue && r.Status.Tiers.Low.Pods == 5
	})
	if len(r.OwnerReferences) != 1 || r.OwnerReferences[0].UID != node.UID || r.OwnerReferences[0].Kind != "Node" {
		t.Errorf("owner references = %+v, want the Node %s", r.OwnerReferences, node.UID)
	}
	st := r.Status
	if st.Backend != wellknown.BackendCgroup || st.AgentStatus != wellknown.AgentStatusEnforcingCgroup || st.Phase != inferav1alpha1.PhaseEnforcing || st.EnforcementGeneration != 7 ||
		st.Tiers.Critical.Pods != 2 || st.Tiers.Critical.RequestCPU.String() != "2" || st.Tiers.Low.RequestCPU.String() != "1250m" ||
		st.FencedCPU.String() != "2" || st.AllocatableCPU.String() != "8" || st.LastHeartbeatTime == nil {
		t.Errorf("status does not mirror the annotations: %+v", st)
	}
	if c := cond(r, inferav1alpha1.ConditionEnforcing); c == nil || c.Status != metav1.ConditionTrue {
		t.Errorf("Enforcing = %+v", c)
	}

	out, err := env.Kubectl(ctx, "get", "nodeqosreports", "nqr-a", "--no-headers")
	if err != nil {
		t.Fatal(err)
	}
	if f := strings.Fields(out); len(f) < 9 || f[1] != "cgroup" || f[2] != "Enforcing" || f[3] != "2" || f[6] != "5" || f[8] != "2" {
		t.Errorf("kubectl get nodeqosreports = %q", out)
	}

	// Live: a new tier-load shows up in kubectl.
	annotateNode(t, "nqr-a", map[string]string{wellknown.TierLoadAnnotation: tierLoad(t, time.Now(), 8, map[wellknown.Tier]wellknown.TierUsage{
		wellknown.TierLow: {Pods: 9, RequestMilli: 900},
	})})
	eventually(t, 20*time.Second, "kubectl shows the new counts", func() (bool, string) {
		out, err := env.Kubectl(ctx, "get", "nqr", "nqr-a", "--no-headers")
		f := strings.Fields(out)
		return err == nil && len(f) >= 9 && f[3] == "0" && f[6] == "9", out
	})

	// Stale: older than 180 s.
	annotateNode(t, "nqr-a", map[string]string{wellknown.TierLoadAnnotation: tierLoad(t, time.Now().Add(-200*time.Second), 8, nil)})
	r = waitReport(t, "nqr-a", "a stale heartbeat", func(r *inferav1alpha1.NodeQoSReport) bool {
		hb := cond(r, inferav1alpha1.ConditionAgentHeartbeat)
		return hb != nil && hb.Status == metav1.ConditionFalse && hb.Reason == inferav1alpha1.ReasonHeartbeatStale
	})
	if rc := cond(r, inferav1alpha1.ConditionReady); rc == nil || rc.Status != metav1.ConditionFalse {
		t.Errorf("Ready with a stale heartbeat = %+v", rc)
	}

	// Malformed: a condition naming the key, no crash, other fields cleared.
	annotateNode(t, "nqr-a", map[string]string{
		wellknown.TierLoadAnnotation:    `{"v":1,"ts":"yesterday"}`,
		wellknown.AgentStatusAnnotation: "dancing",
	})
	r = waitReport(t, "nqr-a", "malformed annotations reported", func(r *inferav1alpha1.NodeQoSReport) bool {
		c := cond(r, inferav1alpha1.ConditionAnnotationsValid)
		return c != nil && c.Status == metav1.ConditionFalse && c.Reason == inferav1alpha1.ReasonMalformedTierLoad
	})
	if c := cond(r, inferav1alpha1.ConditionAnnotationsValid); !strings.Contains(c.Message, wellknown.TierLoadAnnotation) {
		t.Errorf("AnnotationsValid message %q does not name %s", c.Message, wellknown.TierLoadAnnotation)
	}
	if c := cond(r, inferav1alpha1.ConditionEnforcing); c == nil || c.Reason != inferav1alpha1.ReasonMalformedStatus || !strings.Contains(c.Message, wellknown.AgentStatusAnnotation) {
		t.Errorf("Enforcing with a malformed agent-status = %+v", c)
	}
	if r.Status.Backend != wellknown.BackendNone || r.Status.Tiers.Low.Pods != 0 {
		t.Errorf("a malformed tier-load must count as absent: %+v", r.Status)
	}

	// The node goes, the report goes.
	if err := env.Client.Delete(ctx, &node); err != nil {
		t.Fatal(err)
	}
	eventually(t, 20*time.Second, "the report is deleted with its node", func() (bool, string) {
		err := env.Client.Get(ctx, client.ObjectKey{Name: "nqr-a"}, &inferav1alpha1.NodeQoSReport{})
		return apierrors.IsNotFound(err), fmt.Sprint(err)
	})
}

// TestSilentAgentBackstop: an agent silent longer than the threshold gets a
// Warning event, the AgentSilent condition and (opted in) a taint; when it
// reports again the taint is lifted. A node that never had an agent is left
// alone.
func TestSilentAgentBackstop(t *testing.T) {
	startManager(t, func(c *configv1alpha1.ManagerConfiguration) {
		c.TierLoadMaxAge = &metav1.Duration{Duration: 2 * time.Second}
		c.SilentAgent.After = &metav1.Duration{Duration: 4 * time.Second}
		on := true
		c.SilentAgent.Taint = &on
	})
	ctx := context.Background()
	createNode(t, "silent-a", nil, map[string]string{
		wellknown.AgentStatusAnnotation: wellknown.AgentStatusEnforcingCgroup,
		wellknown.TierLoadAnnotation:    tierLoad(t, time.Now(), 1, nil),
	})
	createNode(t, "silent-never", nil, nil)

	// Fresh at first; the heartbeat goes stale after 2 s and silent after 4 s
	// with no further write: the controller requeues itself.
	r := waitReport(t, "silent-a", "agent silent", func(r *inferav1alpha1.NodeQoSReport) bool {
		c := cond(r, inferav1alpha1.ConditionAgentSilent)
		return c != nil && c.Status == metav1.ConditionTrue
	})
	if hb := cond(r, inferav1alpha1.ConditionAgentHeartbeat); hb.Status != metav1.ConditionFalse {
		t.Errorf("AgentHeartbeat while silent = %+v", hb)
	}
	taint := configv1alpha1.DefaultSilentAgentTaintKey
	eventually(t, 20*time.Second, "silent-agent taint", func() (bool, string) {
		var n corev1.Node
		if err := env.Client.Get(ctx, client.ObjectKey{Name: "silent-a"}, &n); err != nil {
			return false, err.Error()
		}
		for _, tt := range n.Spec.Taints {
			if tt.Key == taint && tt.Effect == corev1.TaintEffectNoSchedule {
				return true, ""
			}
		}
		return false, fmt.Sprintf("taints %+v", n.Spec.Taints)
	})
	eventually(t, 20*time.Second, "AgentSilent event", func() (bool, string) {
		return hasEvent(t, "silent-a", "AgentSilent", corev1.EventTypeWarning), "no event yet"
	})

	// The agent is back.
	annotateNode(t, "silent-a", map[string]string{wellknown.TierLoadAnnotation: tierLoad(t, time.Now(), 2, nil)})
	eventually(t, 20*time.Second, "taint lifted", func() (bool, string) {
		var n corev1.Node
		if err := env.Client.Get(ctx, client.ObjectKey{Name: "silent-a"}, &n); err != nil {
			return false, err.Error()
		}
		for _, tt := range n.Spec.Taints {
			if tt.Key == taint {
				return false, "still tainted"
			}
		}
		return true, ""
	})
	eventually(t, 20*time.Second, "AgentBack event", func() (bool, string) {
		return hasEvent(t, "silent-a", "AgentBack", corev1.EventTypeNormal), "no event yet"
	})

	never := waitReport(t, "silent-never", "report of a node without agent", func(r *inferav1alpha1.NodeQoSReport) bool {
		c := cond(r, inferav1alpha1.ConditionAgentSilent)
		return c != nil
	})
	if c := cond(never, inferav1alpha1.ConditionAgentSilent); c.Status != metav1.ConditionFalse || c.Reason != inferav1alpha1.ReasonAgentNeverReported {
		t.Errorf("AgentSilent for a node that never had an agent = %+v", c)
	}
	var n corev1.Node
	if err := env.Client.Get(ctx, client.ObjectKey{Name: "silent-never"}, &n); err != nil {
		t.Fatal(err)
	}
	for _, tt := range n.Spec.Taints {
		if tt.Key == taint {
			t.Errorf("a node that never had an agent was tainted")
		}
	}
}

func hasEvent(t *testing.T, node, reason, typ string) bool {
	t.Helper()
	var list eventsv1.EventList
	if err := env.Client.List(context.Background(), &list); err != nil {
		t.Fatal(err)
	}
	for _, e := range list.Items {
		if e.Regarding.Kind == "Node" && e.Regarding.Name == node && e.Reason == reason && e.Type == typ {
			return true
		}
	}
	return false
}

// TestNodeQoSReportAdoptedByRecreatedNode: a report left over from an
// earlier Node of the same name (a different UID) is re-pointed at the new
// Node instead of being left for the garbage collector.
func TestNodeQoSReportAdoptedByRecreatedNode(t *testing.T) {
	startManager(t, nil)
	ctx := context.Background()
	isController := true
	stale := &inferav1alpha1.NodeQoSReport{ObjectMeta: metav1.ObjectMeta{
		Name: "nqr-recreated",
		OwnerReferences: []metav1.OwnerReference{{
			APIVersion: "v1", Kind: "Node", Name: "nqr-recreated", UID: "00000000-0000-0000-0000-000000000001", Controller: &isController,
		}},
	}}
	if err := env.Client.Create(ctx, stale); err != nil {
		t.Fatal(err)
	}
	createNode(t, "nqr-recreated", nil, nil)
	var node corev1.Node
	if err := env.Client.Get(ctx, client.ObjectKey{Name: "nqr-recreated"}, &node); err != nil {
		t.Fatal(err)
	}
	waitReport(t, "nqr-recreated", "the report owned by the new Node", func(r *inferav1alpha1.NodeQoSReport) bool {
		return len(r.OwnerReferences) == 1 && r.OwnerReferences[0].UID == node.UID && cond(r, inferav1alpha1.ConditionAgentHeartbeat) != nil
	})
}
