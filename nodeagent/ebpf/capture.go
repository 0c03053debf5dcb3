package ebpf

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"
	"unsafe"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
	"github.com/cilium/ebpf/ringbuf"
)

// Trace capture defaults and limits.
const (
	// DefaultMaxTraceDuration caps a capture's duration.
	DefaultMaxTraceDuration = 60 * time.Second
	// DefaultMaxTraceBytes caps a capture file's size.
	DefaultMaxTraceBytes = 64 << 20
	// DefaultTraceRingBytes is the ring buffer's size.
	DefaultTraceRingBytes = 1 << 20
	// DefaultKeepTraces is how many capture files are kept.
	DefaultKeepTraces = 8
	// MaxScopeCgroups is how many cgroups one capture may scope
	// (MAX_SCOPE_CGROUPS in bpf/trace.bpf.c).
	MaxScopeCgroups = 256
	// traceFilePrefix names capture files, so pruning touches only ours.
	traceFilePrefix = "temper-trace-"
)

// TraceOptions configure trace capture.
type TraceOptions struct {
	// Dir receives the capture files; os.TempDir() when empty.
	Dir string
	// MaxDuration caps CaptureRequest.Duration; DefaultMaxTraceDuration
	// when 0.
	MaxDuration time.Duration
	// MaxBytes caps a capture file; DefaultMaxTraceBytes when 0.
	MaxBytes int64
	// RingBytes sizes the kernel ring buffer (a power of two, at least a
	// page); DefaultTraceRingBytes when 0. Events that do not fit while
	// userspace lags are counted as dropped.
	RingBytes int
	// Keep is how many capture files Dir keeps, the newest;
	// DefaultKeepTraces when 0.
	Keep int
}

func (o TraceOptions) withDefaults() (TraceOptions, error) {
	if o.Dir == "" {
		o.Dir = os.TempDir()
	}
	if o.MaxDuration == 0 {
		o.MaxDuration = DefaultMaxTraceDuration
	}
	if o.MaxBytes == 0 {
		o.MaxBytes = DefaultMaxTraceBytes
	}
	if o.RingBytes == 0 {
		o.RingBytes = DefaultTraceRingBytes
	}
	if o.Keep == 0 {
		o.Keep = DefaultKeepTraces
	}
	switch {
	case o.MaxDuration < 0:
		return o, fmt.Errorf("trace options: MaxDuration %s is negative", o.MaxDuration)
	case o.MaxBytes < 0:
		return o, fmt.Errorf("trace options: MaxBytes %d is negative", o.MaxBytes)
	case o.RingBytes < os.Getpagesize() || o.RingBytes&(o.RingBytes-1) != 0:
		return o, fmt.Errorf("trace options: RingBytes %d is not a power of two of at least a page", o.RingBytes)
	case o.Keep < 0:
		return o, fmt.Errorf("trace options: Keep %d is negative", o.Keep)
	}
	return o, nil
}

// CaptureRequest asks for one trace capture.
type CaptureRequest struct {
	// Cgroups are the cgroup directories whose tasks (and their
	// descendants' tasks) are captured, e.g. a pod's cgroup, in the
	// hierarchy the probe keys by. Empty only with Node.
	Cgroups []string
	// Node captures every task instead.
	Node bool
	// Duration is how long to capture: more than 0, at most
	// TraceOptions.MaxDuration.
	Duration time.Duration
	// MaxBytes caps this capture's file below TraceOptions.MaxBytes; 0
	// takes TraceOptions.MaxBytes.
	MaxBytes int64
}

// CaptureResult describes a finished capture.
type CaptureResult struct {
	// ID names the capture; Path is its file (see the package doc).
	ID   string
	Path string
	// SizeBytes is the file's size, trailer included.
	SizeBytes int64
	// Events counts the events written.
	Events int64
	// Dropped counts events the kernel could not queue (ring buffer full).
	Dropped int64
	// Truncated is true when the capture stopped at its byte cap.
	Truncated bool
	// Start is when the programs were attached; Took is how long the
	// capture ran.
	Start time.Time
	Took  time.Duration
}

