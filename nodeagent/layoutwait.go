package nodeagent

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/infera-io/temper/apis/wellknown"
	"github.com/infera-io/temper/nodeagent/cgroupfs"
	"github.com/infera-io/temper/nodeagent/cgroupfs/writer"
	"github.com/infera-io/temper/nodeagent/enforcement"
	scxenf "github.com/infera-io/temper/nodeagent/enforcement/scx"
)

// cgroupState is the detected layout, or why there is none.
type cgroupState struct {
	layout *cgroupfs.Layout
	err    error
	// cpuacct is the v1 cpuacct hierarchy when not co-mounted with cpu.
	cpuacct string
}

// cpuacctDir is the v1 cpuacct cgroup of the cpu cgroup dir when cpuacct
// is mounted apart from cpu; "" otherwise (or with no state).
func (st *cgroupState) cpuacctDir(dir string) string {
	if st == nil || st.cpuacct == "" || st.layout == nil || dir == "" {
		return ""
	}
	// Every scrape asks for every pod: a prefix swap, not filepath.Rel
	// and Join (which clean both paths; they were 4 % of a scrape).
	cpu := st.layout.Hierarchies[cgroupfs.CPU]
	if rest, ok := strings.CutPrefix(dir, cpu); ok && (rest == "" || rest[0] == '/') {
		return st.cpuacct + rest
	}
	rel, err := filepath.Rel(cpu, dir)
	if err != nil {
		return ""
	}
	return filepath.Join(st.cpuacct, rel)
}

func (a *Agent) setLayout(l *cgroupfs.Layout, err error) {
	a.cg.Store(&cgroupState{layout: l, err: err, cpuacct: cpuacctHierarchy(l)})
}

// layout is the detected cgroup layout, nil while there is none.
func (a *Agent) layout() *cgroupfs.Layout {
	if st := a.cg.Load(); st != nil {
		return st.layout
	}
	return nil
}

func (a *Agent) layoutAndErr() (*cgroupfs.Layout, error) {
	if st := a.cg.Load(); st != nil {
		return st.layout, st.err
	}
	return nil, nil
}

func (a *Agent) detectLayout() (*cgroupfs.Layout, error) {
	cfg := a.o.Config
	return cgroupfs.Detect(cfg.Cgroup.Root, cgroupfs.DetectOptions{
		Driver:      cgroupDriver(cfg.Cgroup.Driver),
		KubepodsDir: cfg.Cgroup.KubepodsPath,
	})
}

// selectBackend picks the backend for the layout detected so far.
func (a *Agent) selectBackend() (backend, string) {
	return selectBackend(a.o.Config, scxenf.SysFS{Root: a.o.SchedExtRoot}, selectors{
		scx: a.newSCXBackend, tiers: a.newTiersBackend, cgroup: a.newCgroupBackend,
		cgroupV2: func() string {
			l, err := a.layoutAndErr()
			return podsOnCgroupV2(l, err)
		},
	}, a.log)
}

// Layout detection retry: the first retry after layoutRetryMin, doubling
// to layoutRetryMax.
const (
	layoutRetryMin = time.Second
	layoutRetryMax = time.Minute
)

// layoutWait is the backend of an agent that found no cgroup layout at
// start (it started before the kubelet made its tree): it retries the
// detection with backoff and says so in its report; once the layout is
// there it selects the backend again, hands over to it and asks the agent
// to reconcile. Until then it is the backend selected without a layout
// (observe-only, or the scx backends, which need no layout).
type layoutWait struct {
	a *Agent

	mu       sync.Mutex
	inner    backend
	waiting  bool
	attempts int
	lastErr  error
	next     time.Time
}

var _ enforcement.Backend = (*layoutWait)(nil)

func newLayoutWait(a *Agent, inner backend, err error) *layoutWait {
	return &layoutWait{a: a, inner: inner, waiting: true, attempts: 1, lastErr: err}
}

func (l *layoutWait) get() backend {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.inner
}

func (l *layoutWait) Name() string { return l.get().Name() }
func (l *layoutWait) Apply(ctx context.Context, pods []enforcement.Pod, m enforcement.Machine) (enforcement.Applied, error) {
	return l.get().Apply(ctx, pods, m)
}
func (l *layoutWait) StandDown(ctx context.Context) error { return l.get().StandDown(ctx) }
func (l *layoutWait) Close(ctx context.Context) error     { return l.get().Close(ctx) }
func (l *layoutWait) Release(ctx context.Context) error   { return l.get().Release(ctx) }
func (l *layoutWait) Audit() []writer.Record              { return l.get().Audit() }

// Report is the inner backend's, with the detection's progress while it
// waits.
func (l *layoutWait) Report() enforcement.Report {
	l.mu.Lock()
	inner, waiting, attempts, lastErr, next := l.inner, l.waiting, l.attempts, l.lastErr, l.next
	l.mu.Unlock()
	r := inner.Report()
	if waiting {
		cause := enforcement.FirstLine(lastErr.Error())
		short := fmt.Sprintf("no cgroup layout yet (attempt %d): %s", attempts, cause)
		progress := short
		if !next.IsZero() {
			progress = fmt.Sprintf("no cgroup layout yet (attempt %d, next at %s): %s", attempts, next.UTC().Format(time.RFC3339), cause)
		}
		if r.Reason != "" {
			r.Reason = progress + "; " + r.Reason
		} else {
			r.Reason = progress
		}
		// agent-status says it too: the agent means to enforce and waits
		// for the kubelet (observe-only would read as a choice).
		if r.Status == wellknown.AgentStatusObserveOnly || strings.HasPrefix(r.Status, wellknown.AgentStatusRefusedPrefix) {
			r.Status = wellknown.FormatAgentStatus(wellknown.AgentStatusDegradedPrefix, short)
		}
	}
	return r
}

// Run retries the detection until it succeeds or ctx ends, then runs the
// backend selected with the layout.
func (l *layoutWait) Run(ctx context.Context) error {
	clk := l.a.o.Clock
	delay := layoutRetryMin
	innerDone := make(chan error, 1)
	ictx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() { innerDone <- l.get().Run(ictx) }()
	for {
		l.mu.Lock()
		l.next = clk.Now().Add(delay)
		l.mu.Unlock()
		t := clk.NewTimer(delay)
		select {
		case <-ctx.Done():
			t.Stop()
			return <-innerDone
		case err := <-innerDone:
			t.Stop()
			return err
		case <-t.C():
		}
		layout, err := l.a.detectLayout()
		if err != nil {
			l.mu.Lock()
			l.attempts++
			l.lastErr = err
			l.mu.Unlock()
			delay = min(2*delay, layoutRetryMax)
			continue
		}
		// The layout is there: stop the backend chosen without it, choose
		// again with it, and run that one.
		cancel()
		if err := <-innerDone; err != nil {
			return err
		}
		old := l.get()
		l.a.setLayout(layout, nil)
		nb, why := l.a.selectBackend()
		_ = old.Close(context.WithoutCancel(ctx))
		l.mu.Lock()
		l.inner, l.waiting, l.next = nb, false, time.Time{}
		attempts := l.attempts + 1
		l.mu.Unlock()
		l.a.log.Info("Detected the cgroup layout; enforcement backend selected again", "attempts", attempts,
			"version", layout.Version.String(), "backend", nb.Name(), "why", why)
		l.a.relayout.Store(true)
		l.a.poke()
		return nb.Run(ctx)
	}
}
