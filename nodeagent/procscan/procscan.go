package procscan

import (
	"errors"
	"fmt"
	"os"
	"runtime"
	"slices"
	"strconv"
	"time"

	"golang.org/x/sys/unix"
	"k8s.io/utils/clock"

	"github.com/infera-io/temper/apis/wellknown"
)

// PodKey names a pod, "namespace/name".
type PodKey string

// Target is one pod to sample: its processes and its tier.
type Target struct {
	Pod  PodKey
	Tier wellknown.Tier
	// TGIDs are the pod's processes (thread group ids, as cgroup.procs lists
	// them). ReadCgroupProcs reads them from the pod's cgroup.
	TGIDs []int
}

// Defaults of Options.
const (
	DefaultMaxThreadsPerPod = 256
	DefaultMaxThreads       = 8192
	DefaultTopN             = 20
	// maxComm bounds a sanitized comm; the kernel's is at most 15 bytes.
	maxComm = 32
	// statBufSize holds any stat line: 52 numeric fields of at most 20
	// digits plus a 64-byte comm.
	statBufSize = 2048
)

// Options configure a Sampler.
type Options struct {
	// ProcRoot is where procfs is mounted; default /proc.
	ProcRoot string
	// MaxThreadsPerPod bounds the threads read per pod per sample
	// (default 256); MaxThreads bounds them over all pods (default 8192).
	MaxThreadsPerPod, MaxThreads int
	// TopN is how many of the busiest threads Sample.Top holds (default 20).
	TopN int
	// ClockTicks is USER_HZ, the unit of utime and stime (default 100, what
	// every Linux architecture Temper runs on exports).
	ClockTicks int
	// Clock timestamps samples; default the real clock.
	Clock clock.PassiveClock
}

// Thread is one thread that ran between two samples.
type Thread struct {
	TID, PID int
	// Comm is the thread's name, sanitized: printable ASCII only, other
	// bytes replaced by '?', at most 32 bytes.
	Comm string
	Pod  PodKey
	Tier wellknown.Tier
	// CPU is the CPU the thread last ran on when it was sampled.
	CPU int
	// MilliCPU is its CPU time between the two samples, in milliseconds per
	// second (1000 = one full CPU).
	MilliCPU float64
}

// CPUUsage is the observed usage of one CPU: the MilliCPU of the threads
// whose last CPU it was.
type CPUUsage struct {
	CPU      int
	MilliCPU float64
}

// Cap says that a pod's threads were not all read.
type Cap struct {
	Pod PodKey
	// Threads is how many threads the pod's processes have (their stat's
	// num_threads, or one per process not read), Read how many were read,
	// Idle how many were not read because their process was idle.
	Threads, Read, Idle int
	// Node is true when the node-wide MaxThreads, not MaxThreadsPerPod,
	// was what cut this pod short.
	Node bool
}

// Sample is what one call of Sampler.Sample saw.
type Sample struct {
	Time time.Time
	// Interval is the time since the previous sample; 0 on the first, which
	// has no usage.
	Interval time.Duration
	// Threads are the sampled threads that used CPU since the previous
	// sample, busiest first.
	Threads []Thread
	// Top are the first TopN of Threads.
	Top []Thread
	// CPUs is the usage per CPU, ascending CPU, CPUs without usage left out.
	CPUs []CPUUsage
	// Pods and Processes are how many were given; ProcessesIdle how many
	// were not descended into because their CPU time did not move;
	// ThreadsRead how many thread stat files were read.
	Pods, Processes, ProcessesIdle, ThreadsRead int
	// Capped lists the caps hit, at most one entry per pod.
	Capped []Cap
	// Vanished counts processes and threads that exited while being read.
	Vanished int
	// Errors counts other read failures; FirstError describes the first.
	Errors     int
	FirstError string
	// Wall is how long the sample took; CPUTime the CPU the sampling
	// thread spent on it.
	Wall, CPUTime time.Duration
}

type procState struct {
	ticks, start uint64
	gen          uint64
	idle         bool
	// fd is the process's stat file, kept open from one sample to the
	// next (-1: none); see readProcStat.
	fd int
}

type threadState struct {
	ticks, start uint64
	pid          int
	gen          uint64
	whole        bool // read from the process's stat (see account)
}

