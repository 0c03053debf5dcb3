// Command isolation measures latency isolation of the cgroup enforcement
// backend (nodeagent/enforcement/cgroup) on this machine's real kernel
// (issue 4) and writes docs/bench/isolation.json and an SVG plot.
//
// In a private temper-bench-<random> subtree of the real cgroup v1
// hierarchies it builds a kubelet-shaped tree (kubepods, kubepods/burstable,
// kubepods/besteffort, pod<uid>/<container id>) with the kubelet's own
// values, and runs:
//
//   - memcached in a Guaranteed, critical-tier pod, next to a wakeup
//     probe (1 ms timer sleeps, run delay after the expected wake-up);
//   - an open-loop load generator (this binary, -role loadgen) in a
//     Burstable, high-tier pod: fixed request rate, latency counted from
//     each request's due time;
//   - a ladder of CPU burners in background-tier pods, BestEffort or
//     Burstable with requests.
//
// Per ladder step the arms alternate (ABBA): stock (the backend stood
// down: the kubelet's values only) and enforced (the real Backend applied
// to the pods' tiers). After every enforced segment the tree's
// configuration is compared with its snapshot from before: a difference
// fails the run. Everything is removed at the end, on error or SIGINT.
//
//	sudo go run ./test/bench/isolation            # default run (~5 min)
//	sudo go run ./test/bench/isolation -explore   # lever variants (issue 16 arms; -arms to pick)
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"net"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/go-logr/logr"
	"github.com/go-logr/logr/funcr"
	corev1 "k8s.io/api/core/v1"

	"github.com/infera-io/temper/apis/wellknown"
	"github.com/infera-io/temper/nodeagent/cgroupfs"
	"github.com/infera-io/temper/nodeagent/cgroupfs/writer"
	"github.com/infera-io/temper/nodeagent/cpuset"
	cgroupenf "github.com/infera-io/temper/nodeagent/enforcement/cgroup"
	"github.com/infera-io/temper/test/bench/internal/hosttree"
)

// armConfig is one way of running the pods: stock, or the backend with
// some levers and with or without the critical fence.
type armConfig struct {
	Name   string           `json:"name"`
	Stock  bool             `json:"stock,omitempty"`
	Levers cgroupenf.Levers `json:"levers"`
	Fence  bool             `json:"fence"`
	// BestEffortPath runs Burstable burners as the overcommit webhook's
	// opt-in background_best_effort path admits them: without their CPU
	// request, so kube-BestEffort, in a pod cgroup under the besteffort QoS
	// cgroup, and the burstable QoS cgroup's shares as the kubelet would
	// compute them without those pods; then enforced with Levers. (With
	// BestEffort burners the arm is the same as Levers alone.)
	BestEffortPath bool `json:"bestEffortPath,omitempty"`
}

// defaultEnforced is the enforced arm of a default run: the combination
// the exploratory runs measured best (docs/benchmarks.md), the backend's
// default levers without a fence.
const defaultEnforced = "enforced"

// exploreArms are the lever variants of -explore (issue 16): the default
// levers, each lever of issue 16 alone on top of the weights, and their
// combination. The names say what differs from the weights-only arm.
func exploreArms() []armConfig {
	noSlice := cgroupenf.Levers{CriticalSlice: -1}
	return []armConfig{
		{Name: "stock", Stock: true},
		{Name: defaultEnforced},
		{Name: "weights", Levers: noSlice},
		{Name: "slice500", Levers: cgroupenf.Levers{CriticalSlice: 500 * time.Microsecond}},
		{Name: "slice100", Levers: cgroupenf.Levers{CriticalSlice: 100 * time.Microsecond}},
		{Name: "schedidle", Levers: cgroupenf.Levers{CriticalSlice: -1, BackgroundSchedIdle: cgroupenf.SwitchOn}},
		{Name: "slice+schedidle", Levers: cgroupenf.Levers{CriticalSlice: 500 * time.Microsecond, BackgroundSchedIdle: cgroupenf.SwitchOn}},
		{Name: "qosidle", Levers: cgroupenf.Levers{CriticalSlice: -1, BestEffortIdle: cgroupenf.SwitchOn}},
		{Name: "suppress", Levers: cgroupenf.Levers{CriticalSlice: -1, Suppress: cgroupenf.SwitchOn}},
		{Name: "slice+suppress", Levers: cgroupenf.Levers{CriticalSlice: 500 * time.Microsecond, Suppress: cgroupenf.SwitchOn}},
		{Name: "bepath", BestEffortPath: true},
	}
}

