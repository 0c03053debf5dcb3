package agent

import (
	"context"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	schedulingv1 "k8s.io/api/scheduling/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	inferav1alpha1 "github.com/infera-io/temper/apis/infera/v1alpha1"
	"github.com/infera-io/temper/apis/tiering"
	"github.com/infera-io/temper/apis/wellknown"
	"github.com/infera-io/temper/controllers"
	"github.com/infera-io/temper/nodeagent/cgroupfs"
)

// startControllers runs the manager's controllers (no webhook) against the
// envtest API server until the test ends.
func startControllers(t *testing.T) {
	t.Helper()
	mgr, err := ctrl.NewManager(env.Config, ctrl.Options{
		Scheme:                 env.Scheme,
		Metrics:                metricsserver.Options{BindAddress: "0"},
		HealthProbeBindAddress: "0",
	})
	must(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	if name, err := controllers.SetupControllers(ctx, mgr, controllers.Options{
		PlatformNamespace: "infera-system", TierLoadMaxAge: wellknown.TierLoadMaxAge, SilentAfter: 5 * time.Minute,
		TaintKey: wellknown.AgentSilentTaintKey, TaintEffect: corev1.TaintEffectNoSchedule,
	}); err != nil {
		cancel()
		t.Fatalf("controller %s: %v", name, err)
	}
	done := make(chan error, 1)
	go func() { done <- mgr.Start(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("manager stopped with %v", err)
		}
	})
}

