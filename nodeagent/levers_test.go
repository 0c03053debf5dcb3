package nodeagent

import (
	"os"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/utils/clock"

	configv1alpha1 "github.com/infera-io/temper/apis/config/v1alpha1"
	"github.com/infera-io/temper/nodeagent/cgroupfs"
	cgroupenf "github.com/infera-io/temper/nodeagent/enforcement/cgroup"
)

// TestLeversFromConfig: the agent config's [cgroup.levers] defaults are the
// cgroup backend's defaults (one decision, written in two packages that
// may not import each other), and each key reaches its lever.
func TestLeversFromConfig(t *testing.T) {
	got := leversFromConfig(configv1alpha1.DefaultAgentConfiguration().Cgroup.Levers)
	def := cgroupenf.DefaultLevers()
	// The backend's zero-valued switches mean "the default": spell them.
	def.BackgroundSchedIdle, def.BestEffortIdle, def.Suppress = cgroupenf.SwitchOff, cgroupenf.SwitchOff, cgroupenf.SwitchOff
	if d := cmp.Diff(def, got); d != "" {
		t.Errorf("config defaults differ from the backend's (-backend +config):\n%s", d)
	}

	c := configv1alpha1.AgentCgroupLevers{CriticalWeightFactor: 8, HighWeightFactor: 3, LowWeightDivisor: 16, BackgroundIdle: false,
		CriticalSlice: configv1alpha1.Duration{}, HighSlice: configv1alpha1.Duration{Duration: time.Millisecond},
		BackgroundSchedIdle: true, BestEffortQoSIdle: true, Suppress: true, SuppressHeadroomMilli: 700, SuppressFloorMilli: 50, SuppressStepMilli: 100}
	want := cgroupenf.Levers{CriticalWeightFactor: 8, HighWeightFactor: 3, LowWeightDivisor: 16, NoBackgroundIdle: true,
		CriticalSlice: -1, HighSlice: time.Millisecond, BackgroundSchedIdle: cgroupenf.SwitchOn, BestEffortIdle: cgroupenf.SwitchOn,
		Suppress: cgroupenf.SwitchOn, SuppressHeadroomMilli: 700, SuppressFloorMilli: 50, SuppressStepMilli: 100}
	if d := cmp.Diff(want, leversFromConfig(c)); d != "" {
		t.Errorf("levers (-want +got):\n%s", d)
	}
}

// TestConfiguredLeverReachesTheCgroup: a [cgroup.levers] value in the
// agent's configuration is what the running agent writes: critical weight
// factor 8 makes the kubelet's 39 into 312 (the default would be 156).
func TestConfiguredLeverReachesTheCgroup(t *testing.T) {
	tree, pod, _ := startTestAgent(t, clock.RealClock{}, func(c *configv1alpha1.AgentConfiguration) {
		c.Cgroup.Levers.CriticalWeightFactor = 8
	})
	cp := tree.AddPod(t, cgroupfs.DriverSystemd, string(pod.UID), corev1.PodQOSGuaranteed, cgroupfs.RuntimeContainerd)
	for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		b, _ := os.ReadFile(tree.Path(cgroupfs.CPU, cp.RelPath, "cpu.weight"))
		w := strings.TrimSpace(string(b))
		if w == "312" {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("cpu.weight = %s, want 312 (the kubelet's 39 × the configured 8)", w)
		}
	}
}