// armsByName picks arms of exploreArms by name (-arms).
func armsByName(list string) ([]armConfig, error) {
	all := exploreArms()
	out := []armConfig{all[0]}
	for f := range strings.SplitSeq(list, ",") {
		f = strings.TrimSpace(f)
		i := slices.IndexFunc(all, func(a armConfig) bool { return a.Name == f })
		if i < 0 {
			var names []string
			for _, a := range all[1:] {
				names = append(names, a.Name)
			}
			return nil, fmt.Errorf("invalid -arms entry %q: want one of %s", f, strings.Join(names, ", "))
		}
		if i > 0 && !slices.ContainsFunc(out, func(a armConfig) bool { return a.Name == f }) {
			out = append(out, all[i])
		}
	}
	return out, nil
}

type options struct {
	rate     float64
	segment  time.Duration
	conns    int
	ladder   []int
	variants []corev1.PodQOSClass
	arms     []armConfig
	// rounds is how many times the top of the ladder is measured (the
	// ladder's own top step is the first), for the summary.
	rounds   int
	out, svg string
	root     string
}

func main() {
	role := flag.String("role", "", "internal: loadgen or probe (the bench runs itself in these roles)")
	addr := flag.String("addr", "", "internal: memcached address for -role loadgen")
	rate := flag.Float64("rate", 2000, "memcached requests per second, both arms")
	conns := flag.Int("conns", 4, "load generator connections")
	segment := flag.Duration("duration", 6*time.Second, "one measuring segment; each arm gets two per ladder step (ABBA)")
	ladder := flag.String("ladder", "0,1,2,4,8", "burner counts")
	variants := flag.String("variants", "burstable,besteffort", "burner pod QoS classes")
	explore := flag.Bool("explore", false, "compare lever variants (see exploreArms) instead of stock vs the default enforced arm")
	arms := flag.String("arms", "", "with -explore: only these arms (comma-separated names of exploreArms), stock always included")
	rounds := flag.Int("rounds", 5, "measure the top of the ladder this many times, interleaved, for the summary (median and spread)")
	out := flag.String("out", "docs/bench/isolation.json", "JSON result file ('' for none)")
	svg := flag.String("svg", "docs/bench/isolation.svg", "SVG plot file ('' for none)")
	root := flag.String("cgroup-root", "/sys/fs/cgroup", "cgroup mount root")
	flag.Parse()

	var err error
	switch *role {
	case "loadgen":
		err = runLoadgen(*addr, *rate, *conns, *segment)
	case "probe":
		err = runProbe(*segment)
	case "":
		opts := options{rate: *rate, segment: *segment, conns: *conns, out: *out, svg: *svg, root: *root, rounds: *rounds}
		if *rounds < 1 || *rounds > 100 {
			err = fmt.Errorf("invalid -rounds %d: want 1..100", *rounds)
		}
		if err == nil {
			opts.ladder, err = parseLadder(*ladder)
		}
		if err == nil {
			opts.variants, err = parseVariants(*variants)
		}
		opts.arms = []armConfig{{Name: "stock", Stock: true}, {Name: defaultEnforced}}
		if *explore {
			opts.arms = exploreArms()
			if *arms != "" && err == nil {
				opts.arms, err = armsByName(*arms)
			}
		}
		if err == nil {
			ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
			err = run(ctx, opts)
			stop()
		}
	default:
		err = fmt.Errorf("unknown -role %q", *role)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "isolation:", err)
		os.Exit(1)
	}
}

func parseLadder(s string) ([]int, error) {
	var out []int
	for f := range strings.SplitSeq(s, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n < 0 || n > 64 {
			return nil, fmt.Errorf("invalid -ladder entry %q: want a burner count 0..64", f)
		}
		out = append(out, n)
	}
	return out, nil
}