// Capture records scheduling events for req.Duration (less if ctx ends or
// the byte cap is hit) into a new file. A second capture while one runs
// fails with ErrBusy; a bad request with ErrInvalidCapture; a cgroup that
// does not exist with ErrNoSuchCgroup.
func (p *Probe) Capture(ctx context.Context, req CaptureRequest) (CaptureResult, error) {
	maxBytes, err := p.validate(req)
	if err != nil {
		return CaptureResult{}, err
	}
	if !p.capturing.TryLock() {
		return CaptureResult{}, ErrBusy
	}
	defer p.capturing.Unlock()

	ids := make([]uint64, 0, len(req.Cgroups))
	for _, dir := range req.Cgroups {
		id, err := CgroupID(dir)
		if err != nil {
			return CaptureResult{}, err
		}
		ids = append(ids, id)
	}

	ctx, cancel := context.WithTimeout(ctx, req.Duration)
	defer cancel()
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return CaptureResult{}, ErrClosed
	}
	tiers := p.objs.Tiers
	p.cancelCapture = cancel
	p.mu.Unlock()
	defer func() {
		p.mu.Lock()
		p.cancelCapture = nil
		p.mu.Unlock()
	}()

	var objs traceObjects
	if err := p.loadTrace(&objs, tiers, req.Node); err != nil {
		return CaptureResult{}, err
	}
	defer objs.Close()
	for _, id := range ids {
		if err := objs.Scope.Update(id, uint8(1), ebpf.UpdateAny); err != nil {
			return CaptureResult{}, fmt.Errorf("failed to add cgroup %d to the trace scope: %w", id, err)
		}
	}
	return p.run(ctx, &objs, maxBytes)
}

func (p *Probe) validate(req CaptureRequest) (int64, error) {
	switch {
	case req.Duration <= 0:
		return 0, fmt.Errorf("%w: duration %s must be more than 0", ErrInvalidCapture, req.Duration)
	case req.Duration > p.trace.MaxDuration:
		return 0, fmt.Errorf("%w: duration %s is more than the maximum %s", ErrInvalidCapture, req.Duration, p.trace.MaxDuration)
	case req.Node && len(req.Cgroups) > 0:
		return 0, fmt.Errorf("%w: a node capture takes no cgroups (got %d)", ErrInvalidCapture, len(req.Cgroups))
	case !req.Node && len(req.Cgroups) == 0:
		return 0, fmt.Errorf("%w: cgroups: none given for a pod capture", ErrInvalidCapture)
	case len(req.Cgroups) > MaxScopeCgroups:
		return 0, fmt.Errorf("%w: cgroups: %d, at most %d", ErrInvalidCapture, len(req.Cgroups), MaxScopeCgroups)
	case req.MaxBytes < 0:
		return 0, fmt.Errorf("%w: max bytes %d is negative", ErrInvalidCapture, req.MaxBytes)
	}
	if req.MaxBytes == 0 || req.MaxBytes > p.trace.MaxBytes {
		return p.trace.MaxBytes, nil
	}
	return req.MaxBytes, nil
}

func (p *Probe) loadTrace(objs *traceObjects, tiers *ebpf.Map, all bool) error {
	spec, err := loadTrace()
	if err != nil {
		return fmt.Errorf("failed to parse the embedded trace object: %w", err)
	}
	if err := setHierarchy(spec, p.hierarchy); err != nil {
		return err
	}
	v := uint32(0)
	if all {
		v = 1
	}
	if err := spec.Variables["trace_all"].Set(v); err != nil {
		return fmt.Errorf("failed to set trace_all: %w", err)
	}
	spec.Maps["events"].MaxEntries = uint32(p.trace.RingBytes)
	err = spec.LoadAndAssign(objs, &ebpf.CollectionOptions{MapReplacements: map[string]*ebpf.Map{"tiers": tiers}})
	if err != nil {
		return unavailable("load the trace programs", err)
	}
	return nil
}

