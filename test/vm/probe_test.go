package vm_test

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/go-logr/logr/testr"

	configv1alpha1 "github.com/infera-io/temper/apis/config/v1alpha1"
	"github.com/infera-io/temper/apis/wellknown"
	"github.com/infera-io/temper/nodeagent"
)

// The agent's own selection rules on a real sched_ext + cgroup v2 kernel:
// auto picks scx_layered when the kernel has sched_ext and the binary is
// there, and the cgroup backend when the binary is missing but the kubelet's
// pod root exists.
func TestAgentProbeOnSchedExtKernel(t *testing.T) {
	dir := schedulers(t)
	cfg := configv1alpha1.DefaultAgentConfiguration()
	cfg.SCX.Binary = filepath.Join(dir, "scx_layered_standin")
	if name, status := nodeagent.Probe(cfg, testr.New(t)); name != wellknown.BackendSCXLayered || status != wellknown.AgentStatusEnforcingSCX {
		t.Errorf("Probe with sched_ext and the binary = %q, %q; want scx_layered", name, status)
	}

	cfg.SCX.Binary = filepath.Join(t.TempDir(), "missing", "scx_layered")
	kp := filepath.Join(cfg.Cgroup.Root, "kubepods.slice")
	if err := os.Mkdir(kp, 0o755); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = os.Remove(kp) })
	if name, status := nodeagent.Probe(cfg, testr.New(t)); name != wellknown.BackendCgroup || status != wellknown.AgentStatusEnforcingCgroup {
		t.Errorf("Probe without the binary, with a kubelet pod root = %q, %q; want the cgroup backend", name, status)
	}
}
