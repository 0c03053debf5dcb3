package ebpf

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/go-logr/logr"
	"github.com/go-logr/logr/testr"

	"github.com/infera-io/temper/apis/wellknown"
)

// helperEnv makes the test binary a workload process instead of a test run.
const helperEnv = "TEMPER_EBPF_TEST_HELPER"

func TestMain(m *testing.M) {
	switch os.Getenv(helperEnv) {
	case "":
		os.Exit(m.Run())
	case "sleeper":
		// Wakes up about 2000 times a second: each wakeup is one run-queue
		// latency sample.
		for {
			time.Sleep(500 * time.Microsecond)
		}
	case "burner":
		for { //nolint:staticcheck // SA5002: a burner spins on purpose
		}
	case "load":
		// Run unprivileged by TestLoadUnprivileged.
		_, err := Load(Options{Logger: logr.Discard(), Hierarchy: HierarchyV1CPU})
		fmt.Printf("unavailable=%t err=%v\n", errors.Is(err, ErrUnavailable), err)
		os.Exit(0)
	}
	os.Exit(2)
}

func requireBPF(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root to load BPF programs")
	}
	if _, err := os.Stat(btfPath); err != nil {
		t.Skipf("needs kernel BTF at %s: %v", btfPath, err)
	}
}

// cgroupRoot returns where the test creates cgroups and the hierarchy that
// keys them.
func cgroupRoot(t *testing.T) (string, Hierarchy) {
	t.Helper()
	h, err := DetectHierarchy("/sys/fs/cgroup")
	if err != nil {
		t.Skipf("no cgroup mount: %v", err)
	}
	if h == HierarchyV2 {
		return "/sys/fs/cgroup", h
	}
	root := "/sys/fs/cgroup/cpu"
	if _, err := os.Stat(filepath.Join(root, "cgroup.procs")); err != nil {
		t.Skipf("no cgroup v1 cpu hierarchy at %s: %v", root, err)
	}
	return root, h
}