// line is one event of the trace file.
type line struct {
	TS         uint64  `json:"ts"`
	CPU        uint32  `json:"cpu"`
	Ev         string  `json:"ev"`
	Pid        uint32  `json:"pid"`
	Tgid       uint32  `json:"tgid"`
	Comm       string  `json:"comm"`
	Cgroup     uint64  `json:"cgroup"`
	Tier       string  `json:"tier"`
	TargetCPU  *int32  `json:"target_cpu,omitempty"`
	PrevState  *uint32 `json:"prev_state,omitempty"`
	Preempt    *bool   `json:"preempt,omitempty"`
	NextPid    *uint32 `json:"next_pid,omitempty"`
	NextTgid   *uint32 `json:"next_tgid,omitempty"`
	NextComm   *string `json:"next_comm,omitempty"`
	NextCgroup *uint64 `json:"next_cgroup,omitempty"`
	NextTier   *string `json:"next_tier,omitempty"`
	InScope    string  `json:"in_scope,omitempty"`
}

type trailer struct {
	Ev         string `json:"ev"`
	Events     int64  `json:"events"`
	Dropped    int64  `json:"dropped"`
	Truncated  bool   `json:"truncated"`
	DurationNs int64  `json:"duration_ns"`
}

// trailerReserve keeps room under the byte cap for the trailer line.
const trailerReserve = 160

func (p *Probe) run(ctx context.Context, objs *traceObjects, maxBytes int64) (CaptureResult, error) {
	if err := os.MkdirAll(p.trace.Dir, 0o700); err != nil {
		return CaptureResult{}, fmt.Errorf("failed to create trace dir %q: %w", p.trace.Dir, err)
	}
	start := time.Now()
	f, err := os.CreateTemp(p.trace.Dir, traceFilePrefix+start.UTC().Format("20060102T150405Z")+"-*.jsonl")
	if err != nil {
		return CaptureResult{}, fmt.Errorf("failed to create trace file in %q: %w", p.trace.Dir, err)
	}
	res := CaptureResult{Path: f.Name(), Start: start}
	res.ID = strings.TrimSuffix(filepath.Base(f.Name()), ".jsonl")
	fail := func(err error) (CaptureResult, error) {
		_ = f.Close()
		_ = os.Remove(f.Name())
		return CaptureResult{}, err
	}

	rd, err := ringbuf.NewReader(objs.Events)
	if err != nil {
		return fail(fmt.Errorf("failed to open the trace ring buffer: %w", err))
	}
	defer rd.Close()

	var links []link.Link
	detach := func() {
		for _, l := range links {
			_ = l.Close()
		}
		links = nil
	}
	defer detach()
	for _, prog := range []*ebpf.Program{objs.TrWakeup, objs.TrWakeupNew, objs.TrSwitch} {
		l, err := link.AttachTracing(link.TracingOptions{Program: prog})
		if err != nil {
			return fail(unavailable("attach "+prog.String(), err))
		}
		links = append(links, l)
	}
	p.log.V(1).Info("trace capture started", "id", res.ID)

	// Wake the reader when the capture ends: at its deadline, or through
	// Flush when ctx is canceled early (SetDeadline cannot interrupt a
	// blocked read).
	if d, ok := ctx.Deadline(); ok {
		rd.SetDeadline(d)
	}
	stop := context.AfterFunc(ctx, func() { _ = rd.Flush() })
	defer stop()

	w := bufio.NewWriterSize(f, 64<<10)
	budget := maxBytes - trailerReserve
	var (
		rec     ringbuf.Record
		written int64
		drained bool
	)
	for {
		err := rd.ReadInto(&rec)
		if errors.Is(err, os.ErrDeadlineExceeded) || errors.Is(err, ringbuf.ErrFlushed) {
			if drained {
				break
			}
			// Stop producing, then read what is already queued.
			detach()
			drained = true
			rd.SetDeadline(time.Now())
			continue
		}
		if err != nil {
			return fail(fmt.Errorf("failed to read the trace ring buffer: %w", err))
		}
		if len(rec.RawSample) < int(unsafe.Sizeof(traceEvent{})) {
			continue
		}
		ev := (*traceEvent)(unsafe.Pointer(&rec.RawSample[0]))
		b, err := json.Marshal(toLine(ev))
		if err != nil {
			return fail(fmt.Errorf("failed to encode a trace event: %w", err))
		}
		if written+int64(len(b))+1 > budget {
			res.Truncated = true
			break
		}
		_, _ = w.Write(b)
		_ = w.WriteByte('\n')
		written += int64(len(b)) + 1
		res.Events++
	}
	detach()
	res.Took = time.Since(start)
	res.Dropped = sumDrops(objs.Drops)

	b, _ := json.Marshal(trailer{Ev: "end", Events: res.Events, Dropped: res.Dropped, Truncated: res.Truncated, DurationNs: res.Took.Nanoseconds()})
	_, _ = w.Write(b)
	_ = w.WriteByte('\n')
	if err := w.Flush(); err != nil {
		return fail(fmt.Errorf("failed to write trace file %q: %w", f.Name(), err))
	}
	if err := f.Close(); err != nil {
		_ = os.Remove(f.Name())
		return CaptureResult{}, fmt.Errorf("failed to close trace file %q: %w", f.Name(), err)
	}
	fi, err := os.Stat(res.Path)
	if err != nil {
		return CaptureResult{}, fmt.Errorf("failed to stat trace file %q: %w", res.Path, err)
	}
	res.SizeBytes = fi.Size()
	p.prune()
	p.log.V(1).Info("trace capture done", "id", res.ID, "events", res.Events, "dropped", res.Dropped, "truncated", res.Truncated)
	return res, nil
}