func parseVariants(s string) ([]corev1.PodQOSClass, error) {
	var out []corev1.PodQOSClass
	for f := range strings.SplitSeq(s, ",") {
		switch strings.TrimSpace(f) {
		case "burstable":
			out = append(out, corev1.PodQOSBurstable)
		case "besteffort":
			out = append(out, corev1.PodQOSBestEffort)
		default:
			return nil, fmt.Errorf("invalid -variants entry %q: want burstable or besteffort", f)
		}
	}
	return out, nil
}

func variantName(q corev1.PodQOSClass) string { return strings.ToLower(string(q)) }

// bench is one run's state.
type bench struct {
	opts     options
	self     string
	t        *tree
	layout   *cgroupfs.Layout
	w        *writer.Writer
	backends map[string]*cgroupenf.Backend
	nodeCPUs cpuset.Set
	fence    cpuset.Set
	critical *pod
	loadgen  *pod
	addr     string
	log      logr.Logger
}

func run(ctx context.Context, opts options) (err error) {
	if os.Geteuid() != 0 {
		return errors.New("needs root to create cgroups and move processes")
	}
	if v, derr := cgroupfs.DetectVersion(opts.root); derr != nil || v != cgroupfs.V1 {
		return fmt.Errorf("%s is not cgroup v1 (%v, %w); this bench builds v1 kubelet trees", opts.root, v, derr)
	}
	memcached, err := exec.LookPath("memcached")
	if err != nil {
		return fmt.Errorf("memcached is not installed (apt-get install -y memcached): %w", err)
	}
	self, err := os.Executable()
	if err != nil {
		return err
	}
	host, err := cgroupfs.Detect(opts.root, cgroupfs.DetectOptions{Driver: cgroupfs.DriverCgroupfs, KubepodsDir: "kubepods"})
	if err != nil {
		return err
	}
	b := &bench{opts: opts, self: self, backends: map[string]*cgroupenf.Backend{},
		log: funcr.New(func(prefix, args string) { fmt.Fprintln(os.Stderr, prefix, args) }, funcr.Options{})}
	cpuH, cpusetH := host.Hierarchies[cgroupfs.CPU], host.Hierarchies[cgroupfs.CPUSet]
	b.t = &tree{Tree: &hosttree.Tree{Hierarchies: []string{cpuH, cpusetH}, CPUSet: cpusetH, Base: "temper-bench-" + hosttree.RandomHex(6)}, cpuH: cpuH, cpusetH: cpusetH}
	if b.t.cpusetH == "" {
		return errors.New("no cgroup v1 cpuset hierarchy")
	}
	stateDir, err := os.MkdirTemp("", "temper-bench-state-")
	if err != nil {
		return err
	}
	defer func() {
		if b.w != nil {
			if _, serr := b.standDown(); serr != nil {
				err = errors.Join(err, serr)
			}
			_ = b.w.Close()
		}
		if cerr := b.t.Cleanup(); cerr != nil {
			err = errors.Join(err, cerr)
		}
		_ = os.RemoveAll(stateDir)
		fmt.Fprintf(os.Stderr, "removed %s\n", b.t.Base)
	}()
	if err := b.setup(memcached, stateDir); err != nil {
		return err
	}
	res := newResult(opts, b)
	fmt.Fprintf(os.Stderr, "tree %s, memcached at %s, node CPUs %s\n", b.t.Base, b.addr, b.nodeCPUs)
	top := slices.Max(opts.ladder)
	for _, variant := range opts.variants {
		for step, n := range opts.ladder {
			rows, err := b.step(ctx, variant, n, step)
			if err != nil {
				return err
			}
			for arm, r := range rows {
				res.Arms[arm] = append(res.Arms[arm], r)
			}
			if n == top {
				res.addRound(variantName(variant), rows)
			}
		}
		// More rounds at the top of the ladder, each ABBA with the arm
		// order rotated on, so that the shared machine's noise falls on
		// every arm alike.
		for round := 1; round < opts.rounds; round++ {
			rows, err := b.step(ctx, variant, top, len(opts.ladder)+round)
			if err != nil {
				return err
			}
			res.addRound(variantName(variant), rows)
		}
	}
	res.finish(opts)
	fmt.Print(res.table())
	if opts.out != "" {
		data, err := json.MarshalIndent(res, "", "  ")
		if err != nil {
			return err
		}
		if err := os.WriteFile(opts.out, append(data, '\n'), 0o644); err != nil {
			return err
		}
	}
	if opts.svg != "" {
		if err := os.WriteFile(opts.svg, []byte(res.svg()), 0o644); err != nil {
			return err
		}
	}
	return nil
}