// Sampler keeps the previous sample of every thread it saw. It is not safe
// for concurrent use.
type Sampler struct {
	opts    Options
	procs   map[int]*procState
	threads map[int]*threadState
	gen     uint64
	last    time.Time
	buf     []byte
	dent    []byte // getdents64 records of a task directory
	tids    []int
	rot     int
}

// New returns a Sampler.
func New(opts Options) (*Sampler, error) {
	if opts.ProcRoot == "" {
		opts.ProcRoot = "/proc"
	}
	if opts.MaxThreadsPerPod == 0 {
		opts.MaxThreadsPerPod = DefaultMaxThreadsPerPod
	}
	if opts.MaxThreads == 0 {
		opts.MaxThreads = DefaultMaxThreads
	}
	if opts.TopN == 0 {
		opts.TopN = DefaultTopN
	}
	if opts.ClockTicks == 0 {
		opts.ClockTicks = 100
	}
	if opts.Clock == nil {
		opts.Clock = clock.RealClock{}
	}
	switch {
	case opts.MaxThreadsPerPod < 0:
		return nil, fmt.Errorf("invalid procscan options: MaxThreadsPerPod %d is negative", opts.MaxThreadsPerPod)
	case opts.MaxThreads < 0:
		return nil, fmt.Errorf("invalid procscan options: MaxThreads %d is negative", opts.MaxThreads)
	case opts.TopN < 0:
		return nil, fmt.Errorf("invalid procscan options: TopN %d is negative", opts.TopN)
	case opts.ClockTicks < 0:
		return nil, fmt.Errorf("invalid procscan options: ClockTicks %d is negative", opts.ClockTicks)
	}
	if st, err := os.Stat(opts.ProcRoot); err != nil || !st.IsDir() {
		return nil, fmt.Errorf("invalid procscan options: ProcRoot %q is not a directory", opts.ProcRoot)
	}
	return &Sampler{
		opts:    opts,
		procs:   map[int]*procState{},
		threads: map[int]*threadState{},
		buf:     make([]byte, statBufSize),
		dent:    make([]byte, 8<<10),
	}, nil
}

// Sample reads the threads of targets and returns what ran since the
// previous call. Call it every few seconds (10 s is what the agent does):
// the usage resolution is one clock tick (10 ms) per interval.
func (s *Sampler) Sample(targets []Target) *Sample {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	cpu0 := threadCPU()
	now := s.opts.Clock.Now()
	s.gen++
	out := &Sample{Time: now, Pods: len(targets)}
	if !s.last.IsZero() && now.After(s.last) {
		out.Interval = now.Sub(s.last)
	}
	s.last = now
	budget := s.opts.MaxThreads
	// Rotate the first pod so that a total cap does not starve the same
	// pods every time.
	if len(targets) > 0 {
		s.rot = (s.rot + 1) % len(targets)
	}
	for i := range targets {
		budget = s.samplePod(&targets[(i+s.rot)%len(targets)], budget, out)
	}
	s.evict()
	s.finish(out)
	out.Wall = s.opts.Clock.Since(now)
	out.CPUTime = threadCPU() - cpu0
	return out
}

func (s *Sampler) samplePod(t *Target, budget int, out *Sample) int {
	podBudget := min(s.opts.MaxThreadsPerPod, budget)
	read, total, idle := 0, 0, 0
	hit := false
	for i, pid := range t.TGIDs {
		if i >= s.opts.MaxThreadsPerPod {
			// Each process has at least one thread: the rest cannot fit.
			total += len(t.TGIDs) - i
			hit = true
			break
		}
		out.Processes++
		ps := s.procs[pid]
		st, fd, err := s.readProcStat(pid, ps)
		if err != nil {
			if ps != nil {
				s.forget(pid)
			}
			s.fail(out, fmt.Sprintf("process %d of pod %s", pid, t.Pod), err)
			continue
		}
		total += max(st.threads, 1)
		quiet := ps != nil && ps.start == st.start && ps.ticks == st.ticks && ps.gen == s.gen-1
		if ps == nil {
			ps = &procState{fd: -1}
			s.procs[pid] = ps
		}
		ps.fd = fd
		ps.ticks, ps.start, ps.gen, ps.idle = st.ticks, st.start, s.gen, quiet
		if quiet {
			out.ProcessesIdle++
			idle += max(st.threads, 1)
			continue
		}
		if podBudget-read <= 0 {
			// Not read: drop it so that the next sample reads its threads
			// instead of taking it for idle.
			s.forget(pid)
			hit = true
			continue
		}
		if st.threads == 1 {
			// Its only thread is the process itself (tid = pid), and the
			// process's stat already says what the thread's would: its
			// name, CPU time, start and last CPU. Not reading the task
			// directory saves three or four system calls per process.
			read++
			s.account(t, pid, pid, st, true, out)
			continue
		}
		n, more := s.sampleThreads(t, pid, podBudget-read, out)
		read += n
		hit = hit || more
	}
	out.ThreadsRead += read
	if hit {
		out.Capped = append(out.Capped, Cap{Pod: t.Pod, Threads: total, Read: read, Idle: idle, Node: podBudget < s.opts.MaxThreadsPerPod})
	}
	return budget - read
}

