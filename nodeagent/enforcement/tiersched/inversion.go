package tiersched

import (
	"errors"
	"fmt"

	"github.com/cilium/ebpf/link"
	"github.com/cilium/ebpf/rlimit"

	"github.com/infera-io/temper/apis/wellknown"
)

// InversionProbe counts priority inversions from the scheduler tracepoints,
// whatever scheduler is in force (stock CFS or the tier scheduler): a
// critical task switched in on a CPU where, during its wait, a background
// task was switched in (by the order of events), or where the background
// task it replaces kept the CPU for more than 1 ms of the wait
// (bpf/inversion.bpf.c). It is a measuring instrument for the tests and
// benchmarks, not part of enforcement.
type InversionProbe struct {
	objs  inversionObjects
	links []link.Link
}

// InversionCounts are the probe's counters since it was loaded.
type InversionCounts struct {
	Inversions, BackgroundSwitchIns, CriticalSwitchIns uint64
	// InversionsByOrder are the inversions where a background task was
	// switched in during the critical task's wait (no time bound).
	InversionsByOrder uint64
}

// LoadInversionProbe loads and attaches the probe.
func LoadInversionProbe() (*InversionProbe, error) {
	if err := rlimit.RemoveMemlock(); err != nil {
		return nil, err
	}
	p := &InversionProbe{}
	if err := loadInversionObjects(&p.objs, nil); err != nil {
		return nil, fmt.Errorf("failed to load the inversion probe: %w", err)
	}
	for _, prog := range []struct {
		name   string
		attach func() (link.Link, error)
	}{
		{"sched_wakeup", func() (link.Link, error) { return link.AttachTracing(link.TracingOptions{Program: p.objs.InvWakeup}) }},
		{"sched_wakeup_new", func() (link.Link, error) {
			return link.AttachTracing(link.TracingOptions{Program: p.objs.InvWakeupNew})
		}},
		{"sched_switch", func() (link.Link, error) { return link.AttachTracing(link.TracingOptions{Program: p.objs.InvSwitch}) }},
		{"sched_process_exit", func() (link.Link, error) { return link.AttachTracing(link.TracingOptions{Program: p.objs.InvExit}) }},
	} {
		l, err := prog.attach()
		if err != nil {
			_ = p.Close()
			return nil, fmt.Errorf("failed to attach the inversion probe to %s: %w", prog.name, err)
		}
		p.links = append(p.links, l)
	}
	return p, nil
}

// SetTiers makes the probe's tiers map equal to tiers.
func (p *InversionProbe) SetTiers(tiers map[uint64]wellknown.Tier) error {
	return setTiers(p.objs.Tiers, tiers)
}

// Counts reads the counters.
func (p *InversionProbe) Counts() (InversionCounts, error) {
	var c InversionCounts
	err := errors.Join(
		p.objs.Inversions.Get(&c.Inversions),
		p.objs.BackgroundSwitchIns.Get(&c.BackgroundSwitchIns),
		p.objs.CriticalSwitchIns.Get(&c.CriticalSwitchIns),
		p.objs.InversionsBgCame.Get(&c.InversionsByOrder),
	)
	return c, err
}

// Close detaches the probe.
func (p *InversionProbe) Close() error {
	var errs []error
	for _, l := range p.links {
		errs = append(errs, l.Close())
	}
	errs = append(errs, p.objs.Close())
	return errors.Join(errs...)
}
