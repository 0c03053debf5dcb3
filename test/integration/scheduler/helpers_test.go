package scheduler

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/infera-io/temper/apis/wellknown"
	"github.com/infera-io/temper/internal/localcluster"
)

const (
	// groupLabel keeps each test's pods on that test's nodes: every test
	// shares one API server and one scheduler.
	groupLabel    = "test.infera.io/group"
	inferaProfile = "infera-scheduler"
	waitTimeout   = 60 * time.Second
)

// usage is shorthand for a tier-load's tiers.
type usage = map[wellknown.Tier]wellknown.TierUsage

// tierLoad renders a tier-load confirmed at ts for a node of allocMilli CPU
// whose agent enforces with scx_layered and fences the critical requests.
func tierLoad(t *testing.T, ts time.Time, allocMilli int64, tiers usage) string {
	t.Helper()
	var fenced int64
	if c, ok := tiers[wellknown.TierCritical]; ok {
		fenced = (c.RequestMilli + 999) / 1000 * 1000
	}
	v, err := wellknown.TierLoad{TS: ts, Gen: 1, Backend: wellknown.BackendSCXLayered,
		AllocatableMilli: allocMilli, FencedMilli: fenced, Tiers: tiers}.Marshal()
	if err != nil {
		t.Fatalf("failed to marshal tier-load: %v", err)
	}
	return v
}

func fresh(t *testing.T, allocMilli int64, tiers usage) string {
	return tierLoad(t, time.Now(), allocMilli, tiers)
}

// noAnnotation makes a node without the tier-load annotation.
const noAnnotation = "\x00none"

// makeNode registers a Ready, untainted Node in group with cores CPUs and
// the given tier-load annotation value, and deletes it when the test ends.
func makeNode(t *testing.T, group, name string, cores int64, value string) *corev1.Node {
	t.Helper()
	capacity := corev1.ResourceList{
		corev1.ResourceCPU:    *resource.NewQuantity(cores, resource.DecimalSI),
		corev1.ResourceMemory: resource.MustParse("64Gi"),
		corev1.ResourcePods:   resource.MustParse("110"),
	}
	n := &corev1.Node{
		ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{groupLabel: group, corev1.LabelHostname: name}},
		Status:     corev1.NodeStatus{Capacity: capacity, Allocatable: capacity.DeepCopy()},
	}
	if value != noAnnotation {
		n.Annotations = map[string]string{wellknown.TierLoadAnnotation: value}
	}
	ctx := context.Background()
	if err := localcluster.RegisterNode(ctx, env.Client, n); err != nil {
		t.Fatalf("failed to register node %s: %v", name, err)
	}
	t.Cleanup(func() { _ = env.Client.Delete(context.Background(), n) })
	return n
}

// setAnnotation replaces a node's tier-load annotation.
func setAnnotation(t *testing.T, name, value string) {
	t.Helper()
	ctx := context.Background()
	var n corev1.Node
	if err := env.Client.Get(ctx, client.ObjectKey{Name: name}, &n); err != nil {
		t.Fatalf("failed to get node %s: %v", name, err)
	}
	patch := client.MergeFrom(n.DeepCopy())
	if n.Annotations == nil {
		n.Annotations = map[string]string{}
	}
	n.Annotations[wellknown.TierLoadAnnotation] = value
	if err := env.Client.Patch(ctx, &n, patch); err != nil {
		t.Fatalf("failed to annotate node %s: %v", name, err)
	}
}

// makePod creates a pod of tier requesting milli CPU, confined to group's
// nodes and scheduled by schedulerName (or bound to nodeName directly when
// it is set), and deletes it when the test ends.
func makePod(t *testing.T, group, name string, tier wellknown.Tier, milli int64, schedulerName, nodeName string) *corev1.Pod {
	t.Helper()
	p := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: metav1.NamespaceDefault},
		Spec: corev1.PodSpec{
			SchedulerName:     schedulerName,
			NodeName:          nodeName,
			PriorityClassName: "infera-" + string(tier),
			NodeSelector:      map[string]string{groupLabel: group},
			Containers: []corev1.Container{{
				Name: "app", Image: "registry.invalid/app:never-pulled",
				Resources: corev1.ResourceRequirements{Requests: corev1.ResourceList{
					corev1.ResourceCPU:    *resource.NewMilliQuantity(milli, resource.DecimalSI),
					corev1.ResourceMemory: resource.MustParse("64Mi"),
				}},
			}},
		},
	}
	ctx := context.Background()
	if err := env.Client.Create(ctx, p); err != nil {
		t.Fatalf("failed to create pod %s: %v", name, err)
	}
	t.Cleanup(func() { _ = env.Client.Delete(context.Background(), p, client.GracePeriodSeconds(0)) })
	return p
}