func loadProbe(t *testing.T, to TraceOptions) *Probe {
	t.Helper()
	requireBPF(t)
	_, h := cgroupRoot(t)
	if to.Dir == "" {
		to.Dir = t.TempDir()
	}
	p, err := Load(Options{Logger: testr.New(t), Hierarchy: h, Trace: to})
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	t.Cleanup(func() {
		if err := p.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return p
}

// podSeq numbers the test's cgroups; tests run sequentially.
var podSeq int

// pod is a pod-like cgroup with one container cgroup holding helper
// processes.
type pod struct {
	dir       string // the pod cgroup, which the tests map to a tier
	container string // where the processes run
	pids      map[uint32]bool
}

func newPod(t *testing.T, helpers ...string) *pod {
	t.Helper()
	root, _ := cgroupRoot(t)
	podSeq++
	p := &pod{dir: filepath.Join(root, fmt.Sprintf("temper-ebpf-test-%d-%d", os.Getpid(), podSeq))}
	p.container = filepath.Join(p.dir, "c0")
	p.pids = map[uint32]bool{}
	if err := os.MkdirAll(p.container, 0o755); err != nil {
		t.Fatalf("failed to create cgroup %s: %v", p.container, err)
	}
	var cmds []*exec.Cmd
	t.Cleanup(func() {
		for _, c := range cmds {
			_ = c.Process.Kill()
			_ = c.Wait()
		}
		for _, d := range []string{p.container, p.dir} {
			if err := os.Remove(d); err != nil && !os.IsNotExist(err) {
				t.Errorf("failed to remove cgroup %s: %v", d, err)
			}
		}
	})
	for _, h := range helpers {
		c := exec.Command(os.Args[0])
		c.Env = append(os.Environ(), helperEnv+"="+h)
		if err := c.Start(); err != nil {
			t.Fatalf("failed to start helper %s: %v", h, err)
		}
		cmds = append(cmds, c)
		if err := os.WriteFile(filepath.Join(p.container, "cgroup.procs"), []byte(strconv.Itoa(c.Process.Pid)), 0o644); err != nil {
			t.Fatalf("failed to move pid %d into %s: %v", c.Process.Pid, p.container, err)
		}
		p.pids[uint32(c.Process.Pid)] = true
	}
	return p
}

func (p *pod) id(t *testing.T) uint64 {
	t.Helper()
	id, err := CgroupID(p.dir)
	if err != nil {
		t.Fatal(err)
	}
	return id
}

// waitCount polls the histograms until tier has at least n samples.
func waitCount(t *testing.T, p *Probe, tier wellknown.Tier, n uint64) map[wellknown.Tier]Histogram {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		h, err := p.Histograms()
		if err != nil {
			t.Fatalf("Histograms: %v", err)
		}
		if h[tier].Count >= n {
			return h
		}
		if time.Now().After(deadline) {
			t.Fatalf("tier %s has %d run-queue latency samples after 30s, want at least %d", tier, h[tier].Count, n)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func TestHistogramsPerTier(t *testing.T) {
	p := loadProbe(t, TraceOptions{})
	// A sleeper contending with two burners for the two CPUs.
	pd := newPod(t, "sleeper", "burner", "burner")
	if err := p.SetTiers(map[uint64]wellknown.Tier{pd.id(t): wellknown.TierHigh}); err != nil {
		t.Fatalf("SetTiers: %v", err)
	}
	h := waitCount(t, p, wellknown.TierHigh, 500)

	for _, tier := range []wellknown.Tier{wellknown.TierCritical, wellknown.TierNormal, wellknown.TierLow, wellknown.TierBackground} {
		if h[tier].Count != 0 {
			t.Errorf("tier %s has %d samples, but no cgroup is mapped to it", tier, h[tier].Count)
		}
	}
	if h[wellknown.TierSystem].Count == 0 {
		t.Errorf("tier system has no samples, but the rest of the host runs in it")
	}
	for tier, hist := range h {
		var prev uint64
		for i, c := range hist.Cumulative {
			if c < prev {
				t.Errorf("tier %s: bucket le=%g has %d, below the previous %d", tier, hist.Bounds[i], c, prev)
			}
			prev = c
		}
		if prev > hist.Count {
			t.Errorf("tier %s: last finite bucket %d above count %d", tier, prev, hist.Count)
		}
		if hist.Count > 0 && hist.SumSeconds <= 0 {
			t.Errorf("tier %s: %d samples with sum %g s", tier, hist.Count, hist.SumSeconds)
		}
	}
	// The batch lookup reads what entry-by-entry lookups read: taken
	// between two of those, every entry (counts and the nanosecond sums)
	// lies between their values.
	readAll := func(noBatch bool) []uint64 {
		p.mu.Lock()
		defer p.mu.Unlock()
		p.histNoBatch = noBatch
		v, err := p.readHist()
		if err != nil {
			t.Fatalf("readHist (entry by entry: %v): %v", noBatch, err)
		}
		if !noBatch && p.histNoBatch {
			t.Fatal("this kernel refused the batch lookup")
		}
		return slices.Clone(v)
	}
	before, batch, after := readAll(true), readAll(false), readAll(true)
	nonzero := 0
	for i := range batch {
		if batch[i] < before[i] || batch[i] > after[i] {
			t.Errorf("histogram entry %d: batch read %d, entry reads %d then %d", i, batch[i], before[i], after[i])
		}
		if batch[i] > 0 {
			nonzero++
		}
	}
	if nonzero == 0 {
		t.Error("the batch read found no samples")
	}
	high := h[wellknown.TierHigh]
	if mean := high.SumSeconds / float64(high.Count); mean <= 0 || mean > 1 {
		t.Errorf("tier high: mean run-queue latency %g s is not plausible", mean)
	}
	if len(high.Buckets()) != len(high.Bounds) || high.Bounds[0] != 1e-6 {
		t.Errorf("tier high: buckets %v do not start at 1µs", high.Bounds)
	}

	// Remapping the pod moves its samples to the new tier.
	if err := p.SetTiers(map[uint64]wellknown.Tier{pd.id(t): wellknown.TierLow}); err != nil {
		t.Fatalf("SetTiers: %v", err)
	}
	waitCount(t, p, wellknown.TierLow, 500)
}

func TestSetTiersBounds(t *testing.T) {
	p := loadProbe(t, TraceOptions{})
	big := make(map[uint64]wellknown.Tier, MaxTierCgroups+1)
	for i := range MaxTierCgroups + 1 {
		big[uint64(i+1)] = wellknown.TierNormal
	}
	if err := p.SetTiers(big); !errors.Is(err, ErrTooManyCgroups) {
		t.Errorf("SetTiers(%d cgroups) = %v, want ErrTooManyCgroups", len(big), err)
	}
	delete(big, 1)
	if err := p.SetTiers(big); err != nil {
		t.Errorf("SetTiers(%d cgroups) = %v, want success", len(big), err)
	}
	if err := p.SetTiers(map[uint64]wellknown.Tier{7: "gold"}); err == nil || !strings.Contains(err.Error(), `"gold"`) {
		t.Errorf("SetTiers with tier gold = %v, want an error naming it", err)
	}
	// Replacing a full map with a small one works (stale entries go first).
	if err := p.SetTiers(map[uint64]wellknown.Tier{1: wellknown.TierHigh}); err != nil {
		t.Errorf("SetTiers after a full map: %v", err)
	}
	var n int
	var k uint64
	var v uint32
	it := p.objs.Tiers.Iterate()
	for it.Next(&k, &v) {
		n++
	}
	if n != 1 {
		t.Errorf("tiers map has %d entries after SetTiers of 1", n)
	}
}

// readTrace parses a capture file into its events and trailer.
func readTrace(t *testing.T, path string) ([]line, trailer) {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var (
		events []line
		end    trailer
		gotEnd bool
	)
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if gotEnd {
			t.Fatalf("%s: line after the trailer: %s", path, sc.Text())
		}
		if strings.Contains(sc.Text(), `"ev":"end"`) {
			if err := json.Unmarshal(sc.Bytes(), &end); err != nil {
				t.Fatalf("%s: bad trailer %q: %v", path, sc.Text(), err)
			}
			gotEnd = true
			continue
		}
		var l line
		if err := json.Unmarshal(sc.Bytes(), &l); err != nil {
			t.Fatalf("%s: bad line %q: %v", path, sc.Text(), err)
		}
		events = append(events, l)
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	if !gotEnd {
		t.Fatalf("%s: no trailer", path)
	}
	return events, end
}

func TestCapturePod(t *testing.T) {
	p := loadProbe(t, TraceOptions{})
	pd := newPod(t, "sleeper", "burner")
	other := newPod(t, "sleeper")
	if err := p.SetTiers(map[uint64]wellknown.Tier{pd.id(t): wellknown.TierCritical, other.id(t): wellknown.TierLow}); err != nil {
		t.Fatal(err)
	}
	res, err := p.Capture(t.Context(), CaptureRequest{Cgroups: []string{pd.dir}, Duration: time.Second})
	if err != nil {
		t.Fatalf("Capture: %v", err)
	}
	events, end := readTrace(t, res.Path)
	if res.Events != int64(len(events)) || end.Events != res.Events {
		t.Errorf("result says %d events, trailer %d, file has %d", res.Events, end.Events, len(events))
	}
	if res.Truncated || end.Truncated {
		t.Errorf("1 s capture of one pod truncated at %d bytes", res.SizeBytes)
	}
	fi, err := os.Stat(res.Path)
	if err != nil || fi.Size() != res.SizeBytes {
		t.Errorf("file size %v (%v), result says %d", fi.Size(), err, res.SizeBytes)
	}
	container, err := CgroupID(pd.container)
	if err != nil {
		t.Fatal(err)
	}
	var wakeups, switches int
	for _, e := range events {
		var tgid uint32
		var cg uint64
		var tier string
		switch {
		case e.Ev == "wakeup" || e.Ev == "wakeup_new":
			wakeups++
			tgid, cg, tier = e.Tgid, e.Cgroup, e.Tier
		case e.Ev == "switch" && (e.InScope == "prev" || e.InScope == "both"):
			switches++
			tgid, cg, tier = e.Tgid, e.Cgroup, e.Tier
		case e.Ev == "switch" && e.InScope == "next" && e.NextTgid != nil:
			switches++
			tgid, cg, tier = *e.NextTgid, *e.NextCgroup, *e.NextTier
		default:
			t.Fatalf("event %+v is neither a wakeup nor a switch with a side in scope", e)
		}
		if !pd.pids[tgid] {
			t.Errorf("event %+v: in-scope task of process %d is not one of the pod's %v", e, tgid, pd.pids)
		}
		if cg != container || tier != "critical" {
			t.Errorf("event %+v: in-scope task has cgroup %d tier %s, want %d critical", e, cg, tier, container)
		}
	}
	if wakeups == 0 || switches == 0 {
		t.Errorf("capture of a pod with a sleeper has %d wakeups and %d switches", wakeups, switches)
	}
}

func TestCaptureNodeTruncated(t *testing.T) {
	p := loadProbe(t, TraceOptions{})
	newPod(t, "sleeper")
	const maxBytes = 8 << 10
	res, err := p.Capture(t.Context(), CaptureRequest{Node: true, Duration: 30 * time.Second, MaxBytes: maxBytes})
	if err != nil {
		t.Fatalf("Capture: %v", err)
	}
	_, end := readTrace(t, res.Path)
	if !res.Truncated || !end.Truncated {
		t.Errorf("node capture capped at %d bytes: result truncated=%t trailer truncated=%t", maxBytes, res.Truncated, end.Truncated)
	}
	if res.SizeBytes > maxBytes || res.Events == 0 {
		t.Errorf("capped capture: %d bytes (cap %d), %d events", res.SizeBytes, maxBytes, res.Events)
	}
}

func TestCaptureBusy(t *testing.T) {
	p := loadProbe(t, TraceOptions{})
	// An empty pod: its capture runs the whole 2 s, never hitting a cap.
	quiet := newPod(t)
	var (
		wg   sync.WaitGroup
		errs [2]error
	)
	for i := range errs {
		wg.Go(func() {
			_, errs[i] = p.Capture(t.Context(), CaptureRequest{Cgroups: []string{quiet.dir}, Duration: 2 * time.Second})
		})
	}
	wg.Wait()
	busy, ok := 0, 0
	for _, err := range errs {
		switch {
		case errors.Is(err, ErrBusy):
			busy++
		case err == nil:
			ok++
		default:
			t.Errorf("concurrent capture: %v", err)
		}
	}
	if busy != 1 || ok != 1 {
		t.Errorf("two concurrent captures: %d busy, %d succeeded (errors %v), want 1 and 1", busy, ok, errs)
	}
	// Free again afterwards.
	if _, err := p.Capture(t.Context(), CaptureRequest{Node: true, Duration: time.Second, MaxBytes: 64 << 10}); err != nil {
		t.Errorf("capture after the busy one: %v", err)
	}
}

func TestCaptureInvalid(t *testing.T) {
	p := loadProbe(t, TraceOptions{MaxDuration: 10 * time.Second})
	root, _ := cgroupRoot(t)
	for _, tc := range []struct {
		name string
		req  CaptureRequest
		want error
		msg  string
	}{
		{"zero duration", CaptureRequest{Node: true}, ErrInvalidCapture, "more than 0"},
		{"negative duration", CaptureRequest{Node: true, Duration: -time.Second}, ErrInvalidCapture, "more than 0"},
		{"too long", CaptureRequest{Node: true, Duration: 11 * time.Second}, ErrInvalidCapture, "maximum 10s"},
		{"no scope", CaptureRequest{Duration: time.Second}, ErrInvalidCapture, "none given"},
		{"node and cgroups", CaptureRequest{Node: true, Cgroups: []string{root}, Duration: time.Second}, ErrInvalidCapture, "no cgroups"},
		{"negative cap", CaptureRequest{Node: true, Duration: time.Second, MaxBytes: -1}, ErrInvalidCapture, "negative"},
		{"unknown pod", CaptureRequest{Cgroups: []string{filepath.Join(root, "no-such-pod")}, Duration: time.Second}, ErrNoSuchCgroup, "no-such-pod"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := p.Capture(t.Context(), tc.req)
			if !errors.Is(err, tc.want) || !strings.Contains(err.Error(), tc.msg) {
				t.Errorf("Capture(%+v) = %v, want %v mentioning %q", tc.req, err, tc.want, tc.msg)
			}
		})
	}
}

func TestCaptureCanceledByClose(t *testing.T) {
	requireBPF(t)
	_, h := cgroupRoot(t)
	p, err := Load(Options{Logger: testr.New(t), Hierarchy: h, Trace: TraceOptions{Dir: t.TempDir()}})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	done := make(chan error, 1)
	go func() {
		_, err := p.Capture(ctx, CaptureRequest{Node: true, Duration: 60 * time.Second, MaxBytes: 1 << 20})
		done <- err
	}()
	// Wait for the capture to hold the lock, then Close must end it.
	for p.capturing.TryLock() {
		p.capturing.Unlock()
		time.Sleep(10 * time.Millisecond)
	}
	if err := p.Close(); err != nil {
		t.Errorf("Close: %v", err)
	}
	if err := <-done; err != nil {
		t.Errorf("capture ended by Close: %v", err)
	}
	if _, err := p.Histograms(); !errors.Is(err, ErrClosed) {
		t.Errorf("Histograms after Close = %v, want ErrClosed", err)
	}
}

func TestLoadUnprivileged(t *testing.T) {
	requireBPF(t)
	// The go test build directory is private to root: copy the binary
	// where nobody can run it.
	dir := t.TempDir()
	bin := filepath.Join(dir, "ebpf.test")
	data, err := os.ReadFile(os.Args[0])
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(bin, data, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, d := range []string{filepath.Dir(dir), dir} {
		if err := os.Chmod(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	c := exec.Command(bin)
	c.Dir = dir
	c.Env = append(os.Environ(), helperEnv+"=load")
	c.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
	out, err := c.CombinedOutput()
	if err != nil {
		t.Skipf("cannot run the test binary as nobody: %v: %s", err, out)
	}
	if !strings.Contains(string(out), "unavailable=true") || !strings.Contains(string(out), "needs root") {
		t.Errorf("Load as nobody: %s; want an ErrUnavailable saying it needs root", out)
	}
}
