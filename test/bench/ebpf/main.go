// Command ebpf measures the cost of nodeagent/ebpf's always-on run-queue
// latency programs: the kernel's own accounting of their run time and run
// count (kernel.bpf_stats_enabled) under a context-switch-heavy load, and the
// load's throughput with the programs detached and attached, in one run.
// Needs root and kernel BTF. Prints JSON.
package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cilium/ebpf"
	"github.com/go-logr/logr"
	"golang.org/x/sys/unix"

	"github.com/infera-io/temper/apis/wellknown"
	tebpf "github.com/infera-io/temper/nodeagent/ebpf"
)

type arm struct {
	RoundTripsPerSec float64 `json:"round_trips_per_sec"`
}

type progCost struct {
	Name       string  `json:"name"`
	RunsPerSec float64 `json:"runs_per_sec"`
	NsPerRun   float64 `json:"ns_per_run"`
}

type result struct {
	Machine          string     `json:"machine"`
	CPUs             int        `json:"cpus"`
	Pairs            int        `json:"pairs"`
	Duration         string     `json:"duration"`
	Off              arm        `json:"probes_off"`
	On               arm        `json:"probes_on"`
	ThroughputLoss   float64    `json:"throughput_loss_pct"`
	Programs         []progCost `json:"programs"`
	LoadCorePct      float64    `json:"bpf_pct_of_one_core_under_load"`
	IdleCorePct      float64    `json:"bpf_pct_of_one_core_quiet_host"`
	IdleEventsPerSec float64    `json:"quiet_host_runs_per_sec"`
}

func main() {
	dur := flag.Duration("duration", 10*time.Second, "length of each measured phase")
	pairs := flag.Int("pairs", 2, "ping-pong thread pairs (each round trip is two wakeups and two context switches)")
	flag.Parse()
	if err := run(*dur, *pairs); err != nil {
		fmt.Fprintln(os.Stderr, "ebpf bench:", err)
		os.Exit(1)
	}
}

func run(dur time.Duration, pairs int) error {
	stats, err := ebpf.EnableStats(unix.BPF_STATS_RUN_TIME)
	if err != nil {
		return fmt.Errorf("failed to enable BPF run-time stats: %w", err)
	}
	defer stats.Close()
	h, err := tebpf.DetectHierarchy("/sys/fs/cgroup")
	if err != nil {
		return err
	}
	res := result{Machine: machine(), CPUs: runtime.NumCPU(), Pairs: pairs, Duration: dur.String()}
	podID, cleanup, err := enterPod(h)
	if err != nil {
		return err
	}
	defer cleanup()

	res.Off.RoundTripsPerSec, err = pingPong(dur, pairs)
	if err != nil {
		return err
	}
	p, err := tebpf.Load(tebpf.Options{Logger: logr.Discard(), Hierarchy: h})
	if err != nil {
		return err
	}
	defer p.Close()
	// The load runs in a container cgroup of a pod mapped to a tier, as a
	// pod's tasks do: each event resolves its tier in two lookups.
	if err := p.SetTiers(map[uint64]wellknown.Tier{podID: wellknown.TierNormal}); err != nil {
		return err
	}

	// Quiet host: whatever the machine does on its own.
	before, err := p.Stats()
	if err != nil {
		return err
	}
	time.Sleep(dur)
	after, err := p.Stats()
	if err != nil {
		return err
	}
	idle := diff(before, after, dur)
	for _, c := range idle {
		res.IdleEventsPerSec += c.RunsPerSec
		res.IdleCorePct += c.RunsPerSec * c.NsPerRun / 1e9 * 100
	}

	before, err = p.Stats()
	if err != nil {
		return err
	}
	res.On.RoundTripsPerSec, err = pingPong(dur, pairs)
	if err != nil {
		return err
	}
	after, err = p.Stats()
	if err != nil {
		return err
	}
	res.Programs = diff(before, after, dur)
	for _, c := range res.Programs {
		res.LoadCorePct += c.RunsPerSec * c.NsPerRun / 1e9 * 100
	}
	res.ThroughputLoss = (1 - res.On.RoundTripsPerSec/res.Off.RoundTripsPerSec) * 100
	enc := json.NewEncoder(os.Stdout)
	enc.SetIndent("", "  ")
	return enc.Encode(res)
}