// setup builds the QoS level, the critical and load generator pods,
// starts memcached, and creates the writer and one backend per enforced
// arm.
func (b *bench) setup(memcached, stateDir string) error {
	t := b.t
	nodeCPUs, err := cpuset.Parse(readTrimmed(filepath.Join(t.cpusetH, "cpuset.cpus")))
	if err != nil {
		return err
	}
	b.nodeCPUs = nodeCPUs
	last := -1
	for c := range nodeCPUs {
		last = max(last, c)
	}
	b.fence = cpuset.Set{last: true}
	kp := filepath.Join(t.Base, "kubepods")
	for _, rel := range []string{t.Base, kp, kp + "/burstable", kp + "/besteffort"} {
		if err := t.Mkdir(rel); err != nil {
			return err
		}
	}
	// kubepods carries the node allocatable (every CPU here; no
	// reservations); the wrapper competes at the top with the same weight
	// a real kubepods has.
	alloc := milliCPUToShares(int64(len(nodeCPUs)) * milliPerCPU)
	for _, rel := range []string{t.Base, kp} {
		if err := t.setCPU(rel, "cpu.shares", alloc); err != nil {
			return err
		}
	}
	l, err := cgroupfs.Detect(b.opts.root, cgroupfs.DetectOptions{Driver: cgroupfs.DriverCgroupfs, KubepodsDir: kp})
	if err != nil {
		return err
	}
	b.layout = l
	b.critical = &pod{name: "bench/memcached", qos: corev1.PodQOSGuaranteed, tier: wellknown.TierCritical,
		containers: []container{{name: "memcached", request: 1000, limit: 1000}, {name: "probe", request: 100, limit: 100}}}
	b.loadgen = &pod{name: "bench/loadgen", qos: corev1.PodQOSBurstable, tier: wellknown.TierHigh,
		containers: []container{{name: "loadgen", request: 500}}}
	for _, p := range []*pod{b.critical, b.loadgen} {
		if err := t.addPod(l, p); err != nil {
			return err
		}
	}
	if err := b.setQOS(nil); err != nil {
		return err
	}
	port, err := freePort()
	if err != nil {
		return err
	}
	b.addr = net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	cmd := exec.Command(memcached, "-u", "nobody", "-l", "127.0.0.1", "-p", strconv.Itoa(port), "-U", "0", "-t", "2", "-m", "64")
	cmd.Stderr = os.Stderr
	if err := t.Start(cmd, b.critical.containerRel(0)); err != nil {
		return err
	}
	if err := waitListening(b.addr, 30*time.Second); err != nil { // a loaded shared machine starts it slowly
		return err
	}
	b.w, err = writer.New(writer.Options{Root: b.opts.root, StateDir: stateDir, Log: b.log})
	if err != nil {
		return err
	}
	for _, a := range b.opts.arms {
		if a.Stock {
			continue
		}
		be, err := cgroupenf.New(cgroupenf.Options{Layout: l, Writer: b.w, Levers: a.Levers,
			CPUManagerStateFile: filepath.Join(stateDir, "no-cpu-manager-state"), Log: b.log})
		if err != nil {
			return err
		}
		b.backends[a.Name] = be
	}
	return nil
}

