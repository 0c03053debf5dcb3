package tiersched

import (
	"bytes"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/btf"
	"github.com/cilium/ebpf/link"
	"github.com/cilium/ebpf/rlimit"

	"github.com/infera-io/temper/apis/wellknown"
	"github.com/infera-io/temper/nodeagent/enforcement"
)

// OpsName is the scheduler's name in /sys/kernel/sched_ext/root/ops.
const OpsName = "temper_tiers"

// Tunables of the scheduler.
type Tunables struct {
	// Slice is the time slice of every task; default 5 ms.
	Slice time.Duration
	// Starve bounds how long a queue below critical waits while higher
	// tiers keep the CPUs busy; default 250 ms, far below the watchdog
	// timeout (10 s, timeout_ms in the object).
	Starve time.Duration
}

func (t Tunables) withDefaults() Tunables {
	if t.Slice <= 0 {
		t.Slice = 5 * time.Millisecond
	}
	if t.Starve <= 0 {
		t.Starve = 250 * time.Millisecond
	}
	return t
}

// Scheduler is the loaded and attached tier scheduler. Closing it detaches
// it; so does the end of the process that holds it (the link is not
// pinned), and the kernel then returns every task to the fair class.
type Scheduler struct {
	objs   tierschedObjects
	link   link.Link
	choice Choice
}

// Load loads the tier scheduler for the running kernel and attaches it.
func Load(t Tunables) (*Scheduler, error) {
	t = t.withDefaults()
	if err := rlimit.RemoveMemlock(); err != nil {
		return nil, fmt.Errorf("failed to lift the memlock limit: %w", err)
	}
	k, err := runningKernel()
	if err != nil {
		return nil, err
	}
	return load(k, t)
}

// runningKernel reads the running kernel's facts once per process: the
// walk over its BTF takes a while, and the kernel does not change.
var runningKernel = sync.OnceValues(func() (Kernel, error) {
	kspec, err := btf.LoadKernelSpec()
	if err != nil {
		return Kernel{}, fmt.Errorf("failed to read the kernel's BTF: %w", err)
	}
	return ReadKernel(kspec)
})

func load(k Kernel, t Tunables) (*Scheduler, error) {
	spec, err := loadTiersched()
	if err != nil {
		return nil, err
	}
	choice, strip, err := chooseKfuncs(k)
	if err != nil {
		return nil, err
	}
	stripKfuncs(spec, strip)
	if err := fillEnums(spec, k); err != nil {
		return nil, err
	}
	if err := spec.Variables["slice_ns"].Set(uint64(t.Slice)); err != nil {
		return nil, err
	}
	if err := spec.Variables["starve_ns"].Set(uint64(t.Starve)); err != nil {
		return nil, err
	}
	s := &Scheduler{choice: choice}
	if err := spec.LoadAndAssign(&s.objs, nil); err != nil {
		var ve *ebpf.VerifierError
		if errors.As(err, &ve) {
			return nil, fmt.Errorf("failed to load the tier scheduler (kfuncs %s, %s): %w", choice.Insert, choice.MoveToLocal, firstLines(fmt.Sprintf("%+v", ve), 30))
		}
		return nil, fmt.Errorf("failed to load the tier scheduler (kfuncs %s, %s): %w", choice.Insert, choice.MoveToLocal, err)
	}
	l, err := link.AttachStructOps(link.StructOpsOptions{Map: s.objs.TemperTiers})
	if err != nil {
		_ = s.objs.Close()
		return nil, fmt.Errorf("failed to attach the tier scheduler: %w", err)
	}
	s.link = l
	return s, nil
}

func firstLines(s string, n int) error {
	lines := bytes.Split([]byte(s), []byte("\n"))
	if len(lines) > n {
		lines = append(lines[:n/2], lines[len(lines)-n/2:]...)
	}
	return errors.New(string(bytes.Join(lines, []byte("\n"))))
}

// Kfuncs says which kfuncs the object calls on this kernel.
func (s *Scheduler) Kfuncs() Choice { return s.choice }

