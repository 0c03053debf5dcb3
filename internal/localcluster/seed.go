package localcluster

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"runtime"
	"strconv"
	"strings"

	corev1 "k8s.io/api/core/v1"
	schedulingv1 "k8s.io/api/scheduling/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/infera-io/temper/apis/wellknown"
)

// PartOfLabel marks the objects the local cluster seeds.
const PartOfLabel = "app.kubernetes.io/part-of"

// InstallPriorityClasses creates the PriorityClasses of DESIGN.md §2,
// leaving existing ones as they are.
func InstallPriorityClasses(ctx context.Context, c client.Client) error {
	preempt := corev1.PreemptLowerPriority
	for _, pc := range wellknown.PriorityClasses() {
		obj := &schedulingv1.PriorityClass{
			ObjectMeta:       metav1.ObjectMeta{Name: pc.Name, Labels: map[string]string{PartOfLabel: "temper"}},
			Value:            pc.Value,
			Description:      fmt.Sprintf("Temper %s tier (DESIGN.md §2)", pc.Tier),
			PreemptionPolicy: &preempt,
		}
		if err := c.Create(ctx, obj); err != nil && !apierrors.IsAlreadyExists(err) {
			return fmt.Errorf("failed to create PriorityClass %s: %w", pc.Name, err)
		}
	}
	return nil
}

// MachineNode describes this machine as a Node: its hostname, CPU count and
// memory. No kubelet runs, so RegisterNode also marks it Ready.
func MachineNode(name string) (*corev1.Node, error) {
	mem, err := memTotal()
	if err != nil {
		return nil, err
	}
	cpu := resource.MustParse(strconv.Itoa(runtime.NumCPU()))
	capacity := corev1.ResourceList{
		corev1.ResourceCPU:    cpu,
		corev1.ResourceMemory: *resource.NewQuantity(mem, resource.BinarySI),
		corev1.ResourcePods:   resource.MustParse("110"),
	}
	return &corev1.Node{
		ObjectMeta: metav1.ObjectMeta{
			Name: name,
			Labels: map[string]string{
				corev1.LabelHostname:   name,
				corev1.LabelOSStable:   runtime.GOOS,
				corev1.LabelArchStable: runtime.GOARCH,
				PartOfLabel:            "temper",
			},
		},
		Status: corev1.NodeStatus{Capacity: capacity, Allocatable: capacity.DeepCopy(),
			// The gateway reaches the agent at the InternalIP (NodeAddress
			// discovery, WireAgent): loopback here.
			Addresses: []corev1.NodeAddress{{Type: corev1.NodeInternalIP, Address: "127.0.0.1"}, {Type: corev1.NodeHostName, Address: name}}},
	}, nil
}

// RegisterNode creates node (or adopts an existing one), marks it Ready and
// lifts the not-ready taint the API server's admission puts on new Nodes
// (the node-lifecycle controller would, but none runs here).
func RegisterNode(ctx context.Context, c client.Client, node *corev1.Node) error {
	want := node.Status.DeepCopy()
	if err := c.Create(ctx, node); err != nil && !apierrors.IsAlreadyExists(err) {
		return fmt.Errorf("failed to create Node %s: %w", node.Name, err)
	}
	if err := c.Get(ctx, client.ObjectKeyFromObject(node), node); err != nil {
		return fmt.Errorf("failed to get Node %s: %w", node.Name, err)
	}
	now := metav1.Now()
	node.Status.Capacity, node.Status.Allocatable, node.Status.Addresses = want.Capacity, want.Allocatable, want.Addresses
	node.Status.Conditions = []corev1.NodeCondition{{
		Type: corev1.NodeReady, Status: corev1.ConditionTrue, Reason: "TemperLocal",
		Message: "registered by infera-local (no kubelet runs here)", LastHeartbeatTime: now, LastTransitionTime: now,
	}}
	if err := c.Status().Update(ctx, node); err != nil {
		return fmt.Errorf("failed to mark Node %s Ready: %w", node.Name, err)
	}
	node.Spec.Taints = nil
	if err := c.Update(ctx, node); err != nil {
		return fmt.Errorf("failed to lift taints of Node %s: %w", node.Name, err)
	}
	return nil
}

func memTotal() (int64, error) {
	f, err := os.Open("/proc/meminfo")
	if err != nil {
		return 0, fmt.Errorf("failed to read memory size: %w", err)
	}
	defer func() { _ = f.Close() }()
	s := bufio.NewScanner(f)
	for s.Scan() {
		fields := strings.Fields(s.Text())
		if len(fields) >= 2 && fields[0] == "MemTotal:" {
			kb, err := strconv.ParseInt(fields[1], 10, 64)
			if err != nil {
				return 0, fmt.Errorf("failed to parse MemTotal: %w", err)
			}
			return kb * 1024, nil
		}
	}
	return 0, fmt.Errorf("failed to find MemTotal in /proc/meminfo")
}