// setQOS writes the QoS-level shares as the kubelet computes them for the
// Burstable pods present (the load generator and any Burstable burners).
func (b *bench) setQOS(burners []*pod) error {
	pods := [][]container{b.loadgen.containers}
	for _, p := range burners {
		if p.qos == corev1.PodQOSBurstable {
			pods = append(pods, p.containers)
		}
	}
	burstable, besteffort := qosShares(pods)
	kp := filepath.Join(b.t.Base, "kubepods")
	if err := b.t.setCPU(kp+"/burstable", "cpu.shares", burstable); err != nil {
		return err
	}
	return b.t.setCPU(kp+"/besteffort", "cpu.shares", besteffort)
}

func (b *bench) standDown() (writer.RestoreResult, error) {
	var res writer.RestoreResult
	var errs []error
	for _, be := range b.backends {
		r, err := be.StandDown()
		res.Restored += r.Restored
		errs = append(errs, err)
	}
	return res, errors.Join(errs...)
}

// step runs one ladder step of one burner variant: every arm twice, in
// ABBA order (rotated per step), and returns a row per arm.
func (b *bench) step(ctx context.Context, variant corev1.PodQOSClass, n, stepIdx int) (map[string]row, error) {
	var burners []*pod
	defer func() {
		for _, p := range burners {
			if err := b.t.Rmdir(p.rel); err != nil {
				fmt.Fprintln(os.Stderr, "isolation:", err)
			}
		}
		_ = b.setQOS(nil)
	}()
	for i := range n {
		p := &pod{name: fmt.Sprintf("batch/burner-%d", i), qos: variant, tier: wellknown.TierBackground,
			containers: []container{{name: "burn"}}}
		if variant == corev1.PodQOSBurstable {
			p.containers[0].request = 50
		}
		if err := b.t.addPod(b.layout, p); err != nil {
			return nil, err
		}
		burners = append(burners, p)
	}
	if err := b.setQOS(burners); err != nil {
		return nil, err
	}
	// The same burners as kube-BestEffort pods (bepath): their pod cgroups
	// exist for the whole step, empty but during that arm's segments.
	var twins []*pod
	if variant == corev1.PodQOSBurstable && slices.ContainsFunc(b.opts.arms, func(a armConfig) bool { return a.BestEffortPath }) {
		defer func() {
			for _, p := range twins {
				if err := b.t.Rmdir(p.rel); err != nil {
					fmt.Fprintln(os.Stderr, "isolation:", err)
				}
			}
		}()
		for _, bp := range burners {
			p := &pod{name: bp.name + "-besteffort", qos: corev1.PodQOSBestEffort, tier: wellknown.TierBackground,
				containers: []container{{name: "burn"}}}
			if err := b.t.addPod(b.layout, p); err != nil {
				return nil, err
			}
			twins = append(twins, p)
		}
	}
	var burnCmds []*exec.Cmd
	defer func() {
		for _, c := range burnCmds {
			b.t.Stop(c)
		}
	}()
	for _, p := range burners {
		c := exec.Command("sh", "-c", "while :; do :; done")
		if err := b.t.Start(c, p.containerRel(0)); err != nil {
			return nil, err
		}
		burnCmds = append(burnCmds, c)
	}
	before, err := b.t.snapshot()
	if err != nil {
		return nil, err
	}
	order := slices.Clone(b.opts.arms)
	rot := stepIdx % len(order)
	order = append(order[rot:], order[:rot]...)
	rev := slices.Clone(order)
	slices.Reverse(rev)
	lat, wake := map[string]*Hist{}, map[string]*Hist{}
	errCount, throttled, burned := map[string]int64{}, map[string]int64{}, map[string]int64{}
	for _, a := range append(order, rev...) {
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		enforce := burners
		if a.BestEffortPath && twins != nil {
			enforce = twins
			for i, c := range burnCmds {
				if err := b.t.Move(c.Process.Pid, twins[i].containerRel(0)); err != nil {
					return nil, err
				}
			}
			if err := b.setQOS(nil); err != nil {
				return nil, err
			}
		}
		if !a.Stock {
			if err := b.apply(a, enforce); err != nil {
				return nil, err
			}
		}
		thr0, cpu0 := b.throttled(), burnedNS(burnCmds)
		stopSuppress := b.suppress(a)
		l, w, missing, err := b.segment(ctx)
		stopSuppress()
		throttled[a.Name] += b.throttled() - thr0
		burned[a.Name] += burnedNS(burnCmds) - cpu0
		if !a.Stock {
			if _, serr := b.standDown(); serr != nil {
				err = errors.Join(err, fmt.Errorf("failed to stand down after arm %s: %w", a.Name, serr))
			}
			if a.BestEffortPath && twins != nil {
				for i, c := range burnCmds {
					if merr := b.t.Move(c.Process.Pid, burners[i].containerRel(0)); merr != nil {
						return nil, merr
					}
				}
				if qerr := b.setQOS(burners); qerr != nil {
					return nil, qerr
				}
			}
			after, serr := b.t.snapshot()
			if serr != nil {
				return nil, serr
			}
			if d := diffSnapshots(before, after); len(d) > 0 {
				return nil, fmt.Errorf("the tree is not back to what it was after standing down arm %s (%d burners, %s):\n  %s",
					a.Name, n, variantName(variant), strings.Join(d, "\n  "))
			}
		}
		if err != nil {
			return nil, fmt.Errorf("arm %s, %d %s burners: %w", a.Name, n, variantName(variant), err)
		}
		if lat[a.Name] == nil {
			lat[a.Name], wake[a.Name] = &Hist{}, &Hist{}
		}
		lat[a.Name].Merge(l)
		wake[a.Name].Merge(w)
		errCount[a.Name] += missing
	}
	rows := map[string]row{}
	load, _ := strconv.ParseFloat(strings.Fields(readTrimmed("/proc/loadavg") + " 0")[0], 64)
	for _, a := range b.opts.arms {
		r := newRow(n, variantName(variant), lat[a.Name], wake[a.Name])
		r.Missing = errCount[a.Name]
		r.LoadAvg1 = load
		r.Throttled = throttled[a.Name]
		r.BatchCPUs = math.Round(float64(burned[a.Name])/(2*b.opts.segment.Seconds()*1e9)*1000) / 1000
		rows[a.Name] = r
		fmt.Fprintf(os.Stderr, "%-15s %-10s burners=%d  p50=%6.0fµs p99=%6.0fµs p99.9=%6.0fµs  wake p99=%6.0fµs p99.9=%6.0fµs  batch %.2f CPUs  load %.1f throttled %d\n",
			a.Name, r.Variant, n, r.P50, r.P99, r.P999, r.WakeP99, r.WakeP999, r.BatchCPUs, load, r.Throttled)
	}
	return rows, nil
}