// waitBound waits for the pod to be bound and returns its node.
func waitBound(t *testing.T, p *corev1.Pod) string {
	t.Helper()
	var got corev1.Pod
	err := wait.PollUntilContextTimeout(context.Background(), 50*time.Millisecond, waitTimeout, true, func(ctx context.Context) (bool, error) {
		if err := env.Client.Get(ctx, client.ObjectKeyFromObject(p), &got); err != nil {
			return false, err
		}
		return got.Spec.NodeName != "", nil
	})
	if err != nil {
		t.Fatalf("pod %s was not bound: %v (conditions: %s)", p.Name, err, conditions(&got))
	}
	return got.Spec.NodeName
}

// place creates a pod with the infera profile and returns where it landed.
func place(t *testing.T, group, name string, tier wellknown.Tier, milli int64) string {
	t.Helper()
	return waitBound(t, makePod(t, group, name, tier, milli, inferaProfile, ""))
}

// waitUnschedulable waits until the scheduler reports the pod unschedulable
// with a message containing want, and returns the message.
func waitUnschedulable(t *testing.T, p *corev1.Pod, want string) string {
	t.Helper()
	var got corev1.Pod
	var msg string
	err := wait.PollUntilContextTimeout(context.Background(), 50*time.Millisecond, waitTimeout, true, func(ctx context.Context) (bool, error) {
		if err := env.Client.Get(ctx, client.ObjectKeyFromObject(p), &got); err != nil {
			return false, err
		}
		if got.Spec.NodeName != "" {
			return false, fmt.Errorf("pod was bound to %s", got.Spec.NodeName)
		}
		for _, c := range got.Status.Conditions {
			if c.Type == corev1.PodScheduled && c.Status == corev1.ConditionFalse && strings.Contains(c.Message, want) {
				msg = c.Message
				return true, nil
			}
		}
		return false, nil
	})
	if err != nil {
		t.Fatalf("pod %s not reported unschedulable with %q: %v (conditions: %s)", p.Name, want, err, conditions(&got))
	}
	return msg
}

func conditions(p *corev1.Pod) string {
	var b strings.Builder
	for _, c := range p.Status.Conditions {
		fmt.Fprintf(&b, "%s=%s %s: %s; ", c.Type, c.Status, c.Reason, c.Message)
	}
	return b.String()
}

// waitGone waits until the pod is deleted.
func waitGone(t *testing.T, p *corev1.Pod) {
	t.Helper()
	err := wait.PollUntilContextTimeout(context.Background(), 50*time.Millisecond, waitTimeout, true, func(ctx context.Context) (bool, error) {
		err := env.Client.Get(ctx, client.ObjectKeyFromObject(p), &corev1.Pod{})
		if apierrors.IsNotFound(err) {
			return true, nil
		}
		return false, err
	})
	if err != nil {
		t.Fatalf("pod %s was not deleted: %v", p.Name, err)
	}
}

// cordon marks a node unschedulable.
func cordon(t *testing.T, name string) {
	t.Helper()
	ctx := context.Background()
	var n corev1.Node
	if err := env.Client.Get(ctx, client.ObjectKey{Name: name}, &n); err != nil {
		t.Fatalf("failed to get node %s: %v", name, err)
	}
	patch := client.MergeFrom(n.DeepCopy())
	n.Spec.Unschedulable = true
	if err := env.Client.Patch(ctx, &n, patch); err != nil {
		t.Fatalf("failed to cordon node %s: %v", name, err)
	}
}