// sampleThreads reads at most limit threads of process pid; more says it
// has more threads than that.
func (s *Sampler) sampleThreads(t *Target, pid, limit int, out *Sample) (read int, more bool) {
	dir := s.taskPath(pid)
	// Plain system calls: an os.File would register with the runtime's
	// poller (two more system calls per process) and Readdirnames would
	// allocate every name.
	dfd, err := openRetry(dir, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC)
	if err != nil {
		s.fail(out, fmt.Sprintf("threads of process %d of pod %s", pid, t.Pod), err)
		return 0, false
	}
	defer func() { _ = unix.Close(dfd) }()
	// One tid more than the limit tells whether the limit cut the list.
	tids, err := s.readTIDs(dfd, limit+1)
	if err != nil && len(tids) == 0 {
		s.fail(out, fmt.Sprintf("threads of process %d of pod %s", pid, t.Pod), err)
		return 0, false
	}
	if len(tids) > limit {
		tids, more = tids[:limit], true
	}
	for _, tid := range tids {
		read++
		st, err := s.readStatAt(dfd, s.threadStatName(tid))
		if err != nil {
			s.fail(out, fmt.Sprintf("thread %d of process %d of pod %s", tid, pid, t.Pod), err)
			continue
		}
		s.account(t, pid, tid, st, false, out)
	}
	return read, more
}

// account records one thread's stat and, when it has a baseline from the
// previous sample, its usage since. whole says st is the process's stat
// standing for its only thread; a thread read the other way before gets a
// new baseline, since a process's times also hold its exited threads'.
func (s *Sampler) account(t *Target, pid, tid int, st stat, whole bool, out *Sample) {
	th := s.threads[tid]
	if th == nil || th.start != st.start || th.pid != pid || th.whole != whole {
		s.threads[tid] = &threadState{ticks: st.ticks, start: st.start, pid: pid, gen: s.gen, whole: whole}
		return
	}
	delta := st.ticks - th.ticks
	if st.ticks < th.ticks {
		delta = 0
	}
	th.ticks, th.gen = st.ticks, s.gen
	if delta == 0 || out.Interval <= 0 || len(out.Threads) >= s.opts.MaxThreads {
		return
	}
	ms := float64(delta) * 1000 / float64(s.opts.ClockTicks)
	out.Threads = append(out.Threads, Thread{
		TID: tid, PID: pid, Comm: st.comm, Pod: t.Pod, Tier: t.Tier, CPU: st.cpu,
		MilliCPU: ms * float64(time.Second) / float64(out.Interval),
	})
}

// evict forgets processes and threads not seen in this sample. The threads
// of an idle process were not read but are still there.
func (s *Sampler) evict() {
	for pid, p := range s.procs {
		if p.gen != s.gen {
			s.forget(pid)
		}
	}
	for tid, t := range s.threads {
		if t.gen == s.gen {
			continue
		}
		if p := s.procs[t.pid]; p != nil && p.idle {
			continue
		}
		delete(s.threads, tid)
	}
}

func (s *Sampler) finish(out *Sample) {
	slices.SortFunc(out.Threads, func(a, b Thread) int {
		switch {
		case a.MilliCPU > b.MilliCPU:
			return -1
		case a.MilliCPU < b.MilliCPU:
			return 1
		}
		return a.TID - b.TID
	})
	out.Top = out.Threads[:min(len(out.Threads), s.opts.TopN)]
	per := map[int]float64{}
	for _, t := range out.Threads {
		per[t.CPU] += t.MilliCPU
	}
	for c, m := range per {
		out.CPUs = append(out.CPUs, CPUUsage{CPU: c, MilliCPU: m})
	}
	slices.SortFunc(out.CPUs, func(a, b CPUUsage) int { return a.CPU - b.CPU })
}