// apply enforces arm a with the real backend.
func (b *bench) apply(a armConfig, burners []*pod) error {
	var pods []cgroupenf.Pod
	for _, p := range append([]*pod{b.critical, b.loadgen}, burners...) {
		found, err := p.find(b.layout)
		if err != nil {
			return err
		}
		pods = append(pods, cgroupenf.Pod{Name: p.name, Tier: p.tier, Cgroup: found})
	}
	as := cgroupenf.Plan{Pods: pods, CapacityMilli: int64(len(b.nodeCPUs)) * 1000}
	if a.Fence {
		as.FenceCPUs, as.NodeCPUs = b.fence, b.nodeCPUs
	}
	rep, err := b.backends[a.Name].Apply(as)
	if err != nil {
		return fmt.Errorf("arm %s: %w", a.Name, err)
	}
	if rep.Enforced != len(pods) {
		return fmt.Errorf("arm %s: the backend enforced %d of %d pods (%+v)", a.Name, rep.Enforced, len(pods), rep)
	}
	return nil
}

// suppress ticks dynamic CPU suppression every second while an arm with
// that lever runs, as the agent's Enforcer does; the returned func stops it.
func (b *bench) suppress(a armConfig) func() {
	be := b.backends[a.Name]
	if a.Stock || be == nil || a.Levers.Suppress != cgroupenf.SwitchOn {
		return func() {}
	}
	stop, done := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(done)
		t := time.NewTicker(cgroupenf.SuppressInterval)
		defer t.Stop()
		_, _ = be.Suppress(time.Now())
		for {
			select {
			case <-stop:
				return
			case now := <-t.C:
				if _, err := be.Suppress(now); err != nil {
					fmt.Fprintln(os.Stderr, "isolation: suppression:", err)
				}
			}
		}
	}()
	return func() { close(stop); <-done }
}

