package nodeagent

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/go-logr/logr"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/kubernetes/scheme"
	typedcorev1 "k8s.io/client-go/kubernetes/typed/core/v1"
	"k8s.io/client-go/tools/record"
	"k8s.io/klog/v2"
	"k8s.io/utils/clock"

	configv1alpha1 "github.com/infera-io/temper/apis/config/v1alpha1"
	"github.com/infera-io/temper/apis/tiering"
	"github.com/infera-io/temper/apis/wellknown"
	"github.com/infera-io/temper/nodeagent/cgroupfs"
	"github.com/infera-io/temper/nodeagent/podstate"
	"github.com/infera-io/temper/nodeagent/publish"
	"github.com/infera-io/temper/nodeagent/server"
	"github.com/infera-io/temper/nodeagent/telemetry"
)

// Options are the agent's dependencies. Everything that touches the host is
// injectable so the agent runs against faked trees in tests.
type Options struct {
	Config   *configv1alpha1.AgentConfiguration
	NodeName string
	Client   kubernetes.Interface
	Log      logr.Logger
	Clock    clock.WithTicker
	// SchedExtRoot is /sys/kernel/sched_ext; empty means under the
	// config's sys_root.
	SchedExtRoot string
	// SysCPURoot is /sys/devices/system/cpu (machine shape); empty means
	// under the config's sys_root.
	SysCPURoot string
	// ProcRoot is /proc.
	ProcRoot string
	// BootIDFile tags the cgroup state file with the boot; empty means
	// the kernel's.
	BootIDFile string

	// wrapBackend, for tests in this package only, wraps the selected
	// backend (to make it fail on cue).
	wrapBackend func(backend) backend
}

// Agent is the L0 node agent.
type Agent struct {
	o     Options
	log   logr.Logger
	store *podstate.Store
	pub   *publish.Publisher
	// cg is the detected cgroup layout (or why there is none); it changes
	// once, when a layout missing at start is detected later.
	cg      atomic.Pointer[cgroupState]
	backend backend
	machine Machine
	kick    chan struct{}
	metrics *telemetry.Metrics
	// relayout is set when a layout detected late asks for a reconcile.
	relayout atomic.Bool
	// observation is nil when disabled or unavailable (set under mu).
	observation *observation
	// events feeds the gRPC API's WatchEvents.
	events *server.Broadcaster

	mu          sync.Mutex
	assignments []Assignment
	gen         int64
	fencedMilli int64
	appliedAt   time.Time
	reconciled  bool // the first assignment was applied (or stood down)
	httpAddr    string
	lastStatus  string // the agent-status last published, for events
	safeMode    bool
	// standDownErr is why the last stand-down (safe mode) did not
	// complete, "" when it did; the retry ticker tries again.
	standDownErr string
	notes        []string
	reported     map[string]struct{} // findings already logged, by pod UID + text
	// safeModeValue is the unreadable safe-mode value last reported, so
	// each distinct one is reported once.
	safeModeValue string
	recorder      record.EventRecorder
	// persisted is the assignment file's content last written or read.
	persisted []byte
	// publishReq asks the publisher goroutine for a publish: the API
	// server's latency never holds the main loop.
	publishReq chan struct{}
	// mappingValue is the node's infera.io/priority-mapping last acted on
	// (mappingSet: present), so a change is logged once.
	mappingValue string
	mappingSet   bool

	// remote holds the token reviewer and the TCP listener of the gRPC API
	// (serve_auth.go, serve_tcp.go).
	remote remoteAccess
}

// New wires the agent. Nothing touches the node or the API server until Run.
func New(o Options) (*Agent, error) {
	if o.Config == nil {
		return nil, errors.New("agent config is nil")
	}
	if err := o.Config.Validate(); err != nil {
		return nil, err
	}
	if o.Clock == nil {
		o.Clock = clock.RealClock{}
	}
	if o.SchedExtRoot == "" {
		o.SchedExtRoot = filepath.Join(o.Config.SysRoot, "kernel", "sched_ext")
	}
	if o.SysCPURoot == "" {
		o.SysCPURoot = filepath.Join(o.Config.SysRoot, "devices", "system", "cpu")
	}
	if o.ProcRoot == "" {
		o.ProcRoot = "/proc"
	}
	store, err := podstate.New(podstate.Options{Client: o.Client, NodeName: o.NodeName, Log: o.Log})
	if err != nil {
		return nil, err
	}
	a := &Agent{
		o:          o,
		log:        o.Log.WithValues("node", o.NodeName),
		store:      store,
		pub:        publish.New(o.Client, o.NodeName, o.Config.Heartbeat.Duration, o.Clock),
		kick:       make(chan struct{}, 1),
		publishReq: make(chan struct{}, 1),
		reported:   map[string]struct{}{},
		events:     server.NewBroadcaster(server.BroadcasterOptions{Now: o.Clock.Now}),
	}
	a.metrics, err = telemetry.New(telemetry.Options{Snapshot: a.metricsSnapshot, ProcRoot: o.ProcRoot})
	if err != nil {
		return nil, fmt.Errorf("failed to register the agent's metrics: %w", err)
	}
	return a, nil
}