func (s *Sampler) fail(out *Sample, what string, err error) {
	if errors.Is(err, unix.ENOENT) || errors.Is(err, unix.ESRCH) || errors.Is(err, os.ErrNotExist) {
		out.Vanished++
		return
	}
	out.Errors++
	if out.FirstError == "" {
		out.FirstError = fmt.Sprintf("failed to read %s: %v", what, err)
	}
}

// readTIDs lists up to limit numeric entries of the task directory dfd
// into the sampler's tid buffer.
func (s *Sampler) readTIDs(dfd, limit int) ([]int, error) {
	s.tids = s.tids[:0]
	for len(s.tids) < limit {
		n, err := unix.Getdents(dfd, s.dent)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return s.tids, err
		}
		if n <= 0 {
			break
		}
		s.tids = appendTIDs(s.tids, s.dent[:n], limit)
	}
	return s.tids, nil
}

// appendTIDs appends the numeric names among the linux_dirent64 records in
// b (ino u64, off s64, reclen u16, type u8, name), up to limit in dst.
func appendTIDs(dst []int, b []byte, limit int) []int {
	for len(b) >= 19 && len(dst) < limit {
		reclen := int(b[16]) | int(b[17])<<8
		if reclen < 19 || reclen > len(b) {
			break
		}
		name := b[19:reclen]
		if i := indexByte(name, 0); i >= 0 {
			name = name[:i]
		}
		if v, ok := parseUint(name); ok && v > 0 && v <= 1<<31 {
			dst = append(dst, int(v))
		}
		b = b[reclen:]
	}
	return dst
}

func (s *Sampler) taskPath(pid int) string {
	b := s.buf[:0]
	b = append(b, s.opts.ProcRoot...)
	b = append(b, '/')
	b = strconv.AppendInt(b, int64(pid), 10)
	b = append(b, "/task"...)
	return string(b)
}

func (s *Sampler) threadStatName(tid int) string {
	b := strconv.AppendInt(s.buf[:0], int64(tid), 10)
	b = append(b, "/stat"...)
	return string(b)
}

func (s *Sampler) procPath(pid int) string {
	b := s.buf[:0]
	b = append(b, s.opts.ProcRoot...)
	b = append(b, '/')
	b = strconv.AppendInt(b, int64(pid), 10)
	b = append(b, "/stat"...)
	return string(b)
}

type stat struct {
	comm         string
	ticks, start uint64
	threads, cpu int
}

// readProcStat reads the stat of process pid through the file kept open
// in ps, else (or when that fails) by opening it. It returns the open
// file to keep. A kept /proc/<pid>/stat is bound to the process that had
// the pid when it was opened: once that process is gone it fails (ESRCH),
// it never reads a new process that reused the pid. Re-reading an open
// file saves the path lookup, open and close of every process at every
// sample.
func (s *Sampler) readProcStat(pid int, ps *procState) (stat, int, error) {
	if ps != nil && ps.fd >= 0 {
		n, err := preadRetry(ps.fd, s.buf[:statBufSize])
		if err == nil {
			if st, err := ParseStat(s.buf[:n]); err == nil {
				return st, ps.fd, nil
			}
		}
		_ = unix.Close(ps.fd)
		ps.fd = -1
	}
	fd, err := openRetry(s.procPath(pid), unix.O_RDONLY|unix.O_CLOEXEC)
	if err != nil {
		return stat{}, -1, err
	}
	n, err := preadRetry(fd, s.buf[:statBufSize])
	if err != nil {
		_ = unix.Close(fd)
		return stat{}, -1, err
	}
	st, err := ParseStat(s.buf[:n])
	if err != nil {
		_ = unix.Close(fd)
		return stat{}, -1, err
	}
	return st, fd, nil
}

// forget drops a process's state and closes its kept stat file.
func (s *Sampler) forget(pid int) {
	if p := s.procs[pid]; p != nil && p.fd >= 0 {
		_ = unix.Close(p.fd)
	}
	delete(s.procs, pid)
}