// segment runs the load generator and the probe for one segment.
func (b *bench) segment(ctx context.Context) (lat, wake *Hist, missing int64, err error) {
	d := b.opts.segment.String()
	lg := exec.CommandContext(ctx, b.self, "-role", "loadgen", "-addr", b.addr, "-rate", fmt.Sprint(b.opts.rate),
		"-conns", strconv.Itoa(b.opts.conns), "-duration", d)
	pr := exec.CommandContext(ctx, b.self, "-role", "probe", "-duration", d)
	type child struct {
		cmd   *exec.Cmd
		rel   string
		in    io.WriteCloser
		out   strings.Builder
		res   childResult
		label string
	}
	children := []*child{{cmd: lg, rel: b.loadgen.containerRel(0), label: "load generator"}, {cmd: pr, rel: b.critical.containerRel(1), label: "wakeup probe"}}
	for _, c := range children {
		c.cmd.Stdout, c.cmd.Stderr = &c.out, os.Stderr
		if c.in, err = c.cmd.StdinPipe(); err != nil {
			return nil, nil, 0, err
		}
		if err := b.t.Start(c.cmd, c.rel); err != nil {
			return nil, nil, 0, err
		}
	}
	defer func() {
		for _, c := range children {
			if c.cmd.Process != nil && c.cmd.ProcessState == nil {
				_ = c.cmd.Process.Kill()
				_ = c.cmd.Wait()
			}
			b.t.Forget(c.cmd)
		}
	}()
	for _, c := range children {
		if _, err := io.WriteString(c.in, "go\n"); err != nil {
			return nil, nil, 0, fmt.Errorf("failed to start the %s: %w", c.label, err)
		}
	}
	var errs []error
	for _, c := range children {
		if werr := c.cmd.Wait(); werr != nil {
			errs = append(errs, fmt.Errorf("%s failed: %w", c.label, werr))
			continue
		}
		jerr := json.Unmarshal([]byte(c.out.String()), &c.res)
		if jerr == nil && c.res.Hist == nil {
			jerr = errors.New("no histogram")
		}
		if jerr != nil {
			errs = append(errs, fmt.Errorf("%s printed %q: %w", c.label, c.out.String(), jerr))
			continue
		}
		if c.res.Error != "" {
			errs = append(errs, fmt.Errorf("%s: %s", c.label, c.res.Error))
		}
	}
	if err := errors.Join(errs...); err != nil {
		return nil, nil, 0, err
	}
	lr := children[0].res
	return lr.Hist, children[1].res.Hist, lr.Sent - lr.Received, nil
}

// burnedNS is the CPU time the burners' processes have run, in ns (the
// first field of /proc/<pid>/schedstat; a burner is one process).
func burnedNS(cmds []*exec.Cmd) int64 {
	var sum int64
	for _, c := range cmds {
		f := strings.Fields(readTrimmed(fmt.Sprintf("/proc/%d/schedstat", c.Process.Pid)))
		if len(f) > 0 {
			n, _ := strconv.ParseInt(f[0], 10, 64)
			sum += n
		}
	}
	return sum
}

// throttled is nr_throttled of the critical pod's cpu cgroup (0 when
// unreadable).
func (b *bench) throttled() int64 {
	data := readTrimmed(filepath.Join(b.t.cpuH, b.critical.rel, "cpu.stat"))
	for l := range strings.SplitSeq(data, "\n") {
		if v, ok := strings.CutPrefix(l, "nr_throttled "); ok {
			n, _ := strconv.ParseInt(v, 10, 64)
			return n
		}
	}
	return 0
}

func readTrimmed(p string) string {
	b, err := os.ReadFile(p)
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(b))
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

func waitListening(addr string, timeout time.Duration) error {
	end := time.Now().Add(timeout)
	for {
		c, err := net.DialTimeout("tcp", addr, 100*time.Millisecond)
		if err == nil {
			return c.Close()
		}
		if time.Now().After(end) {
			return fmt.Errorf("memcached did not listen on %s within %v: %w", addr, timeout, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
