package cgroup

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	configv1alpha1 "github.com/infera-io/temper/apis/config/v1alpha1"
	"github.com/infera-io/temper/apis/wellknown"
	"github.com/infera-io/temper/nodeagent/cgroupfs"
	"github.com/infera-io/temper/nodeagent/cgroupfs/writer"
)

// Defaults of dynamic CPU suppression (lever 3 of issue 16).
const (
	DefaultSuppressHeadroomMilli = configv1alpha1.DefaultSuppressHeadroomMilli
	DefaultSuppressFloorMilli    = configv1alpha1.DefaultSuppressFloorMilli
	DefaultSuppressStepMilli     = configv1alpha1.DefaultSuppressStepMilli
	// suppressHysteresisMilli: a new budget within this of the one in force
	// is not written (no churn of the audit ring for noise).
	suppressHysteresisMilli = 50
)

// Suppression is the state of dynamic CPU suppression after a tick.
type Suppression struct {
	// Active says low and background pods are held under a CFS quota.
	Active bool
	// BudgetMilli is the CPU they may use together, in millicores; the
	// node's capacity when not active.
	BudgetMilli int64
	// ProtectedMilli is what critical and high pods used over the last
	// tick.
	ProtectedMilli int64
	// Pods is how many pods are held.
	Pods int
}

// suppressor sizes one CFS quota for the low and background pods every
// tick: node capacity minus what critical and high pods use minus a
// headroom, moved toward that target by at most a step per tick and never
// below a floor per pod, so that a critical wake-up finds an idle CPU.
type suppressor struct {
	budget   int64 // in force; 0 before the first tick
	lastUse  map[string]int64
	lastTime time.Time
	state    Suppression
	// usage reads a pod's cumulative CPU time in ns (tests replace it).
	usage func(p *cgroupfs.Pod) (int64, error)
}

// Suppress runs one tick of dynamic CPU suppression at now. Without the
// lever, or before the first Apply, it does nothing. The quota goes on the
// pod cgroup's cpu.cfs_quota_us (the pod's containers stay as the kubelet
// set them), never above a limit the kubelet set; a pod that leaves the
// suppressed tiers gets its original back when it is handed back, and
// everything is restored when suppression ends or the backend stands down.
func (b *Backend) Suppress(now time.Time) (Suppression, error) {
	if !b.levers.Suppress.on(false) || b.last == nil || b.last.CapacityMilli <= 0 {
		return Suppression{}, nil
	}
	s := b.sup
	if s == nil {
		s = &suppressor{lastUse: map[string]int64{}, usage: b.podUsage}
		b.sup = s
	}
	capacity := b.last.CapacityMilli
	var protected, held []Pod
	for _, p := range b.last.Pods {
		if p.Cgroup == nil {
			continue
		}
		switch p.Tier {
		case wellknown.TierCritical, wellknown.TierHigh:
			protected = append(protected, p)
		case wellknown.TierLow, wellknown.TierBackground:
			held = append(held, p)
		}
	}
	var errs []error
	var usedNS int64
	seen := map[string]bool{}
	first := s.lastTime.IsZero()
	for _, p := range protected {
		ns, err := s.usage(p.Cgroup)
		if err != nil {
			errs = append(errs, fmt.Errorf("failed to read the CPU usage of pod %s: %w", p.Name, err))
			continue
		}
		uid := p.Cgroup.UID
		seen[uid] = true
		if prev, ok := s.lastUse[uid]; ok && ns >= prev {
			usedNS += ns - prev
		}
		s.lastUse[uid] = ns
	}
	for uid := range s.lastUse {
		if !seen[uid] {
			delete(s.lastUse, uid)
		}
	}
	elapsed := now.Sub(s.lastTime)
	s.lastTime = now
	if first || elapsed <= 0 {
		return s.state, errors.Join(errs...)
	}
	used := usedNS * 1000 / elapsed.Nanoseconds()
	floor := int64(len(held)) * b.levers.SuppressFloorMilli
	target := min(max(capacity-used-b.levers.SuppressHeadroomMilli, floor), capacity)
	cur := s.budget
	if cur == 0 {
		cur = capacity
	}
	next := cur
	switch step := b.levers.SuppressStepMilli; {
	case target < cur:
		next = max(target, cur-step)
	case target > cur:
		next = min(target, cur+step)
	}
	if d := next - cur; d < suppressHysteresisMilli && d > -suppressHysteresisMilli && next != capacity {
		next = cur
	}
	s.budget = next
	s.state = Suppression{BudgetMilli: next, ProtectedMilli: used, Active: next < capacity && len(held) > 0}
	if s.state.Active {
		s.state.Pods = len(held)
		per := next / int64(len(held))
		for _, p := range held {
			if err := b.holdPod(p, per); err != nil {
				errs = append(errs, err)
			}
		}
	}
	// Pods no longer held (suppression ended, or they left the tiers):
	// their quota goes back.
	heldDirs := map[string]bool{}
	if s.state.Active {
		for _, p := range held {
			for _, d := range podDirs(p.Cgroup) {
				heldDirs[d] = true
			}
		}
	}
	released := false
	for _, d := range b.w.Desired() {
		if (d.File == "cpu.cfs_quota_us" || d.File == "cpu.max") && !heldDirs[d.Path] {
			b.w.Release(d.Path, d.File)
			released = true
		}
	}
	if released {
		if _, err := b.w.RestoreUndesired(); err != nil {
			errs = append(errs, fmt.Errorf("failed to restore the quotas of pods no longer suppressed: %w", err))
		}
	}
	return s.state, errors.Join(errs...)
}