// Close closes the files the sampler keeps open; it can sample again
// afterwards (they are opened anew).
func (s *Sampler) Close() {
	for _, p := range s.procs {
		if p.fd >= 0 {
			_ = unix.Close(p.fd)
			p.fd = -1
		}
	}
}

func preadRetry(fd int, b []byte) (int, error) {
	for {
		n, err := unix.Pread(fd, b, 0)
		if err != unix.EINTR {
			return n, err
		}
	}
}

func (s *Sampler) readStatAt(dirfd int, name string) (stat, error) {
	fd, err := unix.Openat(dirfd, name, unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return stat{}, err
	}
	return s.readFD(fd)
}

// readFD reads a stat file with one pread and closes it.
func (s *Sampler) readFD(fd int) (stat, error) {
	n, err := unix.Pread(fd, s.buf[:statBufSize], 0)
	// A read-only procfs file: closing it cannot lose data.
	_ = unix.Close(fd)
	if err != nil {
		return stat{}, err
	}
	return ParseStat(s.buf[:n])
}

// ErrMalformed is returned for a stat line that cannot be parsed.
var ErrMalformed = errors.New("malformed stat line")

// ParseStat parses a /proc stat line. The comm is whatever lies between
// the first '(' and the last ')' (a comm may itself hold spaces and
// parentheses); fields are counted after the last ')'.
func ParseStat(b []byte) (stat, error) {
	var st stat
	open := indexByte(b, '(')
	closing := lastIndexByte(b, ')')
	if open < 0 || closing < open {
		return st, fmt.Errorf("%w: no (comm)", ErrMalformed)
	}
	st.comm = sanitize(b[open+1 : closing])
	// Fields after ") ": index 0 is field 3 (state). We need utime (14),
	// stime (15), num_threads (20), starttime (22) and processor (39).
	rest := b[closing+1:]
	field := 2
	var utime, stime uint64
	got := 0
	for i := 0; i < len(rest) && got < 5; {
		for i < len(rest) && rest[i] == ' ' {
			i++
		}
		j := i
		for j < len(rest) && rest[j] != ' ' && rest[j] != '\n' {
			j++
		}
		if j == i {
			break
		}
		field++
		switch field {
		case 14, 15, 20, 22, 39:
			v, ok := parseUint(rest[i:j])
			if !ok {
				return st, fmt.Errorf("%w: field %d is %q", ErrMalformed, field, sanitize(rest[i:j]))
			}
			switch field {
			case 14:
				utime = v
			case 15:
				stime = v
			case 20:
				st.threads = int(min(v, 1<<31))
			case 22:
				st.start = v
			case 39:
				st.cpu = int(min(v, 1<<31))
			}
			got++
		}
		i = j
	}
	if got < 5 {
		return st, fmt.Errorf("%w: %d fields after comm, need 37", ErrMalformed, field-2)
	}
	st.ticks = utime + stime
	return st, nil
}

func parseUint(b []byte) (uint64, bool) {
	if len(b) == 0 || len(b) > 20 {
		return 0, false
	}
	var v uint64
	for _, c := range b {
		if c < '0' || c > '9' {
			return 0, false
		}
		d := uint64(c - '0')
		if v > (1<<64-1-d)/10 {
			return 0, false
		}
		v = v*10 + d
	}
	return v, true
}

func indexByte(b []byte, c byte) int {
	for i, x := range b {
		if x == c {
			return i
		}
	}
	return -1
}

func lastIndexByte(b []byte, c byte) int {
	for i := len(b) - 1; i >= 0; i-- {
		if b[i] == c {
			return i
		}
	}
	return -1
}

// sanitize keeps printable ASCII and replaces every other byte by '?',
// cutting at maxComm bytes: comms are set by the workload and end up in
// JSON, logs and metric labels.
func sanitize(b []byte) string {
	if len(b) > maxComm {
		b = b[:maxComm]
	}
	clean := true
	for _, c := range b {
		if c < 0x20 || c > 0x7e {
			clean = false
			break
		}
	}
	if clean {
		return string(b)
	}
	out := make([]byte, len(b))
	for i, c := range b {
		if c < 0x20 || c > 0x7e {
			c = '?'
		}
		out[i] = c
	}
	return string(out)
}

// threadCPU is the CPU time of the calling OS thread.
func threadCPU() time.Duration {
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_THREAD_CPUTIME_ID, &ts); err != nil {
		return 0
	}
	return time.Duration(ts.Nano())
}
