package nodeagent

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/go-logr/logr/testr"

	configv1alpha1 "github.com/infera-io/temper/apis/config/v1alpha1"
	"github.com/infera-io/temper/apis/wellknown"
	"github.com/infera-io/temper/nodeagent/cgroupfs"
	"github.com/infera-io/temper/nodeagent/cgroupfs/cgrouptest"
	"github.com/infera-io/temper/test/standin/standintest"
)

// Backend selection, through Probe, on faked nodes.
func TestProbeSelectsLikeTheAgent(t *testing.T) {
	type node struct{ schedExt, binary, kubelet, btf bool }
	tests := map[string]struct {
		backend    configv1alpha1.AgentBackend
		node       node
		wantName   string
		wantStatus string // prefix
	}{
		"auto, sched_ext and binary":         {configv1alpha1.AgentBackendAuto, node{true, true, true, false}, wellknown.BackendSCXLayered, wellknown.AgentStatusEnforcingSCX},
		"auto, no sched_ext, kubelet tree":   {configv1alpha1.AgentBackendAuto, node{false, true, true, false}, wellknown.BackendCgroup, wellknown.AgentStatusEnforcingCgroup},
		"auto, sched_ext but no binary":      {configv1alpha1.AgentBackendAuto, node{true, false, true, false}, wellknown.BackendCgroup, wellknown.AgentStatusEnforcingCgroup},
		"auto, nothing":                      {configv1alpha1.AgentBackendAuto, node{false, false, false, false}, wellknown.BackendObserveOnly, "refused: kernel has no sched_ext; cgroup backend: "},
		"scx asked, no sched_ext":            {configv1alpha1.AgentBackendSCX, node{false, true, true, false}, wellknown.BackendObserveOnly, "refused: backend scx: kernel has no sched_ext"},
		"cgroup asked, no kubelet tree":      {configv1alpha1.AgentBackendCgroup, node{true, true, false, false}, wellknown.BackendObserveOnly, "refused: cgroup backend: "},
		"observe-only asked":                 {configv1alpha1.AgentBackendObserveOnly, node{true, true, true, true}, wellknown.BackendObserveOnly, wellknown.AgentStatusObserveOnly},
		"auto, sched_ext and BTF, no binary": {configv1alpha1.AgentBackendAuto, node{true, false, true, true}, wellknown.BackendTierSched, wellknown.AgentStatusEnforcingTiers},
		"auto, sched_ext, BTF and binary":    {configv1alpha1.AgentBackendAuto, node{true, true, true, true}, wellknown.BackendSCXLayered, wellknown.AgentStatusEnforcingSCX},
		"temper-tiers asked, no BTF":         {configv1alpha1.AgentBackendTierSched, node{true, false, true, false}, wellknown.BackendObserveOnly, "refused: backend temper-tiers: kernel has no BTF"},
		"temper-tiers asked, no sched_ext":   {configv1alpha1.AgentBackendTierSched, node{false, false, true, true}, wellknown.BackendObserveOnly, "refused: backend temper-tiers: kernel has no sched_ext"},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			dir := t.TempDir()
			cfg := configv1alpha1.DefaultAgentConfiguration()
			cfg.Backend = tc.backend
			cfg.SysRoot = filepath.Join(dir, "sys")
			if tc.node.schedExt {
				if err := standintest.FakeSchedExt(filepath.Join(cfg.SysRoot, "kernel", "sched_ext")); err != nil {
					t.Fatal(err)
				}
			}
			if tc.node.btf {
				btf := filepath.Join(cfg.SysRoot, "kernel", "btf", "vmlinux")
				if err := os.MkdirAll(filepath.Dir(btf), 0o755); err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(btf, nil, 0o444); err != nil {
					t.Fatal(err)
				}
			}
			cfg.SCX.Binary = filepath.Join(dir, "scx_layered")
			if tc.node.binary {
				if err := os.WriteFile(cfg.SCX.Binary, []byte("#!/bin/sh\n"), 0o755); err != nil {
					t.Fatal(err)
				}
			}
			tree := cgrouptest.NewV2(t, cgrouptest.Options{CPUs: "0-3"})
			if tc.node.kubelet {
				tree.Kubelet(t, cgroupfs.DriverSystemd)
			}
			cfg.Cgroup.Root = tree.Root
			gotName, gotStatus, why := Probe(cfg, testr.New(t))
			if gotName != tc.wantName || !strings.HasPrefix(gotStatus, tc.wantStatus) {
				t.Errorf("Probe = %q, %q (%s); want %q, %q…", gotName, gotStatus, why, tc.wantName, tc.wantStatus)
			}
		})
	}
}