func (a *Agent) poke() {
	select {
	case a.kick <- struct{}{}:
	default:
	}
}

// Run runs the agent until ctx is done. On a clean stop (ctx done),
// scx_layered is left running (an agent restart adopts it) and cgroup
// values are restored; on an error exit (or a panic) every value stays as
// set, so a crash-looping agent does not flip the node between stock and
// enforced on every restart: the next agent adopts them. Safe mode and
// --restore stand both down (docs/design.md, failure matrix).
func (a *Agent) Run(ctx context.Context) (runErr error) {
	cfg := a.o.Config
	if a.o.Client != nil {
		// Kubernetes Events on the Node (lint findings the operator must
		// see); sent in the background, dropped when the API server is gone.
		eb := record.NewBroadcaster()
		eb.StartRecordingToSink(&typedcorev1.EventSinkImpl{Interface: a.o.Client.CoreV1().Events("")})
		a.recorder = eb.NewRecorder(scheme.Scheme, corev1.EventSource{Component: "infera-agent", Host: a.o.NodeName})
		defer eb.Shutdown()
	}
	m, err := ReadMachine(a.o.SysCPURoot)
	if err != nil {
		a.log.Error(err, "Failed to read the machine shape; assuming no SMT")
	}
	a.machine = m

	layout, err := a.detectLayout()
	if err != nil {
		// Without a cgroup tree the agent can still tier and report; it
		// cannot enforce by cgroup or match pods by path. An agent started
		// before the kubelet made its tree retries (layoutWait).
		a.log.Error(err, "Failed to detect the cgroup layout; pods will be reported without cgroups until it appears", "root", cfg.Cgroup.Root)
	}
	a.setLayout(layout, err)

	var why string
	a.backend, why = a.selectBackend()
	if err != nil && cfg.Backend != configv1alpha1.AgentBackendObserveOnly {
		a.backend = newLayoutWait(a, a.backend, err)
	}
	if a.o.wrapBackend != nil {
		a.backend = a.o.wrapBackend(a.backend)
	}
	defer func() {
		cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
		defer cancel()
		if r := recover(); r != nil {
			// A bug, not a stop: keep the values for the next agent.
			_ = a.backend.Release(cctx)
			panic(r)
		}
		if runErr != nil && ctx.Err() == nil {
			// An error exit: the next agent (the DaemonSet restarts it)
			// adopts what is enforced; restoring here would flip the node
			// to stock and back on every crash-loop iteration.
			a.log.Info("Exiting on an error; leaving enforcement as set for the next agent to adopt", "backend", a.backend.Name(), "err", runErr.Error())
			if err := a.backend.Release(cctx); err != nil {
				a.log.Error(err, "Failed to release the enforcement backend", "backend", a.backend.Name())
			}
			return
		}
		// A clean stop: the cgroup backend restores the originals, the scx
		// backend leaves scx_layered for the next agent to adopt.
		if err := a.backend.Close(cctx); err != nil {
			a.log.Error(err, "Failed to stand down cleanly", "backend", a.backend.Name())
		}
	}()
	a.log.Info("Selected enforcement backend", "backend", a.backend.Name(), "why", why, "status", a.backend.Report().Status)

	var servers sync.WaitGroup
	sctx, stopServers := context.WithCancel(ctx)
	defer func() { stopServers(); servers.Wait() }()
	a.startServers(sctx, &servers)

	// Enforcement does not wait on the control plane: the last assignment
	// is enforced and the backend's own work (drift re-assertion, the scx
	// supervisor and its outage cover) runs before the informers sync.
	a.enforcePersisted(ctx)
	bctx, cancel := context.WithCancel(ctx)
	defer cancel()
	backendDone := make(chan error, 1)
	go func() { backendDone <- a.backend.Run(bctx) }()

	// The informers stop with storeCtx; Shutdown waits for them, so an
	// error exit must cancel it too.
	storeCtx, stopStore := context.WithCancel(ctx)
	defer func() { stopStore(); a.store.Shutdown() }()
	synced := make(chan error, 1)
	go func() { synced <- a.store.Start(storeCtx) }()
	select {
	case err := <-synced:
		if err != nil {
			if ctx.Err() != nil {
				return nil // stopped before the informers synced: a clean stop
			}
			return err
		}
	case err := <-backendDone:
		if err != nil && ctx.Err() == nil {
			return fmt.Errorf("enforcement backend %s stopped: %w", a.backend.Name(), err)
		}
		return nil
	}
	a.gen = a.pub.Seed(a.store.Node())

	var publisher sync.WaitGroup
	pubCtx, stopPublisher := context.WithCancel(ctx)
	defer func() { stopPublisher(); publisher.Wait() }()
	publisher.Add(1)
	go func() {
		defer publisher.Done()
		a.publishLoop(pubCtx)
	}()

	window := cfg.CoalesceWindow.Duration
	var timerC <-chan time.Time // the open coalescing window, if any
	heartbeat := a.o.Clock.NewTicker(cfg.Heartbeat.Duration / 2)
	defer heartbeat.Stop()
	retry := a.o.Clock.NewTicker(time.Second)
	defer retry.Stop()
	// A pod the API server knows before the kubelet made its cgroup is
	// pending; after a reconcile that leaves one, it is retried soon and
	// then less often (50, 100, 200, 400, 800 ms), until the 1 s retry
	// takes over, so that a cgroup made just after the pod event is
	// enforced within tens of milliseconds, not up to a second later.
	var pendingC <-chan time.Time
	var pendingDelay time.Duration
	retryPending := func(afterEvent bool) {
		pendingC = nil
		if !a.hasPending() {
			pendingDelay = 0
			return
		}
		if afterEvent || pendingDelay == 0 {
			pendingDelay = firstPendingRetry
		} else {
			pendingDelay *= 2
		}
		if pendingDelay < time.Second {
			pendingC = a.o.Clock.NewTimer(pendingDelay).C()
		}
	}

	a.startObservation(bctx)
	a.reconcile(ctx)
	retryPending(true)
	if cfg.ReleaseStartupPages {
		// Started: what start-up alone ran need not stay mapped.
		if n, err := releaseStartupPages(); err != nil {
			a.log.Error(err, "Failed to release the start-up pages of the agent's binary", "releasedBytes", n)
		} else {
			a.log.V(1).Info("Released the start-up pages of the agent's binary", "releasedBytes", n)
		}
	}
	for {
		select {
		case <-ctx.Done():
			return nil
		case err := <-backendDone:
			if err != nil && ctx.Err() == nil {
				return fmt.Errorf("enforcement backend %s stopped: %w", a.backend.Name(), err)
			}
			return nil
		case <-a.store.Changes():
			// Safe mode is never delayed by the coalescing window.
			if a.safeModeRequested() != a.inSafeMode() {
				a.reconcile(ctx)
				continue
			}
			if timerC == nil {
				timerC = a.o.Clock.NewTimer(window).C()
			}
		case <-timerC:
			timerC = nil
			a.reconcile(ctx)
			retryPending(true)
		case <-pendingC:
			a.reconcile(ctx)
			retryPending(false)
		case <-a.kick:
			a.requestPublish()
		case <-retry.C():
			if a.hasPending() || a.standDownIncomplete() || a.relayout.Swap(false) {
				a.reconcile(ctx)
			}
		case <-heartbeat.C():
			a.requestPublish()
		}
	}
}