func sumDrops(m *ebpf.Map) int64 {
	var percpu []uint64
	if err := m.Lookup(uint32(0), &percpu); err != nil {
		return 0
	}
	var n int64
	for _, v := range percpu {
		n += int64(v)
	}
	return n
}

var evNames = map[uint32]string{1: "wakeup", 2: "wakeup_new", 3: "switch"}

func toLine(ev *traceEvent) line {
	l := line{
		TS: ev.Ts, CPU: ev.Cpu, Ev: evNames[ev.Type], Pid: ev.Pid, Tgid: ev.Tgid,
		Comm: commString(ev.Comm), Cgroup: ev.Cgroup, Tier: tierName(ev.Tier).String(),
	}
	if ev.Type != 3 {
		tc := ev.TargetCpu
		l.TargetCPU = &tc
		return l
	}
	ps, pre := ev.PrevState, ev.Preempt != 0
	np, nt, nc, ncg := ev.NextPid, ev.NextTgid, commString(ev.NextComm), ev.NextCgroup
	ntier := tierName(ev.NextTier).String()
	l.PrevState, l.Preempt, l.NextPid, l.NextTgid, l.NextComm, l.NextCgroup, l.NextTier = &ps, &pre, &np, &nt, &nc, &ncg, &ntier
	switch ev.InScope {
	case 1:
		l.InScope = "prev"
	case 2:
		l.InScope = "next"
	case 3:
		l.InScope = "both"
	}
	return l
}

func commString(c [16]int8) string {
	b := make([]byte, 0, len(c))
	for _, v := range c {
		if v == 0 {
			break
		}
		b = append(b, byte(v))
	}
	return string(b)
}

// prune removes all but the newest Keep capture files of Dir.
func (p *Probe) prune() {
	matches, err := filepath.Glob(filepath.Join(p.trace.Dir, traceFilePrefix+"*.jsonl"))
	if err != nil || len(matches) <= p.trace.Keep {
		return
	}
	type file struct {
		path string
		mod  time.Time
	}
	files := make([]file, 0, len(matches))
	for _, m := range matches {
		if fi, err := os.Stat(m); err == nil {
			files = append(files, file{m, fi.ModTime()})
		}
	}
	sort.Slice(files, func(i, j int) bool { return files[i].mod.After(files[j].mod) })
	for _, f := range files[min(p.trace.Keep, len(files)):] {
		if err := os.Remove(f.path); err != nil {
			p.log.Error(err, "failed to remove an old trace file", "path", f.path)
		}
	}
}