// Close detaches the scheduler and frees it.
func (s *Scheduler) Close() error {
	var errs []error
	if s.link != nil {
		errs = append(errs, s.link.Close())
	}
	errs = append(errs, s.objs.Close())
	return errors.Join(errs...)
}

// Exited reports whether the kernel disabled the scheduler (watchdog,
// SysRq-S, an error, or unregistration), with the kernel's reason.
func (s *Scheduler) Exited() (bool, string, error) {
	var kind int64
	if err := s.objs.ExitKind.Get(&kind); err != nil {
		return false, "", err
	}
	if kind == 0 {
		return false, "", nil
	}
	var reason [128]byte
	_ = s.objs.ExitReason.Get(&reason)
	msg := string(bytes.TrimRight(reason[:], "\x00"))
	return true, fmt.Sprintf("%s (exit kind %d)", msg, kind), nil
}

// SetTiers makes the tiers map equal to tiers (cgroup id -> tier): a pod
// change is a map update, the scheduler keeps running.
func (s *Scheduler) SetTiers(tiers map[uint64]wellknown.Tier) error {
	return setTiers(s.objs.Tiers, tiers)
}

func setTiers(m *ebpf.Map, tiers map[uint64]wellknown.Tier) error {
	want := make(map[uint64]uint32, len(tiers))
	for id, t := range tiers {
		idx, ok := tierIndex(t)
		if !ok {
			return fmt.Errorf("cgroup %d: unknown tier %q", id, t)
		}
		want[id] = idx
	}
	var stale []uint64
	var k uint64
	var v uint32
	it := m.Iterate()
	for it.Next(&k, &v) {
		if w, ok := want[k]; !ok {
			stale = append(stale, k)
		} else if w == v {
			delete(want, k)
		}
	}
	if err := it.Err(); err != nil {
		return fmt.Errorf("failed to read the tiers map: %w", err)
	}
	for _, id := range stale {
		if err := m.Delete(id); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
			return fmt.Errorf("failed to delete cgroup %d from the tiers map: %w", id, err)
		}
	}
	for id, idx := range want {
		if err := m.Put(id, idx); err != nil {
			return fmt.Errorf("failed to put cgroup %d in the tiers map: %w", id, err)
		}
	}
	return nil
}

// Counters sums the per-CPU tier counters.
func (s *Scheduler) Counters() (map[wellknown.Tier]enforcement.TierCounters, error) {
	out := make(map[wellknown.Tier]enforcement.TierCounters, nrTiers)
	for i, t := range tierByIndex {
		var per []tierschedTierStats
		if err := s.objs.Stats.Lookup(uint32(i), &per); err != nil {
			return nil, fmt.Errorf("failed to read the %s counters: %w", t, err)
		}
		var c enforcement.TierCounters
		for _, p := range per {
			c.Enqueued += p.Enqueued
			c.Dispatched += p.Dispatched
			c.Preempted += p.Preempted
			c.StarvationGuard += p.StarvationGuard
		}
		out[t] = c
	}
	return out, nil
}

// ProgramCost is one BPF program's run count and total run time, as the
// kernel accounts it while BPF statistics are enabled
// (kernel.bpf_stats_enabled, or ebpf.EnableStats).
type ProgramCost struct {
	Runs    uint64
	Runtime time.Duration
}

// Costs reads the run statistics of the scheduler's programs.
func (s *Scheduler) Costs() (map[string]ProgramCost, error) {
	out := map[string]ProgramCost{}
	for name, p := range map[string]*ebpf.Program{
		"select_cpu": s.objs.TsSelectCpu, "enqueue": s.objs.TsEnqueue, "dispatch": s.objs.TsDispatch,
		"running": s.objs.TsRunning, "stopping": s.objs.TsStopping,
	} {
		st, err := p.Stats()
		if err != nil {
			return nil, fmt.Errorf("failed to read the statistics of %s: %w", name, err)
		}
		out[name] = ProgramCost{Runs: st.RunCount, Runtime: st.Runtime}
	}
	return out, nil
}
