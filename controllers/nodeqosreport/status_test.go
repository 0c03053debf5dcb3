package nodeqosreport

import (
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apimeta "k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	inferav1alpha1 "github.com/infera-io/temper/apis/infera/v1alpha1"
	"github.com/infera-io/temper/apis/wellknown"
)

func TestObserveAndMirror(t *testing.T) {
	now := time.Date(2026, 11, 26, 18, 0, 0, 0, time.UTC)
	load := func(age time.Duration) string {
		v, err := wellknown.TierLoad{TS: now.Add(-age), Gen: 3, Backend: wellknown.BackendSCXLayered,
			Tiers: map[wellknown.Tier]wellknown.TierUsage{wellknown.TierHigh: {Pods: 4, RequestMilli: 1500}}}.Marshal()
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
	const maxAge, silent = 180 * time.Second, 300 * time.Second
	type want struct {
		heartbeat, valid, enforcing, silent string // condition reasons
		next                                time.Duration
		highPods                            int32
	}
	tests := map[string]struct {
		annotations map[string]string
		want        want
	}{
		"fresh": {map[string]string{wellknown.TierLoadAnnotation: load(30 * time.Second), wellknown.AgentStatusAnnotation: wellknown.AgentStatusEnforcingSCX},
			want{inferav1alpha1.ReasonHeartbeatFresh, inferav1alpha1.ReasonAnnotationsParsed, inferav1alpha1.ReasonAgentEnforcing, inferav1alpha1.ReasonAgentReporting, 151 * time.Second, 4}},
		"stale, not yet silent": {map[string]string{wellknown.TierLoadAnnotation: load(200 * time.Second), wellknown.AgentStatusAnnotation: wellknown.AgentStatusSafeMode},
			want{inferav1alpha1.ReasonHeartbeatStale, inferav1alpha1.ReasonAnnotationsParsed, inferav1alpha1.ReasonAgentNotEnforcing, inferav1alpha1.ReasonAgentReporting, 101 * time.Second, 4}},
		"silent": {map[string]string{wellknown.TierLoadAnnotation: load(400 * time.Second)},
			want{inferav1alpha1.ReasonHeartbeatStale, inferav1alpha1.ReasonAnnotationsParsed, inferav1alpha1.ReasonAgentNotEnforcing, inferav1alpha1.ReasonAgentSilent, 0, 4}},
		"missing": {nil,
			want{inferav1alpha1.ReasonHeartbeatMissing, inferav1alpha1.ReasonAnnotationsParsed, inferav1alpha1.ReasonAgentNotEnforcing, inferav1alpha1.ReasonAgentNeverReported, 0, 0}},
		"malformed tier-load": {map[string]string{wellknown.TierLoadAnnotation: `{"v":2}`},
			want{inferav1alpha1.ReasonHeartbeatMissing, inferav1alpha1.ReasonMalformedTierLoad, inferav1alpha1.ReasonAgentNotEnforcing, inferav1alpha1.ReasonAgentNeverReported, 0, 0}},
		"malformed agent-status": {map[string]string{wellknown.TierLoadAnnotation: load(0), wellknown.AgentStatusAnnotation: "enforcing/magic"},
			want{inferav1alpha1.ReasonHeartbeatFresh, inferav1alpha1.ReasonMalformedStatus, inferav1alpha1.ReasonMalformedStatus, inferav1alpha1.ReasonAgentReporting, 181 * time.Second, 4}},
		"dated in the future": {map[string]string{wellknown.TierLoadAnnotation: load(-time.Hour)},
			want{inferav1alpha1.ReasonHeartbeatStale, inferav1alpha1.ReasonAnnotationsParsed, inferav1alpha1.ReasonAgentNotEnforcing, inferav1alpha1.ReasonAgentReporting, 0, 4}},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			node := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "n", Annotations: tc.annotations}}
			o := observe(node, now, maxAge, silent)
			var st inferav1alpha1.NodeQoSReportStatus
			mirror(&st, node, o, 1)
			reason := func(typ string) string {
				c := apimeta.FindStatusCondition(st.Conditions, typ)
				if c == nil {
					return "<none>"
				}
				return c.Reason
			}
			got := want{reason(inferav1alpha1.ConditionAgentHeartbeat), reason(inferav1alpha1.ConditionAnnotationsValid),
				reason(inferav1alpha1.ConditionEnforcing), reason(inferav1alpha1.ConditionAgentSilent), o.next, st.Tiers.High.Pods}
			if got != tc.want {
				t.Errorf("got  %+v\nwant %+v", got, tc.want)
			}
			if c := apimeta.FindStatusCondition(st.Conditions, inferav1alpha1.ConditionAnnotationsValid); c.Status == metav1.ConditionFalse &&
				!strings.Contains(c.Message, "infera.io/") {
				t.Errorf("AnnotationsValid message %q names no key", c.Message)
			}
		})
	}
}

// TestPhase: the default table shows one word; the sentence stays in
// agentStatus and the Enforcing condition.
func TestPhase(t *testing.T) {
	long := wellknown.FormatAgentStatus(wellknown.AgentStatusRefusedPrefix, "kernel has no sched_ext; cgroup backend: "+strings.Repeat("no kubepods cgroup under /sys/fs/cgroup ", 6))
	tests := map[string]struct {
		status string // "" means the annotation is absent
		want   inferav1alpha1.NodeQoSPhase
	}{
		"scx":          {wellknown.AgentStatusEnforcingSCX, inferav1alpha1.PhaseEnforcing},
		"cgroup":       {wellknown.AgentStatusEnforcingCgroup, inferav1alpha1.PhaseEnforcing},
		"observe-only": {wellknown.AgentStatusObserveOnly, inferav1alpha1.PhaseObserveOnly},
		"safe mode":    {wellknown.AgentStatusSafeMode, inferav1alpha1.PhaseSafeMode},
		"degraded":     {wellknown.FormatAgentStatus(wellknown.AgentStatusDegradedPrefix, "scx_layered exited 3 times"), inferav1alpha1.PhaseDegraded},
		"refused":      {long, inferav1alpha1.PhaseRefused},
		"absent":       {"", inferav1alpha1.PhaseUnknown},
		"malformed":    {"enforcing/magic", inferav1alpha1.PhaseUnknown},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			node := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "n", Annotations: map[string]string{}}}
			if tc.status != "" {
				node.Annotations[wellknown.AgentStatusAnnotation] = tc.status
			}
			var st inferav1alpha1.NodeQoSReportStatus
			mirror(&st, node, observe(node, time.Now(), time.Minute, time.Hour), 1)
			if st.Phase != tc.want {
				t.Errorf("phase = %q, want %q", st.Phase, tc.want)
			}
			if st.AgentStatus != tc.status {
				t.Errorf("agentStatus = %q, want the annotation verbatim %q", st.AgentStatus, tc.status)
			}
			if tc.status != "" && tc.want != inferav1alpha1.PhaseUnknown {
				c := apimeta.FindStatusCondition(st.Conditions, inferav1alpha1.ConditionEnforcing)
				if c == nil || !strings.Contains(c.Message, tc.status) {
					t.Errorf("the Enforcing condition should carry the full status %q, got %+v", tc.status, c)
				}
			}
		})
	}
}