// firstPendingRetry is the first retry of a pod whose cgroup was not there
// yet.
const firstPendingRetry = 50 * time.Millisecond

func (a *Agent) safeModeRequested() bool {
	n := a.store.Node()
	return n != nil && wellknown.IsSafeModeRequested(n.Annotations)
}

// lintSafeMode reports an unreadable infera.io/safe-mode-requested value
// (which stands the node down, see wellknown.ParseSafeMode) once per
// distinct value: a log line and a Warning Event on the Node.
func (a *Agent) lintSafeMode() {
	n := a.store.Node()
	if n == nil {
		return
	}
	v, ok := n.Annotations[wellknown.SafeModeRequestedAnnotation]
	_, err := wellknown.ParseSafeMode(v)
	a.mu.Lock()
	if !ok || err == nil {
		a.safeModeValue = ""
		a.mu.Unlock()
		return
	}
	if a.safeModeValue == v {
		a.mu.Unlock()
		return
	}
	a.safeModeValue = v
	a.mu.Unlock()
	a.log.Info("Lint finding", "object", klog.KObj(n), "field", "metadata.annotations["+wellknown.SafeModeRequestedAnnotation+"]", "finding", err.Error())
	if a.recorder != nil {
		ref := &corev1.ObjectReference{Kind: "Node", Name: n.Name, UID: n.UID, APIVersion: "v1"}
		a.recorder.Event(ref, corev1.EventTypeWarning, "UnreadableSafeModeValue", err.Error())
	}
}

