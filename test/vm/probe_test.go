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
// there, the built-in tier scheduler when the binary is missing (the kernel
// has BTF and the kubelet's pod root is on cgroup v2), and the cgroup
// backend when that is what the config asks for.
func TestAgentProbeOnSchedExtKernel(t *testing.T) {
	dir := schedulers(t)
	cfg := configv1alpha1.DefaultAgentConfiguration()
	cfg.SCX.Binary = filepath.Join(dir, "scx_layered_standin")
	if name, status, why := nodeagent.Probe(cfg, testr.New(t)); name != wellknown.BackendSCXLayered || status != wellknown.AgentStatusEnforcingSCX {
		t.Errorf("Probe with sched_ext and the binary = %q, %q (%s); want scx_layered", name, status, why)
	}

	cfg.SCX.Binary = filepath.Join(t.TempDir(), "missing", "scx_layered")
	kp := filepath.Join(cfg.Cgroup.Root, "kubepods.slice")
	if err := os.Mkdir(kp, 0o755); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = os.Remove(kp) })
	name, status, why := nodeagent.Probe(cfg, testr.New(t))
	if name != wellknown.BackendTierSched || status != wellknown.AgentStatusEnforcingTiers {
		t.Errorf("Probe without the binary, with a kubelet pod root = %q, %q (%s); want the built-in tier scheduler", name, status, why)
	}
	t.Logf("--probe: backend %s, agent-status %s, why: %s", name, status, why)
	cfg.Backend = configv1alpha1.AgentBackendCgroup
	if name, status, why := nodeagent.Probe(cfg, testr.New(t)); name != wellknown.BackendCgroup || status != wellknown.AgentStatusEnforcingCgroup {
		t.Errorf("Probe with backend cgroup = %q, %q (%s); want the cgroup backend", name, status, why)
	}
}
