package nodeagent

import (
	"errors"
	"fmt"
	"path/filepath"

	"github.com/go-logr/logr"

	configv1alpha1 "github.com/infera-io/temper/apis/config/v1alpha1"
	"github.com/infera-io/temper/apis/wellknown"
	"github.com/infera-io/temper/nodeagent/cgroupfs"
	"github.com/infera-io/temper/nodeagent/enforcement"
	scxenf "github.com/infera-io/temper/nodeagent/enforcement/scx"
)

// probed stands for a backend the probe would select.
type probed struct {
	observeOnly
	name, status string
}

func (p probed) Name() string { return p.name }
func (p probed) Report() enforcement.Report {
	return enforcement.Report{Status: p.status}
}

// Probe says which backend an agent with cfg would select on this node,
// the agent-status it would start from, and why, by the same rules as the
// agent (`infera-agent --probe`). It starts nothing, loads nothing, writes
// nothing and takes no lock, so it may run beside a live agent.
func Probe(cfg *configv1alpha1.AgentConfiguration, log logr.Logger) (name, status, why string) {
	sysfs := scxenf.SysFS{Root: filepath.Join(cfg.SysRoot, "kernel", "sched_ext")}
	detect := func() (*cgroupfs.Layout, error) {
		return cgroupfs.Detect(cfg.Cgroup.Root, cgroupfs.DetectOptions{Driver: cgroupDriver(cfg.Cgroup.Driver), KubepodsDir: cfg.Cgroup.KubepodsPath})
	}
	sel := selectors{
		scx: func() backend {
			return probed{name: wellknown.BackendSCXLayered, status: wellknown.AgentStatusEnforcingSCX}
		},
		tiers: func(backend) backend {
			return probed{name: wellknown.BackendTierSched, status: wellknown.AgentStatusEnforcingTiers}
		},
		cgroup: func() (backend, error) {
			l, err := detect()
			if err != nil {
				return nil, err
			}
			if _, ok := l.Hierarchies[cgroupfs.CPU]; !ok {
				return nil, fmt.Errorf("no cpu controller in the %s tree at %s", l.Version, l.Root)
			}
			if l.KubepodsDir == "" {
				return nil, errors.New("no kubelet pod root")
			}
			return probed{name: wellknown.BackendCgroup, status: wellknown.AgentStatusEnforcingCgroup}, nil
		},
		cgroupV2: func() string { return podsOnCgroupV2(detect()) },
	}
	b, why := selectBackend(cfg, sysfs, sel, log)
	return b.Name(), b.Report().Status, why
}