// thresholds returns the tier thresholds of this node: its
// infera.io/priority-mapping (written by the manager from an InferaPolicy,
// or by hand) when present and valid, else the config's [priority_mapping].
// A change of the value is logged once; a value that cannot be used is an
// error naming the node and the field, and the config's thresholds apply.
func (a *Agent) thresholds() tiering.Thresholds {
	fallback := a.o.Config.PriorityMapping.Thresholds()
	var annotations map[string]string
	if n := a.store.Node(); n != nil {
		annotations = n.Annotations
	}
	th, err := tiering.ForNode(annotations, fallback)
	v, set := annotations[wellknown.PriorityMappingAnnotation]
	a.mu.Lock()
	changed := v != a.mappingValue || set != a.mappingSet
	a.mappingValue, a.mappingSet = v, set
	a.mu.Unlock()
	switch {
	case !changed:
	case err != nil:
		a.log.Error(err, "Ignoring the node's priority mapping; tiering by the agent config's [priority_mapping]",
			"Node", klog.KRef("", a.o.NodeName), "thresholds", th)
	case set:
		a.log.Info("Tiering by the node's priority mapping", "annotation", wellknown.PriorityMappingAnnotation, "thresholds", th)
	default:
		a.log.Info("Tiering by the agent config's [priority_mapping]", "thresholds", th)
	}
	return th
}

func (a *Agent) inSafeMode() bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.safeMode
}

// standDownIncomplete reports a safe-mode stand-down that failed and must
// be retried.
func (a *Agent) standDownIncomplete() bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.safeMode && a.standDownErr != ""
}

func (a *Agent) hasPending() bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	for _, as := range a.assignments {
		if as.Pending() && as.CgroupRelPath != "" {
			return true
		}
	}
	return false
}

// reconcile recomputes the assignment and enforces it (or stands down in
// safe mode), then publishes.
func (a *Agent) reconcile(ctx context.Context) {
	th := a.thresholds()
	as := classify(a.store.Pods(), th, a.layout())
	a.lint(as)
	a.lintSafeMode()
	safe := a.safeModeRequested()

	a.mu.Lock()
	wasSafe := a.safeMode
	prev := a.assignments
	a.assignments, a.safeMode = as, safe
	if !safe {
		a.standDownErr = ""
	}
	a.mu.Unlock()
	defer func() {
		a.mu.Lock()
		a.reconciled = true
		gen := a.gen
		a.mu.Unlock()
		a.assignmentEvents(prev, as, gen)
	}()

	switch {
	case safe:
		if !wasSafe {
			a.log.Info("Safe mode requested: standing down to stock kernel behaviour")
			a.events.Publish(server.Event{Type: server.EventSafeModeEntered, Reason: "infera.io/safe-mode-requested is set on the node",
				Message: "safe mode: standing down to stock kernel behaviour"})
		}
		err := a.backend.StandDown(ctx)
		a.mu.Lock()
		prevErr := a.standDownErr
		a.standDownErr = ""
		if err != nil {
			a.standDownErr = "stand-down incomplete: " + firstLine(err.Error())
		}
		msg := a.standDownErr
		a.mu.Unlock()
		switch {
		case err != nil && msg != prevErr:
			a.log.Error(err, "Failed to stand down; retrying every second")
		case err == nil && prevErr != "":
			a.log.Info("Stand-down complete after a retry")
		}
		if !wasSafe {
			a.bumpGen()
		}
	default:
		if wasSafe {
			a.log.Info("Safe mode lifted: re-engaging enforcement")
			a.events.Publish(server.Event{Type: server.EventSafeModeLeft, Reason: "infera.io/safe-mode-requested was removed",
				Message: "safe mode lifted: re-engaging enforcement"})
		}
		start := a.o.Clock.Now()
		applied, err := a.backend.Apply(ctx, enforcementPods(as), a.machine)
		a.metrics.ObserveApply(a.o.Clock.Since(start))
		if err != nil {
			a.log.Error(err, "Failed to apply the assignment", "backend", a.backend.Name())
		}
		a.mu.Lock()
		prevNotes := a.notes
		a.fencedMilli, a.notes = applied.FencedMilli, applied.Notes
		if applied.Changed || a.appliedAt.IsZero() {
			a.appliedAt = a.o.Clock.Now()
		}
		a.mu.Unlock()
		// Operator-facing remarks (a demoted critical layer, pods left to
		// the catch-all) are logged when they change, not on every apply.
		if !slices.Equal(prevNotes, applied.Notes) {
			for _, n := range applied.Notes {
				a.log.Info("Enforcement note", "backend", a.backend.Name(), "note", n)
			}
		}
		if applied.Changed || wasSafe {
			a.bumpGen()
		}
	}
	a.persistAssignment(as, safe)
	a.requestPublish()
}