func diff(before, after []tebpf.ProgramStats, dur time.Duration) []progCost {
	prev := map[string]tebpf.ProgramStats{}
	for _, s := range before {
		prev[s.Name] = s
	}
	var out []progCost
	for _, s := range after {
		runs := s.RunCount - prev[s.Name].RunCount
		rt := s.RunTime - prev[s.Name].RunTime
		c := progCost{Name: s.Name, RunsPerSec: float64(runs) / dur.Seconds()}
		if runs > 0 {
			c.NsPerRun = float64(rt.Nanoseconds()) / float64(runs)
		}
		out = append(out, c)
	}
	return out
}

// pingPong bounces a byte between OS threads through pipes for dur and
// returns the round trips per second: every hop blocks one thread and wakes
// the other, a wakeup and a context switch each.
func pingPong(dur time.Duration, pairs int) (float64, error) {
	var (
		trips atomic.Int64
		stop  atomic.Bool
		wg    sync.WaitGroup
		fds   []int
	)
	defer func() {
		for _, fd := range fds {
			_ = unix.Close(fd)
		}
	}()
	for range pairs {
		var a, b [2]int
		if err := unix.Pipe(a[:]); err != nil {
			return 0, fmt.Errorf("failed to create a pipe: %w", err)
		}
		if err := unix.Pipe(b[:]); err != nil {
			return 0, fmt.Errorf("failed to create a pipe: %w", err)
		}
		fds = append(fds, a[0], a[1], b[0], b[1])
		buf := []byte{1}
		wg.Go(func() { // ping: write a, read b
			runtime.LockOSThread()
			rb := make([]byte, 1)
			for !stop.Load() {
				if _, err := unix.Write(a[1], buf); err != nil {
					return
				}
				if _, err := unix.Read(b[0], rb); err != nil {
					return
				}
				trips.Add(1)
			}
			_ = unix.Close(a[1]) // ends pong's read
		})
		wg.Go(func() { // pong: read a, write b
			runtime.LockOSThread()
			rb := make([]byte, 1)
			for {
				if n, err := unix.Read(a[0], rb); err != nil || n == 0 {
					return
				}
				if _, err := unix.Write(b[1], rb); err != nil {
					return
				}
			}
		})
	}
	start := time.Now()
	time.Sleep(dur)
	stop.Store(true)
	n := trips.Load()
	took := time.Since(start)
	wg.Wait()
	fds = nil // closed by the threads or leaked to exit; the bench is short-lived
	return float64(n) / took.Seconds(), nil
}

func machine() string {
	var u unix.Utsname
	_ = unix.Uname(&u)
	model := ""
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, l := range splitLines(string(b)) {
			if len(l) > 10 && l[:10] == "model name" {
				for i := range l {
					if l[i] == ':' {
						model = l[i+2:]
						break
					}
				}
				break
			}
		}
	}
	return fmt.Sprintf("%s, kernel %s", model, unix.ByteSliceToString(u.Release[:]))
}

func splitLines(s string) []string {
	var out []string
	for len(s) > 0 {
		i := 0
		for i < len(s) && s[i] != '\n' {
			i++
		}
		out = append(out, s[:i])
		if i < len(s) {
			i++
		}
		s = s[i:]
	}
	return out
}

// enterPod moves this process into <root>/temper-ebpf-bench/pod/c0 and
// returns the pod cgroup's id and a func that moves it back and removes the
// cgroups.
func enterPod(h tebpf.Hierarchy) (uint64, func(), error) {
	root := "/sys/fs/cgroup"
	if h == tebpf.HierarchyV1CPU {
		root = "/sys/fs/cgroup/cpu"
	}
	top := filepath.Join(root, "temper-ebpf-bench")
	pod := filepath.Join(top, "pod")
	c0 := filepath.Join(pod, "c0")
	cleanup := func() {
		_ = os.WriteFile(filepath.Join(root, "cgroup.procs"), []byte(strconv.Itoa(os.Getpid())), 0o644)
		for _, d := range []string{c0, pod, top} {
			_ = os.Remove(d)
		}
	}
	if err := os.MkdirAll(c0, 0o755); err != nil {
		return 0, cleanup, fmt.Errorf("failed to create cgroup %s: %w", c0, err)
	}
	if err := os.WriteFile(filepath.Join(c0, "cgroup.procs"), []byte(strconv.Itoa(os.Getpid())), 0o644); err != nil {
		cleanup()
		return 0, cleanup, fmt.Errorf("failed to move into cgroup %s: %w", c0, err)
	}
	id, err := tebpf.CgroupID(pod)
	if err != nil {
		cleanup()
		return 0, cleanup, err
	}
	return id, cleanup, nil
}