// holdPod puts a pod's cgroup under a quota of milli millicores, never
// above a limit the kubelet set.
func (b *Backend) holdPod(p Pod, milli int64) error {
	dir, ok := p.Cgroup.Dirs[cgroupfs.CPU]
	if !ok {
		return nil
	}
	const file = "cpu.cfs_quota_us"
	if v2 := b.layout.Version == cgroupfs.V2; v2 {
		return b.holdPodV2(p, dir, milli)
	}
	period, err := readInt(filepath.Join(dir, "cpu.cfs_period_us"))
	if err != nil {
		return fmt.Errorf("failed to read the CFS period of pod %s: %w", p.Name, err)
	}
	quota := milli * period / 1000
	if orig, err := b.originalOrCurrent(dir, file); err == nil && orig > 0 {
		quota = min(quota, orig)
	}
	quota = max(quota, 1000) // the kernel's minimum is 1 ms
	reason := "tier " + string(p.Tier) + ": CPU suppression"
	podOp := writer.Op{Path: dir, File: file, Value: strconv.FormatInt(quota, 10), Reason: reason}
	// cgroup v1 refuses a parent quota below a child's: a container with a
	// limit above the pod's new quota is capped too, children first when
	// narrowing, the pod first when widening.
	var ctrOps []writer.Op
	for _, c := range p.Cgroup.Containers {
		cd, ok := c.Dirs[cgroupfs.CPU]
		if !ok {
			continue
		}
		orig, err := b.originalOrCurrent(cd, file)
		if err != nil || orig <= 0 {
			continue
		}
		ctrOps = append(ctrOps, writer.Op{Path: cd, File: file, Value: strconv.FormatInt(min(orig, quota), 10), Reason: reason})
	}
	var ops []writer.Op
	if cur, err := readInt(filepath.Join(dir, file)); err == nil && (cur < 0 || quota < cur) {
		ops = append(append(ops, ctrOps...), podOp)
	} else {
		ops = append(append(ops, podOp), ctrOps...)
	}
	for _, r := range b.w.Apply(ops...) {
		if r.Err != nil && !errors.Is(r.Err, writer.ErrGone) {
			return fmt.Errorf("failed to suppress pod %s: %w", p.Name, r.Err)
		}
	}
	return nil
}

// holdPodV2 writes cpu.max ("<quota> <period>").
func (b *Backend) holdPodV2(p Pod, dir string, milli int64) error {
	const file = "cpu.max"
	cur, err := b.w.Found(dir, file)
	if err != nil {
		data, rerr := os.ReadFile(filepath.Join(dir, file))
		if rerr != nil {
			return fmt.Errorf("failed to read %s of pod %s: %w", file, p.Name, rerr)
		}
		cur = strings.TrimSpace(string(data))
	}
	f := strings.Fields(cur)
	if len(f) != 2 {
		return fmt.Errorf("failed to parse %s of pod %s: %q", file, p.Name, cur)
	}
	period, err := strconv.ParseInt(f[1], 10, 64)
	if err != nil {
		return fmt.Errorf("failed to parse %s of pod %s: %q", file, p.Name, cur)
	}
	quota := milli * period / 1000
	if f[0] != "max" {
		if orig, err := strconv.ParseInt(f[0], 10, 64); err == nil {
			quota = min(quota, orig)
		}
	}
	quota = max(quota, 1000)
	for _, r := range b.w.Apply(writer.Op{Path: dir, File: file, Value: fmt.Sprintf("%d %d", quota, period), Reason: "tier " + string(p.Tier) + ": CPU suppression"}) {
		if r.Err != nil && !errors.Is(r.Err, writer.ErrGone) {
			return fmt.Errorf("failed to suppress pod %s: %w", p.Name, r.Err)
		}
	}
	return nil
}

// originalOrCurrent is the recorded original of a file, or its current
// value when the writer has not touched it.
func (b *Backend) originalOrCurrent(dir, file string) (int64, error) {
	if v, err := b.w.Found(dir, file); err == nil {
		return strconv.ParseInt(v, 10, 64)
	}
	return readInt(filepath.Join(dir, file))
}

func readInt(p string) (int64, error) {
	data, err := os.ReadFile(p)
	if err != nil {
		return 0, err
	}
	return strconv.ParseInt(strings.TrimSpace(string(data)), 10, 64)
}

// podUsage is a pod's cumulative CPU time in ns: cpu.stat usage_usec on
// cgroup v2; on v1 (whose cpu hierarchy need not carry cpuacct) the sum of
// its threads' run time from /proc/<tid>/schedstat.
func (b *Backend) podUsage(p *cgroupfs.Pod) (int64, error) {
	dir, ok := p.Dirs[cgroupfs.CPU]
	if !ok {
		return 0, errors.New("no cpu cgroup")
	}
	if b.layout.Version == cgroupfs.V2 {
		data, err := os.ReadFile(filepath.Join(dir, "cpu.stat"))
		if err != nil {
			return 0, err
		}
		for l := range strings.SplitSeq(string(data), "\n") {
			if v, ok := strings.CutPrefix(l, "usage_usec "); ok {
				n, err := strconv.ParseInt(strings.TrimSpace(v), 10, 64)
				return n * 1000, err
			}
		}
		return 0, fmt.Errorf("no usage_usec in %s/cpu.stat", dir)
	}
	tids, err := b.podThreads(p)
	if err != nil {
		return 0, err
	}
	var sum int64
	for _, tid := range tids {
		data, err := os.ReadFile("/proc/" + strconv.Itoa(tid) + "/schedstat")
		if err != nil {
			continue // exited
		}
		if f := strings.Fields(string(data)); len(f) > 0 {
			n, _ := strconv.ParseInt(f[0], 10, 64)
			sum += n
		}
	}
	return sum, nil
}
