package podstate

import (
	"testing"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/infera-io/temper/apis/wellknown"
)

func TestNodeChangeMatters(t *testing.T) {
	base := func() *corev1.Node {
		return &corev1.Node{
			ObjectMeta: metav1.ObjectMeta{Name: "n1", UID: "u1", ResourceVersion: "1", Labels: map[string]string{"a": "b"},
				Annotations: map[string]string{wellknown.AgentStatusAnnotation: "enforcing/cgroup", wellknown.TierLoadAnnotation: `{"gen":1}`, "example.com/other": "1"}},
			Status: corev1.NodeStatus{Allocatable: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("2")},
				Conditions: []corev1.NodeCondition{{Type: corev1.NodeReady, Status: corev1.ConditionTrue}}},
		}
	}
	for _, c := range []struct {
		name   string
		change func(n *corev1.Node)
		want   bool
	}{
		{"resync, nothing changed", func(*corev1.Node) {}, false},
		{"kubelet heartbeat", func(n *corev1.Node) {
			n.ResourceVersion = "2"
			n.Status.Conditions[0].LastHeartbeatTime = metav1.Now()
			n.Status.Images = []corev1.ContainerImage{{Names: []string{"x"}}}
		}, false},
		{"the agent's own status and tier load", func(n *corev1.Node) {
			n.Annotations[wellknown.AgentStatusAnnotation] = "safe-mode"
			n.Annotations[wellknown.TierLoadAnnotation] = `{"gen":2}`
		}, false},
		{"safe mode requested", func(n *corev1.Node) { n.Annotations[wellknown.SafeModeRequestedAnnotation] = "true" }, true},
		{"priority mapping changed", func(n *corev1.Node) { n.Annotations[wellknown.PriorityMappingAnnotation] = "{}" }, true},
		{"another annotation removed", func(n *corev1.Node) { delete(n.Annotations, "example.com/other") }, true},
		{"only the agent's own annotations removed", func(n *corev1.Node) {
			delete(n.Annotations, wellknown.AgentStatusAnnotation)
			delete(n.Annotations, wellknown.TierLoadAnnotation)
		}, false},
		{"a label changed", func(n *corev1.Node) { n.Labels["a"] = "c" }, true},
		{"allocatable changed", func(n *corev1.Node) { n.Status.Allocatable[corev1.ResourceCPU] = resource.MustParse("3") }, true},
		{"cordoned", func(n *corev1.Node) { n.Spec.Unschedulable = true }, true},
		{"recreated", func(n *corev1.Node) { n.UID = "u2" }, true},
	} {
		t.Run(c.name, func(t *testing.T) {
			o, n := base(), base()
			c.change(n)
			if got := NodeChangeMatters(o, n); got != c.want {
				t.Errorf("NodeChangeMatters = %v, want %v", got, c.want)
			}
		})
	}
	if !NodeChangeMatters("not a node", base()) {
		t.Error("an unexpected object must count as a change")
	}
}