// TestPolicyPriorityMappingRetiersRunningPods is the GitOps path of
// InferaPolicy.spec.priorityMapping end to end: the manager's InferaPolicy
// controller copies the mapping into infera.io/priority-mapping on the
// selected node, and the node's agent (no CRD access needed) re-tiers the
// pods already running there, re-enforces them and publishes the new
// tier-load. Changing the policy re-tiers again; deleting it restores the
// agent config's thresholds (the defaults).
func TestPolicyPriorityMappingRetiersRunningPods(t *testing.T) {
	ctx := context.Background()
	const node = "agent-node-mapping"
	r := newRigWith(t, node, 200*time.Millisecond, rigOptions{noSchedExt: true})
	r.waitAnnotations("cgroup enforcement", func(s string, _ wellknown.TierLoad) bool { return s == wellknown.AgentStatusEnforcingCgroup })

	// Label the node so only this test's policy selects it.
	var n corev1.Node
	must(t, env.Client.Get(ctx, types.NamespacedName{Name: node}, &n))
	patch := client.MergeFrom(n.DeepCopy())
	if n.Labels == nil {
		n.Labels = map[string]string{}
	}
	n.Labels["infera.io/test-pool"] = "mapping"
	must(t, env.Client.Patch(ctx, &n, patch))

	// A PriorityClass between the default critical (1,000,000) and high
	// (100,000) thresholds.
	pc := &schedulingv1.PriorityClass{ObjectMeta: metav1.ObjectMeta{Name: "mapping-test-600k"}, Value: 600_000}
	if err := env.Client.Create(ctx, pc); err != nil && !apierrors.IsAlreadyExists(err) {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = env.Client.Delete(context.Background(), pc) })

	specs := []podSpec{
		{name: "p600k", class: pc.Name, cpu: "1", mem: "64Mi", limitCPU: "="},
		{name: "high", class: "infera-high", cpu: "500m", mem: "64Mi"},
		{name: "normal", class: "infera-normal", cpu: "250m", mem: "64Mi"},
	}
	r.createPods(specs)
	pods := r.assignedCgroups(len(specs))
	tierOf := func(name string) wellknown.Tier {
		for _, a := range r.agent.Assignments() {
			if a.Pod.Name == name {
				return a.Tier
			}
		}
		return ""
	}
	cpuDir := func(name string) string { return pods[name].Cgroup.Dirs[cgroupfs.CPU] }
	setDir := func(name string) string { return pods[name].Cgroup.Dirs[cgroupfs.CPUSet] }
	defaults := map[wellknown.Tier]int32{wellknown.TierHigh: 2, wellknown.TierNormal: 1}
	r.waitAnnotations("default tiers: p600k and high in high", func(_ string, l wellknown.TierLoad) bool { return countsMatch(l, defaults) })
	waitFile(t, cpuDir("high"), "cpu.weight", "40") // high: 2 × the kubelet's 20
	if got := tierOf("p600k"); got != wellknown.TierHigh {
		t.Fatalf("p600k tier = %s before any policy, want high", got)
	}
	defaultSet := readFile(t, setDir("p600k"), "cpuset.cpus")

	startControllers(t)
	pol := &inferav1alpha1.InferaPolicy{
		ObjectMeta: metav1.ObjectMeta{Name: "mapping-test"},
		Spec: inferav1alpha1.InferaPolicySpec{
			NodeSelector:    metav1.LabelSelector{MatchLabels: map[string]string{"infera.io/test-pool": "mapping"}},
			PriorityMapping: &inferav1alpha1.PriorityMapping{Critical: 500_000, High: 200_000, Normal: 0, Low: -100},
		},
	}
	must(t, env.Client.Create(ctx, pol))
	t.Cleanup(func() { _ = env.Client.Delete(context.Background(), pol) })

	// The manager writes the mapping on the node...
	waitNodeMapping(t, node, func(m *tiering.NodeMapping) bool {
		return m != nil && m.Policy == pol.Name && m.Thresholds == tiering.Thresholds{Critical: 500_000, High: 200_000, Normal: 0, Low: -100}
	})
	// ...and the agent re-tiers the running pods: p600k is critical (fenced
	// on the top core), the infera-high pod (100,000) is normal now.
	mapped := map[wellknown.Tier]int32{wellknown.TierCritical: 1, wellknown.TierNormal: 2}
	_, load := r.waitAnnotations("p600k critical, high normal", func(_ string, l wellknown.TierLoad) bool { return countsMatch(l, mapped) })
	if load.FencedMilli != 1000 || load.Tiers[wellknown.TierCritical].RequestMilli != 1000 {
		t.Errorf("tier-load after the mapping: fenced %d, critical %+v; want one fenced core for p600k", load.FencedMilli, load.Tiers[wellknown.TierCritical])
	}
	waitFile(t, setDir("p600k"), "cpuset.cpus", "7")
	waitFile(t, cpuDir("high"), "cpu.weight", "20") // normal: the kubelet's value
	if got := tierOf("p600k"); got != wellknown.TierCritical {
		t.Errorf("p600k tier = %s under the policy, want critical", got)
	}
	waitPolicyReady(t, pol.Name)

	// Changing the policy changes the tiers again: critical from 700,000
	// makes p600k high, and high from 100,000 makes the infera-high pod
	// high again.
	must(t, env.Client.Get(ctx, client.ObjectKeyFromObject(pol), pol))
	pol.Spec.PriorityMapping = &inferav1alpha1.PriorityMapping{Critical: 700_000, High: 100_000, Normal: 0, Low: -100}
	must(t, env.Client.Update(ctx, pol))
	waitNodeMapping(t, node, func(m *tiering.NodeMapping) bool { return m != nil && m.Thresholds.Critical == 700_000 })
	r.waitAnnotations("back to two high pods after the update", func(_ string, l wellknown.TierLoad) bool {
		return countsMatch(l, defaults) && l.FencedMilli == 0
	})
	waitFile(t, cpuDir("high"), "cpu.weight", "40")

	// Back to a mapping that moves pods, then delete the policy: the
	// annotation goes and the defaults return.
	must(t, env.Client.Get(ctx, client.ObjectKeyFromObject(pol), pol))
	pol.Spec.PriorityMapping.Critical = 500_000
	must(t, env.Client.Update(ctx, pol))
	r.waitAnnotations("p600k critical again", func(_ string, l wellknown.TierLoad) bool { return l.Tiers[wellknown.TierCritical].Pods == 1 })
	must(t, env.Client.Delete(ctx, pol))
	waitNodeMapping(t, node, func(m *tiering.NodeMapping) bool { return m == nil })
	r.waitAnnotations("defaults after the policy is deleted", func(_ string, l wellknown.TierLoad) bool {
		return countsMatch(l, defaults) && l.FencedMilli == 0
	})
	waitFile(t, setDir("p600k"), "cpuset.cpus", defaultSet)
	waitFile(t, cpuDir("high"), "cpu.weight", "40")
	if got := tierOf("p600k"); got != wellknown.TierHigh {
		t.Errorf("p600k tier = %s after the policy is gone, want high", got)
	}
}

// waitNodeMapping waits until the node's infera.io/priority-mapping (nil
// when absent) satisfies cond.
func waitNodeMapping(t *testing.T, node string, cond func(*tiering.NodeMapping) bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	var last string
	for {
		var n corev1.Node
		must(t, env.Client.Get(context.Background(), types.NamespacedName{Name: node}, &n))
		var m *tiering.NodeMapping
		if v, ok := n.Annotations[wellknown.PriorityMappingAnnotation]; ok {
			parsed, err := tiering.ParseNodeMapping(v)
			if err != nil {
				t.Fatalf("the manager wrote an invalid mapping: %v", err)
			}
			m, last = &parsed, v
		} else {
			last = "(absent)"
		}
		if cond(m) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for the node's %s: %s", wellknown.PriorityMappingAnnotation, last)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func waitPolicyReady(t *testing.T, name string) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		var p inferav1alpha1.InferaPolicy
		must(t, env.Client.Get(context.Background(), types.NamespacedName{Name: name}, &p))
		for _, c := range p.Status.Conditions {
			if c.Type == inferav1alpha1.ConditionReady && c.Status == metav1.ConditionTrue && p.Status.ObservedGeneration == p.Generation {
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("InferaPolicy %s not Ready: %+v", name, p.Status)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