// publishTimeout bounds one publish: a hung API server costs a heartbeat,
// never enforcement.
const publishTimeout = 10 * time.Second

func (a *Agent) requestPublish() {
	select {
	case a.publishReq <- struct{}{}:
	default: // one is pending; it publishes the latest state
	}
}

// publishLoop publishes on request until ctx is done, one at a time, each
// with publishTimeout.
func (a *Agent) publishLoop(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-a.publishReq:
			pctx, cancel := context.WithTimeout(ctx, publishTimeout)
			a.publish(pctx)
			cancel()
		}
	}
}

func (a *Agent) bumpGen() {
	a.mu.Lock()
	a.gen++
	a.mu.Unlock()
}

// lint logs each finding once per pod.
func (a *Agent) lint(as []Assignment) {
	a.mu.Lock()
	defer a.mu.Unlock()
	live := map[string]struct{}{}
	for _, as := range as {
		for _, f := range as.Findings {
			key := string(as.UID) + "\x00" + f.String()
			live[key] = struct{}{}
			if _, done := a.reported[key]; done {
				continue
			}
			a.reported[key] = struct{}{}
			a.log.Info("Lint finding", "pod", klog.KRef(as.Pod.Namespace, as.Pod.Name), "field", f.Field, "finding", f.Message)
		}
	}
	for k := range a.reported {
		if _, ok := live[k]; !ok {
			delete(a.reported, k)
		}
	}
}

// Status is the agent's infera.io/agent-status value right now.
func (a *Agent) Status() string {
	a.mu.Lock()
	safe, standDownErr := a.safeMode, a.standDownErr
	a.mu.Unlock()
	if safe {
		if standDownErr != "" {
			// Never claim stock behaviour the node does not have.
			return wellknown.FormatAgentStatus(wellknown.AgentStatusDegradedPrefix, standDownErr)
		}
		return wellknown.AgentStatusSafeMode
	}
	return a.backend.Report().Status
}

func (a *Agent) publish(ctx context.Context) {
	a.mu.Lock()
	load := wellknown.TierLoad{
		Gen:         a.gen,
		Backend:     a.backend.Name(),
		FencedMilli: a.fencedMilli,
		Tiers:       tierLoad(a.assignments),
		// The scheduler plugin sizes fences in these cores, as ours are.
		ThreadsPerCore: threadsPerCore(a.machine),
	}
	if a.safeMode {
		load.Backend, load.FencedMilli = wellknown.BackendNone, 0
	}
	a.mu.Unlock()
	if n := a.store.Node(); n != nil {
		if q, ok := n.Status.Allocatable[corev1.ResourceCPU]; ok {
			load.AllocatableMilli = q.MilliValue()
		}
	}
	status := a.Status()
	a.mu.Lock()
	prevStatus := a.lastStatus
	a.lastStatus = status
	a.mu.Unlock()
	if prevStatus != status {
		a.events.Publish(server.Event{Type: server.EventBackendStateChanged, Backend: load.Backend,
			PreviousStatus: prevStatus, Status: status, Message: "agent-status: " + status})
	}
	if _, err := a.pub.Publish(ctx, status, load); err != nil {
		// The API server may be gone; enforcement carries on and the
		// heartbeat retries.
		a.log.Error(err, "Failed to publish node annotations")
	}
}

// Assignments returns a copy of the current assignment, sorted by pod.
func (a *Agent) Assignments() []Assignment {
	a.mu.Lock()
	defer a.mu.Unlock()
	out := append([]Assignment(nil), a.assignments...)
	sort.Slice(out, func(i, j int) bool { return out[i].Pod.String() < out[j].Pod.String() })
	return out
}

func cgroupDriver(d configv1alpha1.AgentCgroupDriver) cgroupfs.Driver {
	switch strings.ToLower(string(d)) {
	case "systemd":
		return cgroupfs.DriverSystemd
	case "cgroupfs":
		return cgroupfs.DriverCgroupfs
	default:
		return cgroupfs.DriverAuto
	}
}

// Metrics is the agent's metrics registry and pushed metrics.
func (a *Agent) Metrics() *telemetry.Metrics { return a.metrics }
